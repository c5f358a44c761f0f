"""Prefill attention on the tensor cores (explorer.tvm.kernels.prefill_attention): its tile, the kernel's
numbers on the CPU against numpy, the instructions in the generated CUDA and gfx942 code, what it reads
and writes, and the rewrite that puts it in place of a prefill's MatMul -> Softmax -> MatMul."""

from __future__ import annotations

import re
import shutil

import ml_dtypes
import numpy as np
import pytest
import tvm

from explorer.host.toolchain import rocm_missing
from explorer.tvm.codegen import cuda_source, cuda_target, nvcc_compile, rocm_assembly, rocm_target, rocm_toolchain
from explorer.tvm.compile import lower_tir
from explorer.tvm.kernels.attention import AttentionShape
from explorer.tvm.kernels.prefill_attention import (
    FRAGMENT_STEPS,
    PrefillTiling,
    prefill_attention,
    prefill_tiling,
    shared_bytes,
)
from explorer.tvm.passes.fused_attention import fused_attention
from explorer.tvm.schedules.mfma_intrinsics import mfma_group
from explorer.tvm.schedules.mma_intrinsics import mma_group
from explorer.tvm.tir.walker import analyse_module
from tests.tvm.test_fused_attention import _attention, _inputs, _kernels, _run

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
needs_rocm = pytest.mark.skipif(bool(rocm_missing()), reason="TVM's ROCm build needs device bitcode and ld.lld")
NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _shape(batch=1, heads=2, group=2, q_len=24, kv_len=40, dim=32, operands="float16", stored="float32",
           out="float32") -> AttentionShape:
    """Grouped-query attention with a causal bias ``[q_len, kv_len]`` broadcast over batch and heads."""
    return AttentionShape(batch, heads, group, q_len, kv_len, dim, dim, (0, 0, 0, kv_len, 1), q_len * kv_len, 0.125,
                          stored, stored, stored, "float32", operands, operands, out)


def _groups(dtype: str):
    return {"mma": mma_group(dtype, "float32"), "mfma": mfma_group(dtype, "float32")}


def test_llama_s_head_takes_64_rows_and_32_keys_a_block():
    shape = _shape(dim=128, operands="bfloat16")
    assert prefill_tiling(shape, mma_group("bfloat16", "float32")) == PrefillTiling(warps=4, keys=32, pad=8)
    # q rows padded to 136 (whose memory the key rows and probabilities take once q is in registers), v
    # transposed to [128, 40], float32 scores [64, 33], three floats a row
    assert shared_bytes(shape, 64, 32, 8) == max(64 * 136 * 2, 32 * 136 * 2 + 64 * 40 * 2) + 128 * 40 * 2 + 64 * 33 * 4 + 3 * 64 * 4


def test_a_head_of_256_takes_two_warps_a_block_to_fit():
    # four warps' 64 query rows of 256 leave too little of 48 kB even with 16 keys a tile (51,200 bytes)
    assert prefill_tiling(_shape(dim=256), mma_group("float16", "float32")) == PrefillTiling(warps=2, keys=32, pad=8)


def test_heads_not_a_multiple_of_16_and_other_operand_types_are_refused():
    group = mma_group("float16", "float32")
    assert prefill_tiling(_shape(dim=72), group) is None
    assert prefill_tiling(_shape(operands="bfloat16"), group) is None


def _numpy_attention(shape: AttentionShape, q, k, v, bias) -> np.ndarray:
    """The unfused computation with operands rounded as the matmuls take them: q k^T in float32, the
    softmax, p v."""
    nd = NUMPY[shape.qk_dtype]
    scores = q.astype(nd).astype(np.float32) @ np.swapaxes(k.astype(nd).astype(np.float32)[:, :, None], -1, -2)
    scores = scores * shape.scale + bias
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p.astype(nd).astype(np.float32) @ v.astype(nd).astype(np.float32)[:, :, None]


@pytest.mark.parametrize("family", ["mma", "mfma"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_kernel_on_the_cpu_matches_numpy(family, dtype):
    # 2 x 24 rows pad to a block of 64, 40 keys to 2 tiles of 32; a causal mask over the last 24 keys
    shape = _shape(operands=dtype)
    group = _groups(dtype)[family]
    func = prefill_attention(shape, group, prefill_tiling(shape, group), device=False)
    lib = tvm.tirx.build(func.with_attr("global_symbol", "main"), target="llvm")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 2, 24, 32)).astype(np.float32)
    k, v = (rng.standard_normal((1, 2, 40, 32)).astype(np.float32) for _ in range(2))
    bias = np.where(np.arange(40)[None, :] <= np.arange(24)[:, None] + 16, 0, -1e9).astype(np.float32)
    out = tvm.runtime.empty((2 * 2 * 24 * 32,), "float32", tvm.cpu())
    lib["main"](*[tvm.runtime.tensor(a.ravel()) for a in (q, k, v, bias)], out)
    # the kernel rounds unnormalized probabilities, numpy normalized ones: apart by the operand type's
    # rounding at most
    tolerance = {"float16": 2e-3, "bfloat16": 1.5e-2}[dtype]
    np.testing.assert_allclose(out.numpy().reshape(1, 2, 2, 24, 32), _numpy_attention(shape, q, k, v, bias),
                               atol=tolerance)


