"""A mixture of experts as deployments compute it: the router's top k, and only the routed experts.

The graph (:func:`models.decoders.build_llama`) gathers the routed experts' weights by the router's
indices (``Gather(W[E, K, N], index[T, k])``) and multiplies each token by its own. Imported as is,
TVM would copy every routed expert's whole matrix for every token (``take`` is its own kernel: ``T k``
matrices written and read again), and it has no lowering of ``R.topk`` but a call to a sorting library.
Two rewrites give the kernels a serving engine runs instead:

- :func:`top_k_selection`: ``R.topk`` over the last axis (largest, values and indices) becomes a
  kernel that ranks each row's elements (an element's rank is the count of those larger, or equal and
  before it: ONNX's order for ties) and picks the first ``k`` ranks; ``E^2`` comparisons a token, a few
  thousand for 128 experts, next to the experts' millions of multiply-adds;
- :func:`routed_matmuls`: ``matmul(x, take(W, index))`` (with the casts a precision strategy put on
  either) becomes one kernel that reads each token's routed experts' weights where they are,
  ``out[t, j, n] = sum_r x[t, j, r] W[index[t, j], r, n]``: the weight stays a weight (its cast folds
  into the stored parameter), ``[E, N, K]`` on GPUs (each output's weights along K, as
  :func:`~explorer.tvm.passes.matmul_weights.weights_along_k` keeps dense ones; scheduled by
  :class:`~explorer.tvm.schedules.routed_matmul.RoutedMatmul`) and ``[E, K, N]`` on CPUs.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.ir.expr import Constant

from explorer.tvm.passes import mxfp4
from explorer.tvm.passes.rewriting import bound_value, rewritten
from explorer.tvm.passes.weight_params import is_weight, with_params
from explorer.tvm.relax_ir import name_of


def _op(expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def top_k_kernel(x: te.Tensor, k: int, index_dtype: str) -> tuple[te.Tensor, te.Tensor]:
    """``(values, indices)`` of the ``k`` largest of each row of ``x`` ``[rows, n]``, largest first, ties
    in index order (ONNX ``TopK``'s)."""
    rows, n = x.shape
    other = te.reduce_axis((0, n), "other")
    rank = te.compute((rows, n), lambda t, e: te.sum(
        tirx.Select(tirx.any(x[t, other] > x[t, e], tirx.all(x[t, other] == x[t, e], other < e)), 1, 0), axis=other),
        name="top_k_rank")
    pick = te.reduce_axis((0, n), "pick")
    values = te.compute((rows, k), lambda t, j: te.sum(
        tirx.Select(rank[t, pick] == j, x[t, pick], tirx.const(0, x.dtype)), axis=pick), name="top_k_values")
    pick2 = te.reduce_axis((0, n), "pick")
    indices = te.compute((rows, k), lambda t, j: te.sum(
        tirx.Select(rank[t, pick2] == j, pick2.astype(index_dtype), tirx.const(0, index_dtype)), axis=pick2),
        name="top_k_indices")
    return values, indices


def routed_matmul_kernel(x: te.Tensor, weight: te.Tensor, index: te.Tensor, along_k: bool, out_dtype: str) -> te.Tensor:
    """``out[t, j, 0, n] = sum_r x[t, j or 0, 0, r] * weight[index[t, j], r, n]`` (``weight[e, n, r]`` when
    ``along_k``): each token by its routed experts' weights, ``x`` ``[T, 1 or k, 1, K]``."""
    tokens, per_token, _, depth = x.shape
    k = index.shape[1]
    columns = weight.shape[1] if along_k else weight.shape[2]
    shared = int(per_token) == 1
    r = te.reduce_axis((0, depth), "r")

    def body(t, j, z, n):
        expert = index[t, j]
        w = weight[expert, n, r] if along_k else weight[expert, r, n]
        return te.sum(x[t, 0 if shared else j, z, r].astype(out_dtype) * w.astype(out_dtype), axis=r)

    return te.compute((tokens, k, 1, columns), body, name="routed_matmul")


@relax.expr_functor.mutator
class _ExpertsRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, weights: frozenset[str], along_k: bool, fp4: bool):
        super().__init__(mod)
        self.weights, self.along_k, self.fp4 = weights, along_k, fp4
        self.new_params: list[relax.Var] = []  # MXFP4 codes and scales of a weight parameter

    def _bound(self, expr):
        """What ``expr`` is bound to (through the function's bindings), else itself."""
        return bound_value(self, expr)

    def _uncast(self, expr):
        """What ``expr`` is bound to, through any casts."""
        value = self._bound(expr)
        while _op(value, "relax.astype"):
            value = self._bound(value.args[0])
        return value

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if _op(call, "relax.topk"):
            return self._top_k(call)
        if _op(call, "relax.matmul"):
            return self._routed(call)
        return call

    def _top_k(self, call):
        a = call.attrs
        x = call.args[0]
        shape = [int(d) for d in x.ty.shape.values] if x.ty.shape is not None else None
        if (shape is None or str(a.ret_type) != "both" or not bool(a.largest)
                or int(a.axis) not in (-1, len(shape) - 1) or not 0 < int(a.k) <= shape[-1]):
            return call
        rows = 1
        for d in shape[:-1]:
            rows *= d
        flat = self.builder_.emit(relax.op.reshape(x, [rows, shape[-1]]))
        pair = self.builder_.emit_te(top_k_kernel, flat, int(a.k), str(a.dtype), primfunc_name_hint="top_k")
        out = [*shape[:-1], int(a.k)]
        return relax.Tuple([relax.op.reshape(relax.TupleGetItem(pair, i), out) for i in range(2)])

    def _routed(self, call):
        x, b = call.args
        dtype = str(b.ty.dtype)
        taken = self._uncast(b)
        if not _op(taken, "relax.take") or int(taken.attrs.axis) != 0:
            return call
        index = taken.args[1]
        base = self._uncast(taken.args[0])  # the weight as stored (a precision's cast is redone below)
        if not is_weight(base, self.weights) or len(base.ty.shape.values) != 3 or len(index.ty.shape.values) != 2:
            return call
        xs = x.ty.shape.values
        if len(xs) != 4 or int(xs[2]) != 1 or int(xs[1]) not in (1, int(index.ty.shape.values[1])):
            return call
        if self.fp4 and int(base.ty.shape.values[1]) % mxfp4.BLOCK == 0:
            return self._mxfp4(x, base, index, str(call.ty.dtype))
        stored = base if str(base.ty.dtype) == dtype else relax.op.astype(base, dtype)
        if self.along_k:
            stored = relax.op.permute_dims(stored, [0, 2, 1])  # folded into an [E, N, K] weight
        return self.builder_.emit_te(routed_matmul_kernel, x, self.builder_.emit(stored), index, self.along_k,
                                     str(call.ty.dtype), primfunc_name_hint="routed_matmul")

    def _mxfp4(self, x, weight, index, out_dtype: str):
        """The routed product with ``weight`` ``[E, K, N]`` in MXFP4 (:mod:`explorer.tvm.passes.mxfp4`):
        a constant's codes and scales computed, a weight parameter's two parameters of their shapes."""
        e, depth, columns = (int(d) for d in weight.ty.shape.values)
        if isinstance(weight, Constant):
            codes, scales = mxfp4.quantize(weight.value.numpy().astype(np.float32).transpose(0, 2, 1))
            operands = [relax.const(codes), relax.const(scales)]
        else:
            operands = [relax.Var(name_of(weight), relax.TensorType([e, columns, depth // 2], "uint8")),
                        relax.Var(name_of(weight), relax.TensorType([e, columns, depth // mxfp4.BLOCK], "uint8"))]
            self.new_params += operands
        return self.builder_.emit_te(mxfp4.routed_mxfp4_kernel, x, *operands, index, relax.const(mxfp4.CODE_VALUES),
                                     out_dtype, primfunc_name_hint="routed_matmul_mxfp4")


def routed_experts(weights: frozenset[str] = frozenset(), along_k: bool = False, fp4: bool = False) -> tvm.transform.Pass:
    """The two rewrites of the module docstring; ``weights`` names the weight parameters of ``main`` (a
    decoder built from its config), ``along_k`` keeps expert weights ``[E, N, K]`` (GPU lowerings),
    ``fp4`` stores them in MXFP4 (:mod:`explorer.tvm.passes.mxfp4`, gpt-oss's format)."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.RoutedExperts")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _ExpertsRewriter(mod, weights, along_k, fp4)
        out = rewritten(rewriter, mod)
        if rewriter.new_params:
            out["main"] = with_params(out["main"], rewriter.new_params)
        return out

    return apply
