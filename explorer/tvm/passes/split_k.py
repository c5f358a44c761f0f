"""Split-K for skinny tensor-core matmuls on a GPU: a decode step's few rows fill too few SMs.

:class:`~explorer.tvm.schedules.tensor_core_matmul.TensorCoreMatmul` gives each thread block an output
tile of up to 64 rows by 128 columns, so ``x [M, K] @ W[N, K]^T`` at a decode step's M of 8 or 64 and a
Llama layer's N of 4096 launches 32 blocks on an H100's 132 SMs: three quarters of the device idle (the
wave model, :func:`cost_models.spec.wave_efficiency`, charges that). Servers' GEMM libraries split the
reduction instead (cuBLAS's split-K, CUTLASS's stream-K). :func:`split_k` does it in Relax: ``S`` slices
of K become a batch, ``[S, M, K/S] x [S, N, K/S]^T`` into float32 partial sums, and a sum over the
slices, which the epilogue (bias, residual, cast) fuses with:

    partial = matmul(x as [S, M, K/S], W as [S, N, K/S]^T)      S x the blocks, each K/S deep
    out     = sum(partial, axis=0)                              M x N x S floats more to move

``S`` is the largest power of two up to :data:`MAX_SPLITS` whose blocks still fit one wave
(``blocks x S <= SMs``) and whose slices stay at least :data:`MIN_SLICE` deep and divide K; a matmul that
already fills half the SMs is left alone. The weights' re-layout is folded at compile time (a constant's
here, a weight parameter's by :mod:`explorer.tvm.passes.weight_params`).
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.ir.expr import Constant

from explorer.tvm.schedules.mma_intrinsics import TILE_M
from explorer.tvm.schedules.tensor_core_matmul import GEMV_ROWS, block_tile, intrinsics

#: The most slices K is split into.
MAX_SPLITS = 16

#: The least depth of one slice of K: shallower slices spend more on partial sums than they gain.
MIN_SLICE = 256

#: The compute units (SMs, CUs) of each architecture the explorer lowers for, as their target files say
#: (``[units]`` in gpu.toml / h200.toml: 132 SMs; b200.toml: 148; MI300X: 304 CUs, AMD CDNA 3 white paper).
UNITS = {"sm_90": 132, "sm_100": 148, "gfx942": 304}


def splits(m: int, n: int, k: int, units: int) -> int:
    """The slices of K an ``m x n`` output of depth ``k`` is split into on ``units`` SMs (1: none)."""
    tile = block_tile(m, n, k)
    blocks = -(-m // tile.rows) * -(-n // tile.columns)
    if m <= GEMV_ROWS or 2 * blocks > units:
        return 1
    s = 1
    while (2 * s <= MAX_SPLITS and blocks * 2 * s <= units and k % (2 * s) == 0 and k // (2 * s) >= MIN_SLICE
           and (k // (2 * s)) % TILE_M == 0):
        s *= 2
    return s


def split_k(x: relax.Expr, weight_nk: relax.Expr, n: int, k: int, weight_dtype: str, out_dtype: str,
            arch: str) -> relax.Expr | None:
    """``x @ weight_nk^T`` split along K (see the module docstring) for ``arch``, or None where it is
    not a tensor-core matmul, not static, or fills the SMs already. ``weight_nk`` is ``[n, k]`` of
    ``weight_dtype``: a constant, or an expression of weight parameters that compiles to one."""
    units = UNITS.get(arch)
    if units is None or not isinstance(x.ty, relax.TensorType) or x.ty.shape is None:
        return None
    dims = [getattr(d, "value", None) for d in x.ty.shape]
    if None in dims or len(dims) < 2 or dims[-1] != k:
        return None
    m = int(np.prod(dims[:-1]))
    in_dtype = str(x.ty.dtype)
    if intrinsics(arch, in_dtype, "float32") is None or weight_dtype != in_dtype:
        return None
    s = splits(m, n, k, units)
    if s == 1:
        return None
    xs = relax.op.permute_dims(relax.op.reshape(x, (m, s, k // s)), [1, 0, 2])
    if isinstance(weight_nk, Constant):
        w = weight_nk.value.numpy().reshape(n, s, k // s).transpose(1, 0, 2)
        ws = relax.const(np.ascontiguousarray(w), in_dtype)
    else:
        ws = relax.op.permute_dims(relax.op.reshape(weight_nk, (n, s, k // s)), [1, 0, 2])
    partial = relax.op.matmul(xs, relax.op.permute_dims(ws, [0, 2, 1]), out_dtype="float32")
    # shaped as the output before the sum, so that the sum and the epilogue after it fuse
    out = relax.op.sum(relax.op.reshape(partial, (s, *dims[:-1], n)), axis=[0])
    if (out_dtype or in_dtype) != "float32":
        out = relax.op.astype(out, out_dtype or in_dtype)
    return out
