"""Constant matmul weights laid out for the lowering: on CPUs a column count that vectorizes badly is
padded (an LM head over a prime vocabulary), on GPUs weights are kept ``[N, K]`` as deployments keep them."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from explorer.tvm.codegen import current_arch
from explorer.tvm.passes.rewriting import rewrite_calls
from explorer.tvm.passes.split_k import split_k
from explorer.tvm.relax_ir import name_of

#: A matmul whose constant weight has at least this many columns...
PAD_MIN_COLUMNS = 64
#: ...and whose column count has no divisor of at least half a vector's lanes gets its columns padded to
#: a multiple of this (16 fp32 lanes of AVX-512): a vocabulary of 50257 columns (prime) otherwise runs
#: one lane at a time.
PAD_COLUMNS_TO = 16


def _padded_columns(call, _mod):
    weight = call.args[1]
    if not isinstance(weight, Constant) or weight.ty.ndim != 2:
        return None
    columns = int(weight.ty.shape.values[1])
    if columns < PAD_MIN_COLUMNS or max(d for d in range(1, PAD_COLUMNS_TO + 1) if columns % d == 0) >= PAD_COLUMNS_TO // 2:
        return None
    value = weight.value.numpy()
    padded = np.zeros((value.shape[0], -(-columns // PAD_COLUMNS_TO) * PAD_COLUMNS_TO), value.dtype)
    padded[:, :columns] = value
    out = relax.op.matmul(call.args[0], relax.const(padded), out_dtype=call.attrs.out_dtype)
    return relax.op.strided_slice(out, axes=[call.ty.ndim - 1], begin=[0], end=[columns])


def _nt_weight(call, weights: frozenset[str], arch: str):
    weight = call.args[1]
    if weight.ty.ndim != 2 or not str(weight.ty.dtype).startswith(("float", "bfloat")):
        return None
    if isinstance(weight, Constant):
        kept = relax.const(np.ascontiguousarray(weight.value.numpy().T))
    elif isinstance(weight, relax.Var) and name_of(weight) in weights:
        kept = relax.op.permute_dims(weight)  # folded into an [N, K] weight parameter (weight_params)
    else:
        return None
    out_dtype = str(call.attrs.out_dtype) if call.attrs.out_dtype is not None else ""
    k, n = (int(d) for d in weight.ty.shape.values)
    split = (split_k(call.args[0], kept, n, k, str(weight.ty.dtype), out_dtype if out_dtype not in ("", "void") else "",
                     arch) if arch else None)
    if split is not None:
        return split
    return relax.op.matmul(call.args[0], relax.op.permute_dims(kept), out_dtype=call.attrs.out_dtype)


def weights_along_k(weights: frozenset[str] = frozenset(), split: bool = False) -> tvm.transform.Pass:
    """Keep each constant float matmul weight (and each weight parameter named in ``weights``) ``[N, K]``
    (``x @ W^T``, which ``FuseTransposeMatmul`` makes one kernel), as GPU deployments keep them (PyTorch's
    Linear, MLC-LLM's ``NT_matmul``): a decode step's GEMV then reads each output's weights along K, and
    DLight's ``GEMV`` rule schedules it (its outer-reduction schedule, for ``[K, N]``, has parameters for
    OpenCL and Metal only). With ``split``, a skinny tensor-core matmul that leaves SMs of the current
    target idle is split along K (:mod:`explorer.tvm.passes.split_k`)."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.WeightsAlongK")
    def apply(mod, _ctx):
        arch = current_arch() if split else ""
        return rewrite_calls(mod, "relax.matmul", lambda call, _mod: _nt_weight(call, weights, arch))

    return apply


@tvm.transform.module_pass(opt_level=0, name="explorer.PadMatmulColumns")
def pad_matmul_columns(mod, _ctx):
    """Pad the columns of a constant matmul weight whose count vectorizes badly (see
    :data:`PAD_COLUMNS_TO`) with zeros, and slice the result back: the LM head of a vocabulary of 50257
    then runs 16 lanes at a time, as deployments pad their vocabularies. The weight grows by under
    :data:`PAD_COLUMNS_TO` columns (0.03% for GPT-2's)."""
    return rewrite_calls(mod, "relax.matmul", _padded_columns)
