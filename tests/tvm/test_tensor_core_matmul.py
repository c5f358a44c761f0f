"""The tensor-core matmul rule (explorer.tvm.schedules.tensor_core_matmul): its tiles, the instruction in
the generated CUDA, nvcc, the multiply-adds the walker counts, and the same schedule's numbers on the CPU."""

from __future__ import annotations

import re
import shutil

import ml_dtypes
import numpy as np
import pytest
import tvm
from tvm import relax

from explorer.tvm.codegen import cuda_source, cuda_target, nvcc_compile
from explorer.tvm.compile import lower_tir, vm_lower
from explorer.tvm.schedules.tensor_core_matmul import BlockTile, TensorCoreMatmul, block_tile
from explorer.tvm.tir.walker import analyse_module

#: The PTX instruction each operand type's kernels must contain.
INSTRUCTION = {
    "float16": "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
    "bfloat16": "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
    "int8": "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32",
    "float8_e4m3fn": "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32",
}
ACCUMULATOR = {"float16": "float32", "bfloat16": "float32", "int8": "int32", "float8_e4m3fn": "float32", "float32": "float32"}
NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "int8": np.int8, "float8_e4m3fn": ml_dtypes.float8_e4m3fn}

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def _module(m: int, n: int, k: int, dtype: str, weights_along_k: bool = True) -> tvm.IRModule:
    """relu(x[m, k] @ w^T + b) as float16, w ``[n, k]`` (or ``[k, n]``), fused as the pipeline fuses it."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((m, k), dtype))
    w = relax.Var("w", relax.TensorType((n, k) if weights_along_k else (k, n), dtype))
    b = relax.Var("b", relax.TensorType((n,), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            rhs = relax.op.permute_dims(w) if weights_along_k else w
            y = bb.emit(relax.op.astype(relax.op.matmul(x, rhs, out_dtype=ACCUMULATOR[dtype]), "float32"))
            out = bb.emit_output(relax.op.astype(relax.op.nn.relu(relax.op.add(y, b)), "float16"))
        bb.emit_func_output(out)
    passes = [relax.transform.FuseTransposeMatmul(), relax.transform.LegalizeOps(),
              relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(), relax.transform.FuseTIR()]
    return tvm.transform.Sequential(passes)(bb.get())


def _kernel(mod: tvm.IRModule) -> tvm.tirx.PrimFunc:
    return next(f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def _cuda(mod: tvm.IRModule, arch: str = "sm_90"):
    """The module scheduled by the rule alone for ``arch``: (captured TIR, CUDA source)."""
    from tvm.s_tir import dlight as dl

    target = tvm.target.Target(cuda_target(arch))
    with target:
        mod = dl.ApplyDefaultSchedule(TensorCoreMatmul())(mod)
    tir, executable = lower_tir(vm_lower(mod), target, build=True)
    return tir, cuda_source(executable)


def test_a_decode_step_pads_to_16_rows_not_128():
    assert block_tile(8, 4096) == BlockTile(warps_m=1, tiles_m=1, warps_n=4, tiles_n=2, k_steps=2)
    assert (block_tile(8, 4096).rows, block_tile(8, 4096).columns) == (16, 128)


def test_many_rows_take_a_64_by_128_tile():
    tile = block_tile(4096, 4096)
    assert (tile.rows, tile.columns, tile.warps) == (64, 128, 8)


def test_few_columns_take_as_many_warps_as_tiles_of_16():
    assert block_tile(24, 40) == BlockTile(warps_m=2, tiles_m=1, warps_n=3, tiles_n=1, k_steps=2)


def test_three_row_tiles_take_three_warps():
    assert block_tile(36, 16).rows == 48


def test_one_call_per_copy_where_two_would_pad_k_more():
    # K = 72 of int8 (32 a call): two calls a step pad it to 128, one to 96
    assert block_tile(36, 16, 72, 32).k_steps == 1
    assert block_tile(36, 16, 128, 32).k_steps == 2


def test_a_gemv_is_left_to_the_gemv_rules():
    assert TensorCoreMatmul().schedule(_kernel(_module(4, 64, 64, "float16")), arch="sm_90") is None


def test_float32_has_no_mma_intrinsic_here():
    assert TensorCoreMatmul().schedule(_kernel(_module(32, 64, 64, "float32")), arch="sm_90") is None


def test_bfloat16_needs_sm_80():
    assert TensorCoreMatmul().schedule(_kernel(_module(32, 64, 64, "bfloat16")), arch="sm_75") is None


@needs_nvcc
@pytest.mark.parametrize("dtype", sorted(INSTRUCTION))
def test_each_operand_type_emits_its_mma_instruction_and_compiles_for_sm_90(dtype):
    _, source = _cuda(_module(24, 40, 64, dtype))
    assert INSTRUCTION[dtype] in source
    assert nvcc_compile(source, "sm_90") == ""


def test_each_lane_holds_only_its_own_fragments():
    # a warp of 2 x 2 tiles: A's two [16, 16] tiles are 2 x 8 halves a lane, B's as many, the four
    # accumulator tiles 4 x 8 floats; TVM 0.27's LowerWarpMemory alone lowers only the first of them and
    # leaves the others whole-warp arrays (512 halves a thread), see explorer/tvm/passes/warp_memory.py
    _, source = _cuda(_module(64, 128, 128, "float16"))
    fragments = dict(re.findall(r"(\w+)_warp_ptr\[(\d+)\];", source))
    assert {name: int(size) for name, size in fragments.items()} == {
        "x_reindex_shared": 16, "w_reindex_shared": 16, "NT_matmul_intermediate_reindex_shared": 32}


@needs_nvcc
def test_weights_stored_k_by_n_compile_for_blackwell():
    _, source = _cuda(_module(24, 40, 64, "bfloat16", weights_along_k=False), arch="sm_100")
    assert INSTRUCTION["bfloat16"] in source
    assert nvcc_compile(source, "sm_100") == ""


def test_building_with_the_intrinsics_registers_no_global_function_that_tvms_own_would_clash_with():
    """MetaSchedule imports ``tvm.s_tir.tensor_intrin``, which registers its globals without override."""
    from tvm_ffi.registry import list_global_func_names

    from explorer.tvm.schedules.mma_intrinsics import mma_group

    mma_group.cache_clear()
    before = set(list_global_func_names())
    _cuda(_module(24, 40, 64, "float16"))
    assert set(list_global_func_names()) - before == set()


def test_the_walker_counts_padded_macs_as_executed_and_the_rest_as_useful():
    tir, _ = _cuda(_module(24, 40, 64, "float16"))
    (kernel,) = [k for n, k in analyse_module(tir).items() if "matmul" in n]
    # 24 rows pad to 2 tiles of 16, 40 columns to 3 tiles of 16; K = 64 is 2 steps of 32
    assert kernel.macs == 32 * 48 * 64
    assert kernel.tensorized_macs == 32 * 48 * 64
    assert kernel.useful_macs == 24 * 40 * 64
    assert kernel.ops[("mac", "float16")] == 32 * 48 * 64


def test_the_walker_counts_ldmatrix_into_registers_once_per_warp():
    tir, _ = _cuda(_module(16, 16, 32, "float16"))
    (kernel,) = [k for n, k in analyse_module(tir).items() if "matmul" in n]
    uses = {u.name: u for u in kernel.buffers}
    # one warp: A [16, 32] and B [16, 32] go shared -> registers once each, 2 bytes an element
    assert uses["x_reindex_shared_warp"].store_bytes == 16 * 32 * 2
    assert uses["w_reindex_shared"].load_bytes == 16 * 32 * 2


def _cpu_run(func: tvm.tirx.PrimFunc, args: list[np.ndarray], out_shape) -> np.ndarray:
    lib = tvm.tirx.build(func.with_attr("global_symbol", "main"), target="llvm")
    dev = tvm.cpu()
    out = tvm.runtime.empty(out_shape, "float16", dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in args], out)
    return out.numpy()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("weights_along_k", [True, False])
def test_the_schedule_on_the_cpu_matches_numpy(dtype, weights_along_k):
    m, n, k = 24, 40, 72  # every dimension padded
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (m, k)).astype(NUMPY[dtype])
    w = rng.integers(-3, 4, (n, k)).astype(NUMPY[dtype])
    b = rng.standard_normal(n).astype(np.float32)
    replica = TensorCoreMatmul().schedule(_kernel(_module(m, n, k, dtype, weights_along_k)), arch="sm_90", device=False)
    got = _cpu_run(replica.mod["main"], [x, w if weights_along_k else np.ascontiguousarray(w.T), b], (m, n))
    want = np.maximum(x.astype(np.float32) @ w.astype(np.float32).T + b, 0).astype(np.float16)
    np.testing.assert_array_equal(got, want)


def test_the_fp8_schedule_on_the_cpu_matches_the_unscheduled_kernel():
    # TVM's fp8 arithmetic on the CPU is not exact (sums of small integers come out up to 0.28 from
    # numpy's, and a padded K moves the unscheduled kernel's by an fp16 ulp): the reference is the same
    # kernel unscheduled, built for the same CPU, with M and N padded and K not
    m, n, k = 24, 40, 64
    func = _kernel(_module(m, n, k, "float8_e4m3fn"))
    rng = np.random.default_rng(1)
    args = [rng.integers(-3, 4, (m, k)).astype(NUMPY["float8_e4m3fn"]),
            rng.integers(-3, 4, (n, k)).astype(NUMPY["float8_e4m3fn"]), rng.standard_normal(n).astype(np.float32)]
    replica = TensorCoreMatmul().schedule(func, arch="sm_90", device=False)
    np.testing.assert_array_equal(_cpu_run(replica.mod["main"], args, (m, n)), _cpu_run(func, args, (m, n)))


def _conv_module(layout: str, dtype: str, channels: int, size: int, out_channels: int, kernel: int, stride: int,
                 groups: int = 1) -> tvm.IRModule:
    """relu(conv2d(x, w)) as float16, in ``layout`` (NHWC with HWIO weights, or NCHW with OIHW)."""
    bb = relax.BlockBuilder()
    if layout == "NHWC":
        x = relax.Var("x", relax.TensorType((1, size, size, channels), dtype))
        w = relax.Var("w", relax.TensorType((kernel, kernel, channels // groups, out_channels), dtype))
        conv = relax.op.nn.conv2d(x, w, strides=stride, padding=kernel // 2, groups=groups, data_layout="NHWC",
                                  kernel_layout="HWIO", out_dtype=ACCUMULATOR[dtype])
    else:
        x = relax.Var("x", relax.TensorType((1, channels, size, size), dtype))
        w = relax.Var("w", relax.TensorType((out_channels, channels // groups, kernel, kernel), dtype))
        conv = relax.op.nn.conv2d(x, w, strides=stride, padding=kernel // 2, groups=groups, out_dtype=ACCUMULATOR[dtype])
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.relu(relax.op.astype(conv, "float32")))
            out = bb.emit_output(relax.op.astype(y, "float16"))
        bb.emit_func_output(out)
    passes = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps(),
              relax.transform.FuseTIR()]
    return tvm.transform.Sequential(passes)(bb.get())


def _conv_kernel(mod: tvm.IRModule) -> tvm.tirx.PrimFunc:
    return next(f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "conv" in gv.name_hint)


@needs_nvcc
def test_a_convolution_is_an_implicit_gemm_on_the_tensor_cores():
    tir, source = _cuda(_conv_module("NHWC", "float16", 16, 6, 32, 3, 1))
    (kernel,) = [k for n, k in analyse_module(tir).items() if "conv" in n]
    # M = 36 output pixels (padded to 48), N = 32 channels, K = 3 x 3 x 16 = 144 (9 calls of 16, unpadded)
    assert (kernel.useful_macs, kernel.macs, kernel.tensorized_macs) == (36 * 32 * 144, 48 * 32 * 144, 48 * 32 * 144)
    assert INSTRUCTION["float16"] in source
    assert nvcc_compile(source, "sm_90") == ""


def test_a_depthwise_convolution_stays_on_simt_lanes():
    assert TensorCoreMatmul().schedule(_conv_kernel(_conv_module("NHWC", "float16", 32, 6, 32, 3, 1, groups=32)), arch="sm_90") is None


@pytest.mark.parametrize("layout, dtype, channels, kernel, stride", [
    ("NHWC", "float16", 16, 3, 1), ("NCHW", "float16", 3, 7, 2), ("NCHW", "int8", 16, 3, 2), ("NHWC", "bfloat16", 8, 1, 1)])
def test_the_convolution_schedule_on_the_cpu_matches_the_unscheduled_kernel(layout, dtype, channels, kernel, stride):
    func = _conv_kernel(_conv_module(layout, dtype, channels, 9, 24, kernel, stride))
    rng = np.random.default_rng(2)
    args = [rng.integers(-3, 4, [int(d) for d in p.ty.shape]).astype(NUMPY[dtype]) for p in func.params[:2]]
    out_shape = [int(d) for d in func.params[2].ty.shape]
    replica = TensorCoreMatmul().schedule(func, arch="sm_90", device=False)
    np.testing.assert_array_equal(_cpu_run(replica.mod["main"], args, out_shape), _cpu_run(func, args, out_shape))


def test_int8_on_a_gpu_gives_attention_matmuls_float16_operands():
    from explorer.tvm.passes.precision import half_activation_matmuls

    bb = relax.BlockBuilder()
    q, k = relax.Var("q", relax.TensorType((4, 8, 16), "float32")), relax.Var("k", relax.TensorType((4, 16, 8), "float32"))
    with bb.function("main", [q, k]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(q, k))
        bb.emit_func_output(out)
    text = half_activation_matmuls(bb.get()).script()
    assert text.count('R.astype(') == 2 and 'out_dtype="float32"' in text and '"float16"' in text


@needs_nvcc
def test_an_int4_weight_only_matmul_unpacks_its_weights_into_the_tensor_core_copy():
    from models.zoo import onnx_path
    from tests.tvm.lowering import lower

    _, compiled, wl = lower(onnx_path("mlp"), "fused-int4w-bf16", lowering="cuda", build=True)
    source = cuda_source(compiled.executable)
    first = wl[wl.kernel.str.contains("dequantize")].iloc[0]  # 8 x 784 @ 784 x 512, rows padded to 16
    assert (first.useful_macs, first.tensorized_macs) == (8 * 784 * 512, 16 * 784 * 512)
    assert INSTRUCTION["bfloat16"] in source
    assert nvcc_compile(source, "sm_90") == ""


@needs_nvcc
def test_an_int8_convolution_whose_zero_padding_is_its_only_select_compiles():
    # M = 64 pixels, N = 32 channels, K = 9 x 32: no tile padding; the border's selects alone must keep
    # the 8-bit copy at 4 lanes (TVM 0.27 writes a wider selecting copy as CUDA that does not compile)
    _, source = _cuda(_conv_module("NHWC", "int8", 32, 8, 32, 3, 1))
    assert INSTRUCTION["int8"] in source
    assert nvcc_compile(source, "sm_90") == ""


def _reduction_block(func: tvm.tirx.PrimFunc):
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import get_root_block
    from tvm.s_tir.dlight.gpu.matmul import get_reduction_blocks

    sch = s_tir.Schedule(func)
    (block,) = get_reduction_blocks(sch, sch.get_child_blocks(get_root_block(sch)))
    return sch.get(block)


def test_a_depthwise_convolution_is_recognised_and_a_matmul_or_a_convolution_is_not():
    from explorer.tvm.schedules.depthwise_reduction import is_depthwise

    assert is_depthwise(_reduction_block(_conv_kernel(_conv_module("NCHW", "float16", 32, 6, 32, 3, 1, groups=32))))
    assert not is_depthwise(_reduction_block(_conv_kernel(_conv_module("NCHW", "float16", 32, 6, 32, 3, 1))))
    assert not is_depthwise(_reduction_block(_kernel(_module(24, 40, 64, "float16"))))


def test_a_float_depthwise_convolution_on_simt_lanes_executes_only_its_own_macs():
    from tvm.s_tir import dlight as dl

    from explorer.tvm.schedules.depthwise_reduction import DepthwiseReduction

    target = tvm.target.Target(cuda_target("sm_90"))
    mod = _conv_module("NCHW", "float16", 32, 6, 32, 3, 1, groups=32)
    with target:
        mod = dl.ApplyDefaultSchedule(TensorCoreMatmul(), DepthwiseReduction(), dl.gpu.Matmul(), dl.gpu.Fallback())(mod)
    tir, _ = lower_tir(vm_lower(mod), target, build=False)
    (kernel,) = [k for n, k in analyse_module(tir).items() if "conv" in n]
    assert kernel.macs == 32 * 36 * 9  # DLight's Matmul rule padded the one column and the window to 16: 28x
