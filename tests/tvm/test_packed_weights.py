"""Float weights packed a vector of output channels at a time, and the order of a tiled kernel's tasks."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir, te, tirx

from explorer.tvm.passes.packed_weights import pack_columns, packed_float_weights, vector_block
from explorer.tvm.schedules.tiling import task_order

AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})


def _task_order(out, n_spatial: int, outer_extents: list[int]) -> list[int]:
    sch = s_tir.Schedule(te.create_prim_func([*out.op.input_tensors, out]))
    return task_order(sch, sch.get_sblock(out.op.name), outer_extents)


def _conv(layout: str, h: int, c: int):
    if layout == "NHWC":
        x, w = te.placeholder((1, h + 2, h + 2, c), name="x"), te.placeholder((3, 3, c, c), name="w")
    else:
        x, w = te.placeholder((1, c, h + 2, h + 2), name="x"), te.placeholder((c, c, 3, 3), name="w")
    ry, rx, rc = te.reduce_axis((0, 3), "ry"), te.reduce_axis((0, 3), "rx"), te.reduce_axis((0, c), "rc")
    if layout == "NHWC":
        return te.compute((1, h, h, c), lambda n, y, z, k: te.sum(x[n, y + ry, z + rx, rc] * w[ry, rx, rc, k],
                                                                  axis=[ry, rx, rc]), name="conv")
    return te.compute((1, c, h, h), lambda n, k, y, z: te.sum(x[n, rc, y + ry, z + rx] * w[k, rc, ry, rx],
                                                              axis=[ry, rx, rc]), name="conv")


def _packed(mod: tvm.IRModule) -> tvm.IRModule:
    with AVX512:
        return relax.transform.LegalizeOps()(packed_float_weights(mod))


def test_pack_columns_puts_each_block_of_columns_in_one_contiguous_run():
    w = np.arange(12).reshape(3, 4)  # [K=3, N=4], blocks of 2 columns
    assert pack_columns(w, 2).tolist() == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [10, 11]]]


def test_a_block_is_one_vector_of_the_output_dtype_or_the_largest_divisor_under_it():
    assert vector_block(512, 32, AVX512) == 16   # 16 fp32 lanes
    assert vector_block(512, 16, AVX512) == 32   # 32 fp16 lanes
    assert vector_block(10, 32, AVX512) == 10    # a 10-column head: one block of 10
    assert vector_block(13, 32, AVX512) == 13


def test_a_channels_last_convolution_with_large_weights_runs_its_output_rows_inside_its_channel_blocks():
    # n, y, x-tiles, channel blocks: 9.4 MB of weights read once per row (7 x) or 100 KB of pixels once per
    # block of channels (16 x): the channel blocks go outermost
    assert _task_order(_conv("NHWC", 7, 512), 4, [1, 7, 1, 16]) == [3, 0, 1, 2]


def test_a_convolution_whose_pixels_outweigh_its_weights_keeps_the_spatial_order():
    # NCHW: the operand read along the row is the input (3.2 MB here); the 147 KB of weights are re-read
    assert _task_order(_conv("NCHW", 56, 64), 4, [1, 8, 56, 1]) == [0, 1, 2, 3]


def test_a_constant_matmul_weight_is_packed_and_the_kernel_computes_what_numpy_does():
    rng = np.random.default_rng(0)
    x_value, w_value = rng.standard_normal((8, 40)).astype("float32"), rng.standard_normal((40, 48)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((8, 40), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(x, relax.const(w_value))))
        bb.emit_func_output(out)
    mod = _packed(bb.get())
    kernel = next(f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))
    assert [[int(d) for d in p.shape] for p in kernel.params] == [[8, 40], [3, 40, 16], [8, 48]]
    vm = relax.VirtualMachine(tvm.compile(mod, tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x_value)).numpy(), x_value @ w_value, rtol=1e-5, atol=1e-5)


def test_a_packed_channels_last_convolution_computes_what_numpy_does():
    rng = np.random.default_rng(0)
    x_value = rng.standard_normal((1, 6, 6, 8)).astype("float32")
    w_value = rng.standard_normal((3, 3, 8, 32)).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 6, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(x, relax.const(w_value), strides=2, padding=[1, 1, 0, 0],
                                      data_layout="NHWC", kernel_layout="HWIO")
            out = bb.emit_output(bb.emit(conv))
        bb.emit_func_output(out)
    mod = _packed(bb.get())
    kernel = next(f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))
    assert [int(d) for d in kernel.params[1].shape] == [2, 3, 3, 8, 16]
    padded = np.pad(x_value, [(0, 0), (1, 0), (1, 0), (0, 0)])  # top and left 1, bottom and right 0
    expected = np.zeros((1, 3, 3, 32), "float32")
    for y in range(3):
        for z in range(3):
            expected[0, y, z] = np.einsum("hwc,hwco->o", padded[0, 2 * y:2 * y + 3, 2 * z:2 * z + 3], w_value)
    vm = relax.VirtualMachine(tvm.compile(mod, tvm.target.Target({"kind": "llvm"})), tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x_value)).numpy(), expected, rtol=1e-4, atol=1e-4)
