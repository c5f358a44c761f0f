"""The tensor-core matmul rule on CDNA 3's matrix cores (explorer.tvm.schedules.mfma_intrinsics): the
fragment layouts against AMD's, the instruction in the gfx942 assembly, the multiply-adds the walker
counts, the block's wavefronts, and the same schedule's numbers on the CPU."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm.s_tir import dlight as dl

from explorer.host.toolchain import rocm_missing
from explorer.tvm.codegen import rocm_assembly, rocm_target, rocm_toolchain
from explorer.tvm.compile import lower_tir, vm_lower
from explorer.tvm.schedules.mfma_intrinsics import WAVE, _tile_of_lane, accumulator_layout, operand_layout
from explorer.tvm.schedules.tensor_core_matmul import BlockTile, TensorCoreMatmul, block_tile
from explorer.tvm.tir.walker import analyse_module
from tests.tvm.test_tensor_core_matmul import NUMPY, _cpu_run, _kernel, _module

#: The gfx942 instruction each operand type's kernels must contain.
INSTRUCTION = {"float16": "v_mfma_f32_16x16x16_f16", "bfloat16": "v_mfma_f32_16x16x16_bf16",
               "int8": "v_mfma_i32_16x16x32_i8"}

needs_rocm = pytest.mark.skipif(bool(rocm_missing()), reason="TVM's ROCm build needs device bitcode and ld.lld")


def _rocm(mod: tvm.IRModule):
    """The module scheduled by the rule alone for gfx942: (captured TIR, the device code's assembly)."""
    target = tvm.target.Target(rocm_target("gfx942"))
    with target:
        mod = dl.ApplyDefaultSchedule(TensorCoreMatmul())(mod)
    with rocm_toolchain():
        tir, executable = lower_tir(vm_lower(mod), target, build=True)
    return tir, rocm_assembly(executable)


def test_an_operand_lane_holds_a_run_of_its_row_along_k():
    # CDNA 3 ISA, MFMA operand layout: lane i + 16 * (c // n) holds row i's elements c of a run of n = k / 4
    assert operand_layout(16)(5, 9) == (5 + 16 * 2, 1)
    assert operand_layout(32)(5, 9) == (5 + 16 * 1, 1)
    assert operand_layout(32)(15, 31) == (63, 7)


def test_an_accumulator_lane_holds_four_rows_of_its_column():
    assert accumulator_layout(6, 3) == (3 + 16 * 1, 2)
    assert all(accumulator_layout(*_tile_of_lane(lane, r)) == (lane, r) for lane in range(WAVE) for r in range(4))


@pytest.mark.parametrize("k", [16, 32])
def test_registers_loaded_by_the_layout_multiply_to_a_times_b_transposed(k):
    """The instruction as AMD documents it (each lane's registers from the layouts above), fed the tiles
    the load intrinsic puts in each lane (row ``tx % 16``, run ``tx // 16`` of A ``[16, k]`` and of B
    stored ``[16 columns, k]``), stored back by the store intrinsic's map: A @ B^T."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(-4, 5, (16, k)), rng.integers(-4, 5, (16, k))
    run = k // 4
    lanes_a = np.array([[a[tx % 16, run * (tx // 16) + r] for r in range(run)] for tx in range(WAVE)])
    lanes_b = np.array([[b[tx % 16, run * (tx // 16) + r] for r in range(run)] for tx in range(WAVE)])
    # the hardware: D[i, j] = sum over c of A[i, c] * B[c, j], A's (i, c) and B's (c, j) at the layouts
    d = np.zeros((WAVE, 4), dtype=np.int64)
    for i in range(16):
        for j in range(16):
            total = 0
            for c in range(k):
                la, ra = operand_layout(k)(i, c)
                lb, rb = operand_layout(k)(j, c)
                total += lanes_a[la, ra] * lanes_b[lb, rb]
            lane, r = accumulator_layout(i, j)
            d[lane, r] = total
    out = np.zeros((16, 16), dtype=np.int64)
    for tx in range(WAVE):
        for r in range(4):
            out[_tile_of_lane(tx, r)] = d[tx, r]
    np.testing.assert_array_equal(out, a @ b.T)


def test_a_block_has_at_most_four_wavefronts():
    # 64 x 128: 2 x 2 wavefronts of 2 x 4 tiles (256 threads, TVM's rocm limit), not CUDA's 2 x 4 warps
    assert block_tile(64, 128, 64, max_warps=4) == BlockTile(warps_m=2, tiles_m=2, warps_n=2, tiles_n=4, k_steps=2)
    assert block_tile(48, 48, 64, max_warps=4) == BlockTile(warps_m=3, tiles_m=1, warps_n=1, tiles_n=3, k_steps=2)
    assert block_tile(48, 128, 64) == BlockTile(warps_m=3, tiles_m=1, warps_n=4, tiles_n=2, k_steps=2)


def test_only_cdna3_takes_the_rule():
    func = _kernel(_module(32, 64, 64, "float16"))
    assert TensorCoreMatmul().schedule(func, arch="gfx90a") is None
    assert TensorCoreMatmul().schedule(func, arch="gfx942") is not None


def test_float8_stays_on_the_vector_alus():
    assert TensorCoreMatmul().schedule(_kernel(_module(32, 64, 64, "float8_e4m3fn")), arch="gfx942") is None


@needs_rocm
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
def test_each_operand_type_emits_its_mfma_instruction_for_gfx942(dtype):
    _, asm = _rocm(_module(64, 128, 128, dtype))
    assert set(re.findall(r"v_mfma_\w+", asm)) == {INSTRUCTION[dtype]}


@needs_rocm
def test_the_walker_counts_one_mfma_as_a_wavefronts_macs():
    tir, _ = _rocm(_module(24, 40, 64, "float16"))
    (kernel,) = [k for n, k in analyse_module(tir).items() if "matmul" in n]
    # 24 rows pad to 2 tiles of 16, 40 columns to 3 tiles of 16; K = 64 is 4 instructions of 16
    assert kernel.tensorized_macs == 32 * 48 * 64
    assert kernel.ops[("mac", "float16")] == 32 * 48 * 64
    assert kernel.useful_macs == 24 * 40 * 64


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
def test_the_schedule_on_the_cpu_matches_numpy(dtype):
    m, n, k = 24, 40, 72  # every dimension padded
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (m, k)).astype(NUMPY[dtype])
    w = rng.integers(-3, 4, (n, k)).astype(NUMPY[dtype])
    b = rng.standard_normal(n).astype(np.float32)
    replica = TensorCoreMatmul().schedule(_kernel(_module(m, n, k, dtype)), arch="gfx942", device=False)
    got = _cpu_run(replica.mod["main"], [x, w, b], (m, n))
    want = np.maximum(x.astype(np.float32) @ w.astype(np.float32).T + b, 0).astype(np.float16)
    np.testing.assert_array_equal(got, want)


@needs_rocm
def test_a_bfloat16_operand_s_reinterpretation_is_not_counted_as_arithmetic():
    tir, _ = _rocm(_module(16, 16, 32, "bfloat16"))
    (kernel,) = [k for n, k in analyse_module(tir).items() if "matmul" in n]
    # two MFMAs of 16 x 16 x 16, then the epilogue on the 16 x 16 outputs: + bias, relu, cast to float16
    assert dict(kernel.ops) == {("mac", "bfloat16"): 16 * 16 * 32, ("add", "float32"): 256, ("cmp", "float32"): 256,
                                ("cast", "float16"): 256}
