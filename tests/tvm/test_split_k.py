"""Split-K for skinny tensor-core matmuls (explorer.tvm.passes.split_k): how many slices, and that the
split matmul computes what the matmul did."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from explorer.tvm import codegen
from explorer.tvm.passes.matmul_weights import weights_along_k
from explorer.tvm.passes.split_k import splits


@pytest.mark.parametrize("m, n, k, expected", [
    (8, 4096, 4096, 4),     # 32 blocks of 128 columns: 4 x 32 = 128 of 132 SMs
    (8, 1024, 4096, 16),    # 8 blocks: 16 slices of 256
    (64, 4096, 4096, 4),    # 64 rows are still one block high
    (8, 14336, 4096, 1),    # 112 blocks fill more than half the SMs already
    (256, 4096, 4096, 1),   # 4 x 32 blocks
    (8, 4096, 384, 1),      # slices of 192 would be shallower than 256
    (2, 4096, 4096, 1),     # a GEMV: not a tensor-core matmul
])
def test_the_slices_fill_one_wave_and_stay_deep(m, n, k, expected):
    assert splits(m, n, k, units=132) == expected


def _skinny_matmul(m: int, k: int, n: int, dtype: str):
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, m, k), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, relax.const(weight), out_dtype="float32"))
        bb.emit_func_output(out)
    return bb.get(), weight


def test_a_split_matmul_on_an_sm_90_computes_the_matmul():
    mod, weight = _skinny_matmul(8, 1024, 512, "float16")  # 4 blocks of 128 columns: 4 slices of 256
    with tvm.target.Target(codegen.cuda_target("sm_90")):
        split = weights_along_k(split=True)(mod)
    script = split["main"].script()
    assert "R.sum" in script and "(4, 8, 256)" in script
    # the same Relax, built for this CPU: the slices' float32 partial sums add up to the matmul
    x = np.random.default_rng(1).standard_normal((1, 8, 1024)).astype("float16")
    vm = relax.VirtualMachine(tvm.compile(split, target="llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, x.astype("float32") @ weight.astype("float32"), rtol=2e-3, atol=2e-3)


def test_off_a_gpu_target_nothing_is_split():
    mod, _ = _skinny_matmul(8, 1024, 512, "float16")
    assert "R.sum" not in weights_along_k(split=True)(mod)["main"].script()


@pytest.mark.parametrize("strategy, split", [("fused-bf16", True), ("fused-fp16", True), ("fused", True),
                                             ("fused-int4w-bf16", False), ("fused-int8w", False), ("baseline", False)])
def test_fused_builds_split_and_weight_only_ones_keep_the_matmul_their_rewrite_reads(strategy, split):
    from explorer.core.strategies import get_strategy
    from explorer.tvm.pipeline import PipelineContext, splits_k

    assert splits_k(PipelineContext(get_strategy(strategy), "cuda")) is split
