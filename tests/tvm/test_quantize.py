"""Precision strategies: the int8 quantization pass, calibration and QDQ import."""

from __future__ import annotations

import numpy as np
import pytest

import explorer
from explorer.model import int8_calibration as calibration
from explorer.model.prepare import prepare
from explorer.sweep.reference import reference_outputs
from explorer.tvm.passes.precision import quantize_weight
from explorer.tvm.runtime import run_executable
from tests.tvm.lowering import lower


def compiled(path, strategy, build=False, scales=None):
    return lower(path, strategy, build=build, scales=scales)


def test_weights_quantize_per_output_channel_by_hand():
    w = np.array([[[[0.5, -1.0]]], [[[0.02, 0.01]]]], dtype=np.float32)  # two output channels
    q, scale = quantize_weight(w, axis=0)
    assert scale.tolist() == pytest.approx([1.0 / 127, 0.02 / 127])
    assert q.dtype == np.int8
    assert q.reshape(2, 2).tolist() == [[64, -127], [127, 64]]  # 0.5 * 127 = 63.5 rounds to even


def test_matmul_weights_quantize_along_the_output_axis():
    w = np.array([[1.0, 0.05], [-0.25, 0.2]], dtype=np.float32)  # [K=2, N=2]
    q, scale = quantize_weight(w, axis=-1)
    assert scale.tolist() == pytest.approx([1.0 / 127, 0.2 / 127])
    assert q.tolist() == [[127, 32], [-32, 127]]  # 0.05 / (0.2 / 127) = 31.75


def test_calibration_scale_is_the_peak_input_over_127(conv_add_relu_onnx):
    model = prepare(str(conv_add_relu_onnx))
    cal = calibration.calibrate(model, samples=3)
    peak = max(float(np.abs(model.sample_inputs(1000 + i)["x"]).max()) for i in range(3))
    assert cal.scales == pytest.approx((peak / 127,))
    assert cal.source == "seeded:3"


