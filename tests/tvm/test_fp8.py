"""fused-fp8: float8 E4M3 weights and activations (explorer.tvm.passes.precision, scalar_float8)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax
from tvm.script import tirx as T

from explorer.tvm.passes.precision import fp8_weight
from explorer.tvm.passes.scalar_float8 import scalar_float8_loops
from tests.conftest import _w, make_model
from tests.tvm.lowering import lower

#: The calibrated scale of the matmul's input below (max |x| / 127: x is drawn from [-2.54, 2.54]).
X_SCALE = 0.02


@pytest.fixture(scope="module")
def matmul32(tmp_path_factory):
    """y[32, 48] = x[32, 64] @ W[64, 48]: a matmul of more than 4 rows, which the tensor cores take."""
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 64])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 48])], [_w(rng, (64, 48), "W")])
    path = tmp_path_factory.mktemp("fp8") / "matmul32.onnx"
    onnx.save(m, path)
    return path


def test_weights_are_scaled_per_output_channel_to_e4m3s_largest_value():
    w = np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)
    q, scales = fp8_weight(w, axis=-1)
    np.testing.assert_array_equal(scales, np.float32([1 / 448, 4 / 448]))
    np.testing.assert_array_equal(q.astype(np.float32), [[448, -224], [224, 448]])


@T.prim_func
def float8_copy(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float8_e4m3fn"), c: T.Buffer((64,), "float32"),
                d: T.Buffer((64,), "float32")):
    for i in range(4):
        for v in T.vectorized(16):
            b[i * 16 + v] = T.Cast("float8_e4m3fn", a[i * 16 + v])
    for i in range(4):
        for v in T.vectorized(16):
            c[i * 16 + v] = a[i * 16 + v]
    for i in range(4):
        for v in T.vectorized(16):
            d[i * 16 + v] = T.Cast("float32", b[i * 16 + v]) * a[i * 16 + v]


def _loop_kinds(func) -> list[str]:
    kinds = []
    import tvm_ffi

    def loop(node, visitor):
        kinds.append(tvm.tirx.ForKind(int(node.kind)).name)
        visitor.default_visit(node)

    tvm_ffi.structural_visit(func.body, [((tvm.tirx.For,), loop)])
    return kinds


def test_a_vectorized_loop_that_rounds_to_float8_is_made_serial_and_one_that_widens_float8_is_not():
    mod = scalar_float8_loops(tvm.IRModule({"f": float8_copy}))
    assert _loop_kinds(mod["f"]) == ["SERIAL", "SERIAL", "SERIAL", "VECTORIZED", "SERIAL", "VECTORIZED"]


def test_a_vectorized_float8_widening_builds_for_the_cpu_and_decodes_e4m3():
    lib = tvm.tirx.build(scalar_float8_loops(tvm.IRModule({"main": float8_copy.with_attr("global_symbol", "main")})),
                         target=tvm.target.Target({"kind": "llvm"}))
    a = np.linspace(-448, 448, 64).astype(np.float32)
    out = [tvm.runtime.empty((64,), dt) for dt in ("float8_e4m3fn", "float32", "float32")]
    lib["main"](tvm.runtime.tensor(a), *out)
    expected = a.astype(ml_dtypes.float8_e4m3fn).astype(np.float32) * a
    np.testing.assert_array_equal(out[2].numpy(), expected)


def test_an_fp8_matmul_on_the_cpu_computes_what_its_e4m3_operands_give(matmul32):
    model, compiled, _ = lower(matmul32, "fused-fp8", "generic", build=True, scales=(X_SCALE,))
    w = onnx.numpy_helper.to_array(onnx.load(model.path).graph.initializer[0])
    x = np.random.default_rng(1).uniform(-2.54, 2.54, (32, 64)).astype(np.float32)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    s = np.float32(X_SCALE * 127 / 448)
    xq = np.clip(x / s, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    wq, w_scale = fp8_weight(w, -1)
    expected = (xq @ wq.astype(np.float32)) * w_scale * s
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(got - x @ w).max() < 0.1 * np.abs(x @ w).max()  # and near the float32 product


def test_an_fp8_matmul_on_a_gpu_runs_on_the_fp8_tensor_cores(matmul32):
    _, _, df = lower(matmul32, "fused-fp8", "cuda", scales=(X_SCALE,))
    row = df[df.kernel.str.contains("matmul")].iloc[0]
    assert row.tensorized_macs == row.macs == 32 * 48 * 64
    assert row["op_mac_float8_e4m3fn"] == 32 * 48 * 64


def test_a_config_decoders_fp8_weights_are_float8_parameters_with_their_scales(tmp_path):
    from explorer.core.strategies import get_strategy
    from explorer.model.prepare import prepare
    from explorer.tvm.frontend import imported, weight_params
    from explorer.tvm.pipeline import PipelineContext, strategy_passes
    from explorer.tvm.relax_ir import name_of
    from models.decoders import LLAMA_MINI, build_llama

    onnx.save(build_llama(cfg=LLAMA_MINI, weights_as_inputs=True), tmp_path / "llama.onnx")
    from explorer.model.phases import parse_phases

    model = prepare(str(tmp_path / "llama.onnx"), phase=parse_phases("decode:16")[0])
    weights, _ = weight_params(str(model.path), model.sha256)
    ctx = PipelineContext(get_strategy("fused-fp8"), "cuda", weights=weights)
    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        main = strategy_passes(ctx, schedule=False)(imported(str(model.path), model.sha256))["main"]
    dtypes = {name_of(p): str(p.ty.dtype) for p in main.params}
    q_proj = "model_layers_0_self_attn_q_proj_weight"
    assert dtypes[q_proj] == "float8_e4m3fn"
    assert dtypes[f"{q_proj}.weight_scale"] == dtypes[f"{q_proj}.input_scale"] == "float32"
    assert dtypes["model_embed_tokens_weight"] == "float32"  # a gather, not a matmul
