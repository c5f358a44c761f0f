"""Attention written as MatMul -> Softmax -> MatMul rewritten to the fused kernels of
:mod:`explorer.tvm.kernels.attention`, so its scores never reach global memory.

The pattern is what decoders exported from PyTorch (and the zoo's) compute::

    scores  = matmul(astype?(q), astype?(permute_dims(k, [..., -1, -2])))     float32
    biased  = add(multiply(scores, scale) | divide(scores, 1/scale), bias)
    context = matmul(astype?(softmax(biased, axis=-1)), astype?(v))

with ``q [B, H, S, D]`` and ``k, v [B, H, T, D]``, or grouped-query ``q [B, Hkv, G, S, D]`` against
``k, v [B, Hkv, 1, T, D]``, static shapes and a bias that broadcasts over the scores (the decoders'
causal and padding mask). The casts are kept: the kernel reads q, k and v as stored (k and v as the
cache holds them, through the casts and the group axis put in front of the matmuls) and rounds each
operand to the type its matmul took. Anything else is left as it was.

Attention with at most :data:`~explorer.tvm.kernels.attention.MAX_ROWS` query rows per key/value head
(a decode step: one query per sequence, times the query heads of a group) becomes the split-KV kernel
and its merge, on SIMT lanes. More rows (prefill) become the tensor-core kernel of
:mod:`explorer.tvm.kernels.prefill_attention` where the target's tensor or matrix cores take the
matmuls' operand type (fp16, bf16) and a block fits its shared memory; elsewhere (float32 builds, CPUs)
prefill stays MatMul -> Softmax -> MatMul: where every key meets hundreds of queries, the SIMT kernel
costs more than the scores' traffic it saves (Llama-3.1-8B prefill:512 on an H100: 12.1 J against the
unfused tensor-core matmuls' 10.1 J).
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Call, Constant

from explorer.tvm.codegen import current_arch
from explorer.tvm.kernels.attention import MAX_ROWS, AttentionShape, merge_splits, partial_attention, tiling
from explorer.tvm.kernels.prefill_attention import prefill_attention, prefill_tiling
from explorer.tvm.passes.rewriting import bound_value, rewritten
from explorer.tvm.schedules.tensor_core_matmul import intrinsics

#: TVM's op-pattern kind that FuseOps never fuses into (``relay::kOpaque``).
OPAQUE = 8


def _static(shape) -> tuple[int, ...] | None:
    dims = [getattr(d, "value", None) for d in shape]
    return None if any(d is None for d in dims) else tuple(int(d) for d in dims)


def _shape(expr) -> tuple[int, ...] | None:
    info = expr.ty
    return _static(info.shape) if isinstance(info, relax.TensorType) and info.shape is not None else None


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _op(expr, name: str) -> bool:
    return isinstance(expr, Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def _scalar(expr) -> float | None:
    if not isinstance(expr, Constant):
        return None
    value = expr.value.numpy()
    return float(value.reshape(())) if value.size == 1 else None


def _swaps_last_two(call: Call) -> bool:
    rank = len(_shape(call) or ())
    axes = list(range(rank)) if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
    return rank >= 2 and axes == [*range(rank - 2), rank - 1, rank - 2]


def bias_strides(bias: tuple[int, ...], scores: tuple[int, ...]) -> tuple[int, int, int, int, int] | None:
    """Strides of a contiguous ``bias`` broadcast over ``scores`` (``[B, H, S, T]`` or
    ``[B, Hkv, G, S, T]``), as (batch, head, group, query, key) with 0 where it broadcasts;
    None where it does not broadcast."""
    if len(bias) > len(scores):
        return None
    bias = (1,) * (len(scores) - len(bias)) + tuple(bias)
    strides, step = [], 1
    for b, s in zip(reversed(bias), reversed(scores)):
        if b not in (1, s):
            return None
        strides.append(step if b == s and b != 1 else 0)
        step *= b
    strides.reverse()
    if len(scores) == 4:
        strides.insert(2, 0)
    return tuple(strides)


@relax.expr_functor.mutator
class _AttentionRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, device: bool, arch: str):
        super().__init__(mod)
        self.device = device
        self.arch = arch

    def _bound(self, expr):
        """What ``expr`` is bound to (through the function's bindings), else itself."""
        return bound_value(self, expr)

    def _uncast(self, expr):
        """``expr`` without the astype applied to it (the tensor as stored)."""
        bound = self._bound(expr)
        return bound.args[0] if _op(bound, "relax.astype") else expr

    def _stored(self, expr):
        """The key or value tensor as the cache stores it: ``expr`` through any astype and the grouped-query
        expand_dims that gives it a group axis of 1 (``[B, Hkv, T, D]`` -> ``[B, Hkv, 1, T, D]``), which the
        kernel does itself as it reads (a float16 cache is read as float16, not copied to float32 first)."""
        bound = self._bound(expr)
        while _op(bound, "relax.astype") or (_op(bound, "relax.expand_dims") and len(_shape(bound) or ()) == 5
                                             and [int(a) for a in bound.attrs.axis] == [2]):
            expr = bound.args[0]
            bound = self._bound(expr)
        return expr

    def _uncast_all(self, expr):
        """What ``expr`` is bound to, through any astype (a float16 build rounds its scores to float16
        between the matmul and the scale; the kernel keeps them in float32)."""
        bound = self._bound(expr)
        while _op(bound, "relax.astype"):
            bound = self._bound(bound.args[0])
        return bound

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not _op(call, "relax.matmul"):
            return call
        match = self._match(call)
        if match is None:
            return call
        shape, operands, context_shape = match
        if shape.rows <= MAX_ROWS:
            try:
                return self._emit_decode(shape, operands, context_shape, tiling(shape))
            except ValueError:
                return call  # a head too large for a block's shared memory
        group = intrinsics(self.arch, shape.qk_dtype, "float32") if self.arch else None
        tile = prefill_tiling(shape, group) if group is not None else None
        if tile is None:
            return call  # no tensor-core instruction for its types here: see the module docstring
        return self._emit_prefill(shape, operands, context_shape, group, tile)

    def _match(self, context: Call):
        p_operand, v_operand = context.args
        probs = self._bound(self._uncast(p_operand))
        v = self._stored(v_operand)
        if not _op(probs, "relax.nn.softmax") or int(probs.attrs.axis) not in (-1, len(_shape(probs) or ()) - 1):
            return None
        biased = self._bound(probs.args[0])
        if not _op(biased, "relax.add"):
            return None
        scaled, bias = biased.args
        if not any(_op(self._uncast_all(scaled), name) for name in ("relax.multiply", "relax.divide", "relax.matmul")):
            scaled, bias = bias, scaled
        scale, scores = 1.0, self._uncast_all(scaled)
        if _op(scores, "relax.multiply") or _op(scores, "relax.divide"):
            factor = _scalar(scores.args[1])
            if factor is None or factor == 0:
                return None
            scale = factor if _op(scores, "relax.multiply") else 1.0 / factor
            scores = self._uncast_all(scores.args[0])
        if not _op(scores, "relax.matmul"):
            return None
        q_operand, kt_operand = scores.args
        q = self._uncast(q_operand)
        kt = self._bound(kt_operand)
        if _op(kt, "relax.astype"):
            kt = self._bound(kt.args[0])
        if not _op(kt, "relax.permute_dims") or not _swaps_last_two(kt):
            return None
        k = self._stored(kt.args[0])
        return self._shape_of(q, k, v, bias, scale, q_operand, p_operand, context, scores, probs)

    def _shape_of(self, q, k, v, bias, scale, q_operand, p_operand, context, scores, probs):
        shapes = [_shape(x) for x in (q, k, v, bias, context)]
        if any(s is None for s in shapes):
            return None
        qs, ks, vs, bs, cs = shapes
        if len(qs) == 4 and len(ks) == 4:
            (b, h, s, d), group = qs, 1
            if ks[:2] != (b, h) or ks[3] != d:
                return None
        elif len(qs) == 5 and (len(ks) == 5 and ks[2] == 1 or len(ks) == 4):
            b, h, group, s, d = qs
            ks = ks[:2] + ks[3:] if len(ks) == 5 else ks
            if ks[:2] != (b, h) or ks[3] != d:
                return None
            vs = vs[:2] + vs[3:] if len(vs) == 5 and vs[2] == 1 else vs
        else:
            return None
        t = ks[2]
        if len(vs) != 4 or vs[:3] != (b, h, t):
            return None
        scores_shape = (*qs[:-1], t)
        strides = bias_strides(bs, scores_shape)
        if strides is None or any(_dtype(x) != "float32" for x in (scores, probs, bias)):
            return None
        shape = AttentionShape(
            batch=b, kv_heads=h, group=group, q_len=s, kv_len=t, head_dim=d, v_dim=vs[3], bias_strides=strides,
            bias_size=int(np.prod(bs)), scale=float(np.float32(scale)), q_dtype=_dtype(q), k_dtype=_dtype(k),
            v_dtype=_dtype(v), bias_dtype=_dtype(bias), qk_dtype=_dtype(q_operand), pv_dtype=_dtype(p_operand),
            out_dtype=_dtype(context))
        return shape, (q, k, v, bias), cs

    def _flat(self, expr):
        return self.builder_.emit(relax.op.reshape(expr, (math.prod(_shape(expr)),)))

    def _emit_prefill(self, shape: AttentionShape, operands, context_shape, group, tile):
        kernel = prefill_attention(shape, group, tile, device=self.device).with_attr("op_pattern", OPAQUE)
        gv = self.builder_.add_func(kernel, "fused_attention_prefill")
        out = self.builder_.emit(relax.call_tir(gv, [self._flat(x) for x in operands], out_ty=relax.TensorType(
            (shape.batch * shape.kv_heads * shape.rows * shape.v_dim,), shape.out_dtype)))
        return relax.op.reshape(out, context_shape)

    def _emit_decode(self, shape: AttentionShape, operands, context_shape, tile):
        partial = partial_attention(shape, tile, device=self.device).with_attr("op_pattern", OPAQUE)
        partial_gv = self.builder_.add_func(partial, "fused_attention_split")
        merge_gv = self.builder_.add_func(merge_splits(shape, tile.splits), "fused_attention_merge")
        dims = (shape.batch, shape.kv_heads, shape.rows)
        parts = self.builder_.emit(relax.call_tir(partial_gv, [self._flat(x) for x in operands], out_ty=[
            relax.TensorType((*dims, tile.splits, shape.v_dim), "float32"),
            relax.TensorType((*dims, tile.splits), "float32"),
            relax.TensorType((*dims, tile.splits), "float32")]))
        out = self.builder_.emit(relax.call_tir(merge_gv, [relax.TupleGetItem(parts, i) for i in range(3)],
                                                out_ty=relax.TensorType((*dims, shape.v_dim), shape.out_dtype)))
        return relax.op.reshape(out, context_shape)


def fused_attention(device: bool = True, arch: str | None = None) -> tvm.transform.Pass:
    """The pass: every attention of the pattern in the module docstring becomes a split kernel and a
    merge kernel (a decode step) or one tensor-core kernel (prefill, on an ``arch`` whose tensor or
    matrix cores take its operand type: the current target's where not given). ``device``: the kernels
    scheduled for a GPU; else their serial CPU replicas."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.FusedAttention")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewritten(_AttentionRewriter(mod, device, current_arch() if arch is None else arch), mod)

    return apply