def test_a_model_whose_weights_are_inputs_calibrates_nothing_and_draws_no_samples(tmp_path):
    # a decoder built from its config: drawing samples of its weights would take a real model's size
    import onnx
    from onnx import TensorProto, helper

    from explorer.core.prepared import InputSpec, PreparedModel

    x, w = (helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", [1, 4]), ("W", [4, 2])))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x, w],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    huge = InputSpec("W", (1 << 17, 1 << 17), "float32")  # 64 GiB if drawn
    model = PreparedModel("m", tmp_path / "m.onnx", "0" * 64, (InputSpec("x", (1, 4), "float32"), huge))
    assert calibration.calibrate(model).scales == ()


def test_calibration_reads_npy_files(conv_add_relu_onnx, tmp_path):
    model = prepare(str(conv_add_relu_onnx))
    np.save(tmp_path / "a.npy", np.full((1, 4, 6, 6), 2.54, np.float32))
    np.save(tmp_path / "b.npy", np.full((1, 4, 6, 6), -1.0, np.float32))
    assert calibration.calibrate(model, tmp_path).scales == pytest.approx((0.02,))


def test_calibration_directory_with_wrong_shapes_is_a_clear_error(conv_add_relu_onnx, tmp_path):
    model = prepare(str(conv_add_relu_onnx))
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    with pytest.raises(explorer.ExplorerError, match="shape"):
        calibration.calibrate(model, tmp_path)


def test_int8_conv_runs_int8_macs_in_int32(conv_add_relu_onnx):
    _, lowered, wl = compiled(conv_add_relu_onnx, "fused-int8", scales=(0.02,))
    assert wl["op_mac_int8"].sum() == 10368 and "op_mac_float32" not in wl
    assert wl["weight_bytes"].sum() == 8 * 4 * 3 * 3 + 8 * 6 * 6 * 4 + 8 * 4  # int8 W, fp32 bias, fp32 scales
    assert "op_cast_int8" in wl  # the activation is quantized: one cast per input element...
    assert wl["op_cast_int8"].sum() == 4 * 6 * 6


def test_int8_matmul_runs_int8_macs(matmul_onnx):
    _, _, wl = compiled(matmul_onnx, "int8", scales=(0.03,))
    assert wl["op_mac_int8"].sum() == 64 * 32
    assert wl["op_mac_int8"].sum() == wl["macs"].sum()


def test_int8_needs_one_scale_per_quantized_op(conv_add_relu_onnx):
    with pytest.raises(Exception, match="calibration measured 2 activations"):
        compiled(conv_add_relu_onnx, "fused-int8", scales=(0.02, 0.03))


def test_fp16_and_bf16_run_their_macs_in_their_dtype(conv_add_relu_onnx):
    for strategy, dtype in (("fused-fp16", "float16"), ("fused-bf16", "bfloat16")):
        _, _, wl = compiled(conv_add_relu_onnx, strategy)
        assert wl[f"op_mac_{dtype}"].sum() == 10368


def test_an_imported_qdq_model_is_analysed_and_run_as_int8(qdq_conv_onnx):
    model, lowered, wl = compiled(qdq_conv_onnx, "fused", build=True)
    assert wl["op_mac_int8"].sum() == 10368 and "op_mac_float32" not in wl
    feed = model.sample_inputs(0)
    out = run_executable(lowered.executable, [feed["x"]])
    # the same arithmetic as onnxruntime's QDQ model, zero point included: equal to float rounding
    np.testing.assert_allclose(out[0], reference_outputs(model, feed)[0], rtol=1e-5, atol=1e-5)


def test_qdq_model_has_nothing_left_to_calibrate(qdq_conv_onnx):
    assert calibration.calibrate(prepare(str(qdq_conv_onnx))).scales == ()


@pytest.mark.parametrize("fixture, macs", [("qlinear_conv_onnx", 10368), ("matmul_integer_onnx", 2 * 16 * 8)])
def test_integer_onnx_ops_import_and_run_as_int8(request, fixture, macs):
    path = request.getfixturevalue(fixture)
    model, lowered, wl = compiled(path, "fused", build=True)
    int_macs = wl.filter(regex="^op_mac_u?int8$").sum().sum()
    assert int_macs == macs and wl.macs.sum() == macs
    feed = model.sample_inputs(0)
    rng = np.random.default_rng(5)
    feed = {k: rng.integers(-20, 20, v.shape).astype(v.dtype) if v.dtype == np.int8 else
            rng.integers(0, 255, v.shape).astype(v.dtype) for k, v in feed.items()}
    out = run_executable(lowered.executable, [feed[i.name] for i in model.inputs])
    want = reference_outputs(model, feed)[0]
    # integer results: exact, up to one step of the output quantizer's rounding
    assert np.max(np.abs(out[0].astype(np.int64) - want.astype(np.int64))) <= 1


@pytest.mark.parametrize("strategy", ["fused-fp16", "fused-nhwc"])
@pytest.mark.parametrize("activation", ["relu6", "hardsigmoid"])
def test_a_model_with_clipped_activations_builds_and_matches_onnxruntime(model_dir, activation, strategy):
    # TVM imports Clip as TE kernels and HardSigmoid as clip(x, PrimValue, PrimValue); ToMixedPrecision
    # failed on both, so every fp16 build of MobileNetV2 (ReLU6) failed; and ConvertLayout fails on the
    # Max/Min that fp16 imports Clip as, so nhwc must keep TVM's import
    from onnx import TensorProto, helper, numpy_helper

    from tests.conftest import _save, _w, make_model

    rng = np.random.default_rng(3)
    act = (helper.make_node("Clip", ["c", "lo", "hi"], ["y"]) if activation == "relu6"
           else helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.2, beta=0.5))
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), act],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        [_w(rng, (8, 4, 3, 3), "w"), numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
         numpy_helper.from_array(np.array(6.0, np.float32), "hi")])
    path = _save(model, model_dir / f"conv_{activation}.onnx")
    prepared, lowered, wl = compiled(path, strategy, build=True)
    macs = wl["op_mac_float16" if strategy == "fused-fp16" else "op_mac_float32"]
    assert macs.sum() == 8 * 36 * 4 * 9  # out channels x pixels x in channels x 3x3
    feed = prepared.sample_inputs(0)
    out = run_executable(lowered.executable, [feed["x"]])
    np.testing.assert_allclose(out[0], reference_outputs(prepared, feed)[0], rtol=1e-2, atol=2e-2)