@pytest.mark.parametrize("family", ["mma", "mfma"])
def test_every_fragment_step_is_tensorized(family):
    shape = _shape()
    group = _groups("float16")[family]
    func = prefill_attention(shape, group, prefill_tiling(shape, group))
    names = set(re.findall(r'T\.sblock\("(\w+)"', func.script()))
    assert {f"{name}_o" for name, _, _ in FRAGMENT_STEPS} <= names
    assert not {name for name, _, _ in FRAGMENT_STEPS} & names


def _cuda_kernel(shape: AttentionShape, arch: str = "sm_90"):
    group = mma_group(shape.qk_dtype, "float32")
    func = prefill_attention(shape, group, prefill_tiling(shape, group)).with_attr("global_symbol", "prefill")
    tir, executable = lower_tir(tvm.IRModule({"prefill": func}), tvm.target.Target(cuda_target(arch)), build=True)
    (kernel,) = analyse_module(tir).values()
    return kernel, cuda_source(executable)


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_both_matmuls_are_mma_instructions_and_compile_for_sm_90(dtype):
    kernel, source = _cuda_kernel(_shape(dim=128, operands=dtype, stored=dtype, out=dtype))
    ptx = {"float16": "f16", "bfloat16": "bf16"}[dtype]
    assert f"mma.sync.aligned.m16n8k16.row.col.f32.{ptx}.{ptx}.f32" in source
    assert kernel.tensorized_macs == kernel.macs
    assert nvcc_compile(source, "sm_90") == ""


@needs_rocm
def test_both_matmuls_are_mfma_instructions_for_gfx942():
    shape = _shape(dim=128, operands="bfloat16", stored="bfloat16", out="bfloat16")
    group = mfma_group("bfloat16", "float32")
    func = prefill_attention(shape, group, prefill_tiling(shape, group)).with_attr("global_symbol", "prefill")
    with rocm_toolchain():
        _, executable = lower_tir(tvm.IRModule({"prefill": func}), tvm.target.Target(rocm_target("gfx942")), build=True)
    assert set(re.findall(r"v_mfma_\w+", rocm_assembly(executable))) == {"v_mfma_f32_16x16x16_bf16"}


def test_each_block_reads_its_head_s_keys_and_values_once_and_writes_only_the_output():
    kernel, _ = _cuda_kernel(_shape())
    uses = {u.name: u for u in kernel.buffers}
    # 2 heads x a block of 64 rows (48 of them real), each reading its head's 40 keys and values of 32
    # float32
    assert uses["k"].load_bytes == 2 * 40 * 32 * 4
    assert uses["v"].load_bytes == 2 * 40 * 32 * 4
    # the 2 x 48 rows of 32 float32: no scores
    assert sum(u.store_bytes for u in kernel.buffers if u.param_index >= 0) == 2 * 48 * 32 * 4


def test_padded_rows_and_keys_are_executed_multiply_adds_and_the_rest_useful():
    kernel, _ = _cuda_kernel(_shape())
    # 2 heads x a block of 64 rows x 2 tiles of 32 keys x (q.k 32 + p.v 32)
    assert kernel.macs == 2 * 64 * 64 * (32 + 32)
    assert kernel.useful_macs == 2 * 48 * 40 * (32 + 32)


def test_a_half_precision_prefill_on_a_gpu_becomes_one_kernel_that_matches_the_unfused_one():
    mod = _attention(1, 2, 2, 24, 40, 32, operands="float16")
    fused = fused_attention(device=False, arch="sm_90")(mod)
    assert [n for n in _kernels(fused) if n.startswith("fused_attention")] == ["fused_attention_prefill"]
    inputs = _inputs(mod)
    np.testing.assert_allclose(_run(fused, inputs), _run(mod, inputs), atol=2e-3)


def test_without_a_tensor_core_target_prefill_keeps_its_matmuls():
    mod = fused_attention(device=False, arch="")(_attention(1, 2, 2, 24, 40, 32, operands="float16"))
    assert not any(name.startswith("fused_attention") for name in _kernels(mod))
