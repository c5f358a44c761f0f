"""The fused attention kernels and the rewrite that puts them in place of MatMul -> Softmax -> MatMul."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tvm
from tvm import relax

from explorer.tvm.codegen import cuda_source, cuda_target, nvcc_compile
from explorer.tvm.kernels.attention import AttentionShape, key_padding, tiling
from explorer.tvm.passes.fused_attention import bias_strides, fused_attention

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def _attention(batch: int, heads: int, group: int, q_len: int, kv_len: int, dim: int, operands: str = "float32") -> tvm.IRModule:
    """softmax(q k^T / sqrt(dim) + bias) v as the decoders export it; ``group`` > 1 is grouped-query
    attention (q ``[B, Hkv, G, S, D]`` against k, v ``[B, Hkv, 1, T, D]``)."""
    grouped = group > 1
    q_shape = (batch, heads, group, q_len, dim) if grouped else (batch, heads, q_len, dim)
    kv_shape = (batch, heads, 1, kv_len, dim) if grouped else (batch, heads, kv_len, dim)
    bias_shape = (batch, 1, 1, q_len, kv_len) if grouped else (batch, 1, q_len, kv_len)
    bb = relax.BlockBuilder()
    q, k, v = (relax.Var(n, relax.TensorType(s, "float32")) for n, s in (("q", q_shape), ("k", kv_shape), ("v", kv_shape)))
    bias = relax.Var("bias", relax.TensorType(bias_shape, "float32"))
    rank = len(kv_shape)
    cast = (lambda x: relax.op.astype(x, operands)) if operands != "float32" else (lambda x: x)
    with bb.function("main", [q, k, v, bias]):
        with bb.dataflow():
            kt = bb.emit(relax.op.permute_dims(k, [*range(rank - 2), rank - 1, rank - 2]))
            s = bb.emit(relax.op.matmul(cast(q), cast(kt), out_dtype="float32"))
            s = bb.emit(relax.op.multiply(s, relax.const(1.0 / np.sqrt(dim), "float32")))
            p = bb.emit(relax.op.nn.softmax(relax.op.add(s, bias), axis=-1))
            out = bb.emit_output(relax.op.matmul(cast(p), cast(v), out_dtype="float32"))
        bb.emit_func_output(out)
    return bb.get()


def _inputs(mod: tvm.IRModule, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in mod["main"].params]


def _run(mod: tvm.IRModule, inputs: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(x) for x in inputs)).numpy()


def _kernels(mod: tvm.IRModule) -> list[str]:
    return sorted(gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


def _shape(batch=8, heads=8, group=4, q_len=1, kv_len=513, dim=128, operands="bfloat16", stored="float32") -> AttentionShape:
    return AttentionShape(batch, heads, group, q_len, kv_len, dim, dim, (q_len * kv_len, 0, 0, kv_len, 1),
                          batch * q_len * kv_len, 1.0 / np.sqrt(dim), stored, stored, stored, "float32", operands, operands,
                          "float32")


def test_a_decode_step_splits_the_keys_until_the_grid_reaches_its_target():
    # Llama-3.1-8B at batch 8: 8 x 8 blocks of 4 rows; 513 keys are 17 tiles of 32; 264 / 64 blocks
    # asks for 5 splits, of 4 tiles each
    tile = tiling(_shape())
    assert (tile.rows, tile.keys, tile.tiles_per_split, tile.splits) == (4, 32, 4, 5)


def test_a_batch_that_fills_the_device_does_not_split_the_keys():
    assert tiling(_shape(batch=64)).splits == 1


def test_keys_per_tile_halve_until_the_block_fits_in_shared_memory():
    # float32 operands of 256: 16 rows (16 KiB) + 32 keys of k and v (64 KiB) do not fit 48 KiB; 8 keys do
    tile = tiling(_shape(group=16, dim=256, operands="float32"))
    assert (tile.rows, tile.keys) == (16, 8)


def test_each_key_row_is_padded_by_one_shared_memory_bank():
    # 4 bytes: 2 bf16, 1 float32, 4 float8 elements; a warp's 32 keys then start in 32 different banks
    assert (key_padding("bfloat16"), key_padding("float32"), key_padding("float8_e4m3fn")) == (2, 1, 4)


@needs_nvcc
def test_the_cuda_key_tile_keeps_its_padded_row_stride():
    # buffer compaction would shrink a [32, 128 + 2] tile back to rows of 128: the tile is flat
    _, source = _gpu_attention(2, 2, 4, 100, 128)
    assert "* 130) + d)]" in source


def test_a_bias_that_broadcasts_over_heads_has_stride_zero_there():
    assert bias_strides((8, 1, 1, 129), (8, 12, 1, 129)) == (129, 0, 0, 0, 1)
    assert bias_strides((1, 5, 40), (2, 2, 3, 5, 40)) == (0, 0, 0, 40, 1)


def test_a_bias_that_does_not_broadcast_is_refused():
    assert bias_strides((8, 2, 1, 129), (8, 12, 1, 129)) is None


@pytest.mark.parametrize("case", [(2, 3, 1, 1, 37, 16), (2, 2, 4, 1, 70, 16), (1, 1, 1, 1, 300, 8), (3, 2, 2, 3, 45, 32)],
                         ids=["heads", "grouped", "one-row-many-splits", "three-queries"])
def test_the_rewritten_attention_on_the_cpu_matches_the_unfused_one(case):
    mod = _attention(*case)
    fused = fused_attention(device=False)(mod)
    assert _kernels(fused) == ["fused_attention_merge", "fused_attention_split"]
    inputs = _inputs(mod)
    np.testing.assert_allclose(_run(fused, inputs), _run(mod, inputs), rtol=1e-5, atol=1e-6)


def _attention_on_a_float16_cache(batch: int, heads: int, group: int, kv_len: int, dim: int) -> tvm.IRModule:
    """Grouped-query decode attention as the decoders export it over a float16 KV cache: k and v stored
    ``[B, Hkv, T, D]`` in float16, cast to float32 and given their group axis before the matmuls."""
    bb = relax.BlockBuilder()
    q = relax.Var("q", relax.TensorType((batch, heads, group, 1, dim), "float32"))
    k, v = (relax.Var(n, relax.TensorType((batch, heads, kv_len, dim), "float16")) for n in ("k", "v"))
    bias = relax.Var("bias", relax.TensorType((batch, 1, 1, 1, kv_len), "float32"))
    with bb.function("main", [q, k, v, bias]):
        with bb.dataflow():
            k5, v5 = (bb.emit(relax.op.expand_dims(bb.emit(relax.op.astype(x, "float32")), [2])) for x in (k, v))
            kt = bb.emit(relax.op.permute_dims(k5, [0, 1, 2, 4, 3]))
            s = bb.emit(relax.op.multiply(bb.emit(relax.op.matmul(q, kt)), relax.const(1.0 / np.sqrt(dim), "float32")))
            p = bb.emit(relax.op.nn.softmax(relax.op.add(s, bias), axis=-1))
            out = bb.emit_output(relax.op.matmul(p, v5))
        bb.emit_func_output(out)
    return bb.get()


def test_the_kernel_reads_a_float16_cache_as_stored_without_a_float32_copy():
    mod = _attention_on_a_float16_cache(2, 2, 4, 37, 16)
    fused = relax.transform.DeadCodeElimination()(fused_attention(device=False)(mod))
    script = fused["main"].script()
    assert "astype" not in script and "expand_dims" not in script  # no copy of the cache before the kernel
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal([int(d) for d in p.ty.shape]).astype(str(p.ty.dtype)) for p in mod["main"].params]
    np.testing.assert_allclose(_run(fused, inputs), _run(mod, inputs), rtol=1e-5, atol=1e-6)


def test_bfloat16_operands_are_rounded_as_the_unfused_matmuls_round_them():
    mod = _attention(1, 2, 3, 5, 40, 32, operands="bfloat16")
    inputs = _inputs(mod)
    unfused, fused = _run(mod, inputs), _run(fused_attention(device=False)(mod), inputs)
    exact = _run(_attention(1, 2, 3, 5, 40, 32), inputs)
    # the fused kernel rounds unnormalized probabilities, the unfused one normalized ones: both as
    # far from float32 as bfloat16's 8 bits make them, and as far from each other
    assert np.abs(fused - exact).max() < 0.02 and np.abs(unfused - exact).max() < 0.02
    assert np.abs(fused - unfused).max() < 0.02


def test_a_float32_prefill_keeps_its_matmuls():
    # 32 query rows per head: no tensor-core instruction takes float32, and the SIMT kernel costs more
    # than the unfused matmuls in prefill
    mod = fused_attention(device=False, arch="sm_90")(_attention(1, 2, 1, 32, 32, 16))
    assert not any(name.startswith("fused_attention") for name in _kernels(mod))


def _gpu_attention(batch: int, heads: int, group: int, kv_len: int, dim: int):
    """The rewritten decode attention lowered for sm_90: (TIR, CUDA source)."""
    from explorer.tvm.compile import lower_tir, vm_lower

    mod = tvm.transform.Sequential([fused_attention(), relax.transform.LegalizeOps()])(
        _attention(batch, heads, group, 1, kv_len, dim, operands="bfloat16"))
    from tvm.s_tir import dlight as dl

    target = tvm.target.Target(cuda_target("sm_90"))
    with target:
        mod = dl.ApplyDefaultSchedule(dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)
    tir, executable = lower_tir(vm_lower(mod), target, build=True)
    return tir, cuda_source(executable)


def test_a_decode_step_reads_each_key_and_value_once_and_writes_no_scores():
    from explorer.tvm.tir.walker import analyse_module

    tir, _ = _gpu_attention(2, 2, 4, 100, 64)
    kernels = analyse_module(tir)
    (split,) = [k for n, k in kernels.items() if "split" in n]
    uses = {u.name: u for u in split.buffers}
    # 2 x 2 heads of 100 keys of 64 float32, once: the 4 query heads of a group share them
    assert uses["k"].load_bytes == 2 * 2 * 100 * 64 * 4
    assert uses["v"].load_bytes == 2 * 2 * 100 * 64 * 4
    # what leaves the kernel: each split's output, maximum and sum of each row (4 splits of a tile each)
    assert tiling(_shape(2, 2, 4, 1, 100, 64)).splits == 4
    assert sum(u.store_bytes for u in split.buffers if u.param_index >= 0) == 2 * 2 * 4 * 4 * (64 + 2) * 4


def test_the_split_kernel_counts_the_padded_keys_as_executed_and_the_rest_as_useful():
    from explorer.tvm.tir.walker import analyse_module

    tir, _ = _gpu_attention(2, 2, 4, 100, 64)
    (split,) = [k for n, k in analyse_module(tir).items() if "split" in n]
    # 100 keys are 4 tiles of 32, a split each: 128 keys; q.k and p.v, 64 each
    assert split.macs == 2 * 2 * 4 * 128 * (64 + 64)
    assert split.useful_macs == 2 * 2 * 4 * 100 * (64 + 64)


@needs_nvcc
def test_the_split_kernel_compiles_for_sm_90():
    _, source = _gpu_attention(8, 8, 4, 513, 128)
    assert nvcc_compile(source, "sm_90") == ""


def test_a_fused_gpu_build_rewrites_attention_and_an_unfused_one_does_not():
    from explorer.core.strategies import get_strategy
    from explorer.tvm.pipeline import PipelineContext, strategy_passes

    names = {}
    for strategy in ("fused-bf16", "baseline"):
        ctx = PipelineContext(get_strategy(strategy), "cuda")
        with tvm.target.Target(cuda_target("sm_90")):
            names[strategy] = _kernels(strategy_passes(ctx, schedule=False)(_attention(2, 2, 4, 1, 70, 16)))
    assert "fused_attention_split" in names["fused-bf16"]
    assert "fused_attention_split" not in names["baseline"]
