"""Weight-only quantization (int8w, int4w): packing, group scales, and the fused kernel's bytes."""

from __future__ import annotations

import numpy as np

from explorer.tvm.passes.weight_only import pack_int4, quantize, unpack_int4


def _gemv_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.conftest import make_model

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((256, 64)).astype("float32"), "W")
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 256])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 64])], [w])
    onnx.save(m, tmp_path / "mm.onnx")
    return tmp_path / "mm.onnx"


def test_int4_packs_two_rows_per_byte_offset_by_seven():
    q = np.array([[-7, 0], [7, 3]], np.int8)  # rows 0 and 1 of one byte row
    packed = pack_int4(q)
    assert packed.tolist() == [[0 | (14 << 4), 7 | (10 << 4)]]
    assert unpack_int4(packed, 2).tolist() == q.tolist()


def test_group_scales_are_the_group_peak_over_qmax_along_the_reduction_axis():
    w = np.zeros((4, 2), np.float32)
    w[:, 0] = [0.6, -1.4, 0.35, 0.0]   # group 0 (rows 0-1) peak 1.4, group 1 (rows 2-3) peak 0.35
    w[:, 1] = [7.0, 3.5, -70.0, 7.0]
    q = quantize(w, bits=4, group_size=2, scale_dtype="float32")
    assert np.allclose(q.scales, [[0.2, 1.0], [0.05, 10.0]])
    assert unpack_int4(q.values, 4).tolist() == [[3, 7], [-7, 4], [7, -7], [0, 1]]
    assert np.allclose(q.dequantize(), [[0.6, 7.0], [-1.4, 4.0], [0.35, -70.0], [0.0, 10.0]])


def test_int8_weights_round_to_the_nearest_step_of_their_group():
    w = np.array([[1.27], [-0.5]], np.float32)
    q = quantize(w, bits=8, group_size=2, scale_dtype="float32")
    assert q.values.tolist() == [[127], [-50]]
    assert np.allclose(q.scales, [[0.01]])


def test_fused_int4w_matmul_reads_the_packed_weight_and_its_scales(tmp_path):
    from tests.tvm.lowering import lower

    _, _, table = lower(_gemv_onnx(tmp_path), "fused-int4w")
    assert len(table) == 1  # the dequantization is inside the matmul kernel
    row = table.iloc[0]
    # 256 x 64 int4 values in 128 x 64 bytes, and 2 groups x 64 fp16 scales
    assert row.weight_bytes == 128 * 64 + 2 * 64 * 2
    assert row.read_bytes == row.weight_bytes + 256 * 4
    assert row.macs == 256 * 64


def test_a_gpu_keeps_the_int4_weight_along_k_and_dlight_schedules_the_gemv(tmp_path):
    import tvm

    from tests.tvm.lowering import lower

    _, compiled, table = lower(_gemv_onnx(tmp_path), "fused-int4w", lowering="cuda")
    assert len(table) == 1 and table.iloc[0].weight_bytes == 128 * 64 + 2 * 64 * 2  # the same bytes, laid out [N, K]
    kernel = next(f for gv, f in compiled.tir.functions_items() if isinstance(f, tvm.tirx.PrimFunc))
    shapes = [(tuple(int(d) for d in p.shape), str(p.dtype)) for p in kernel.params]
    assert ((64, 128), "uint8") in shapes and ((64, 2), "float16") in shapes  # 64 outputs x 256 / 2 bytes along K
    # DLight's GEMV: threads split each output's reduction (rfactor) and meet across threadIdx.y
    assert "_rf" in kernel.script() and "threadIdx.y" in kernel.script()


def test_the_dequantize_kernel_of_a_weight_kept_along_k_gives_the_transposed_weight():
    import tvm

    from explorer.tvm.passes.weight_only import _dequantize_func, stored

    w = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)  # [K, N]
    q = quantize(w, bits=4, group_size=4, scale_dtype="float32")
    values, scales = stored(q, transposed=True)
    assert values.shape == (3, 4) and scales.shape == (3, 2)
    func = _dequantize_func(q, "float32", transposed=True).with_attr("global_symbol", "main")
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=tvm.target.Target({"kind": "llvm"}))
    out = tvm.runtime.tensor(np.zeros((3, 8), np.float32))
    lib["main"](tvm.runtime.tensor(values), tvm.runtime.tensor(scales), out)
    np.testing.assert_allclose(out.numpy(), q.dequantize().T, rtol=1e-6)


def test_the_dequantize_kernel_of_a_packed_weight_gives_blocks_of_columns():
    import tvm

    from explorer.tvm.passes.packed_weights import pack_columns
    from explorer.tvm.passes.weight_only import _dequantize_func, stored

    w = np.random.default_rng(2).standard_normal((8, 6)).astype(np.float32)  # [K, N], packed in blocks of 2
    q = quantize(w, bits=4, group_size=4, scale_dtype="float32")
    values, scales = stored(q, transposed=False, block=2)
    # each block of 2 columns keeps its 4 bytes of int4 pairs and its 2 groups' scales together
    np.testing.assert_array_equal(values[1], q.values[:, 2:4])
    np.testing.assert_array_equal(scales[2], q.scales[:, 4:6])
    func = _dequantize_func(q, "float32", block=2).with_attr("global_symbol", "main")
    lib = tvm.tirx.build(tvm.IRModule({"main": func}), target=tvm.target.Target({"kind": "llvm"}))
    out = tvm.runtime.tensor(np.zeros((3, 8, 2), np.float32))
    lib["main"](tvm.runtime.tensor(values), tvm.runtime.tensor(scales), out)
    np.testing.assert_allclose(out.numpy(), pack_columns(q.dequantize(), 2), rtol=1e-6)


def test_an_unfused_int4w_matmul_on_a_cpu_reads_its_dequantized_weight_packed(tmp_path):
    import tvm

    from tests.tvm.lowering import lower

    _, compiled, table = lower(_gemv_onnx(tmp_path), "int4w")
    dequantize = next(f for gv, f in compiled.tir.functions_items()
                      if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint.startswith("dequantize"))
    assert [int(d) for d in dequantize.params[-1].shape] == [4, 256, 16]  # 64 columns in 4 blocks of 16
    assert table.weight_bytes.sum() == 128 * 64 + 2 * 64 * 2  # the packed int4 bytes and scales, as fused
