"""Relax rewrites of operators TVM 0.27's passes stumble on, run before the strategy's own: squeeze axes
counted from the end, ``clip`` with PrimValue bounds, and the max/min kernels the ONNX importer makes of
``Clip``."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax, s_tir

from explorer.tvm.passes.rewriting import rewrite_calls


def _non_negative_axes(call, _mod):
    if call.attrs.axis is None or all(int(a) >= 0 for a in call.attrs.axis):
        return None
    rank = call.args[0].ty.ndim
    return relax.op.squeeze(call.args[0], [int(a) % rank for a in call.attrs.axis])


@tvm.transform.module_pass(opt_level=0, name="explorer.NonNegativeSqueezeAxes")
def non_negative_squeeze_axes(mod, _ctx):
    """Rewrite ``squeeze`` axes counted from the end as axes counted from the front: TVM 0.27's
    ConvertLayout dies with ``std::bad_alloc`` on a negative squeeze axis."""
    return rewrite_calls(mod, "relax.squeeze", _non_negative_axes)


def _max_min_of_clip(call, _mod):
    dtype = call.args[0].ty.dtype
    low, high = (relax.const(float(getattr(a.value, "value", a.value)), dtype) for a in call.args[1:3])
    return relax.op.minimum(relax.op.maximum(call.args[0], low), high)


@tvm.transform.module_pass(opt_level=0, name="explorer.ClipAsMaxMin")
def clip_as_max_min(mod, _ctx):
    """Rewrite ``clip(x, a, b)`` (bounds as PrimValues, e.g. TVM's HardSigmoid) as
    ``minimum(maximum(x, a), b)`` with constant bounds: ToMixedPrecision fails on a PrimValue
    argument (``Expected TensorType, but got T.int64``)."""
    return rewrite_calls(mod, "relax.clip", _max_min_of_clip)


def _bound_kernel(func) -> tuple[str, object] | None:
    """``("maximum" | "minimum", bound)`` if the PrimFunc is one element-wise max or min of its first
    input with a one-element bound: ``bound`` is None for its second input, else the literal), or None."""
    if not isinstance(func, tvm.tirx.PrimFunc) or len(func.params) not in (2, 3):
        return None
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return None
    store = sch.get(blocks[0]).body
    value = getattr(store, "value", None)
    op = {"Max": "maximum", "Min": "minimum"}.get(type(value).__name__)
    x, bound = (getattr(value, "a", None), getattr(value, "b", None))
    if op is None or type(x).__name__ != "TensorLoad" or not x.source.same_as(func.params[0]) \
            or not tvm_ffi.structural_equal(list(x.indices), list(store.indices)) \
            or list(func.params[0].shape) != list(store.buffer.shape):
        return None
    if len(func.params) == 3 and type(bound).__name__ == "TensorLoad" and bound.source.same_as(func.params[1]) \
            and all(int(d) == 1 for d in func.params[1].shape):
        return op, None
    if len(func.params) == 2 and type(bound).__name__ in ("FloatImm", "IntImm"):
        return op, bound.value
    return None


def _operator_of_bound_kernel(call, mod):
    kernel = _bound_kernel(mod[call.args[0]])
    if kernel is None:
        return None
    op, bound = kernel
    args = list(call.args[1].fields)
    # a 0-d bound: ConvertLayout leaves a binary op with a (1,)-shaped operand in the old layout
    bound = relax.op.reshape(args[1], []) if bound is None else relax.const(bound, args[0].ty.dtype)
    return getattr(relax.op, op)(args[0], bound)


@tvm.transform.module_pass(opt_level=0, name="explorer.BoundKernelsAsOperators")
def bound_kernels_as_operators(mod, _ctx):
    """Rewrite the max/min TE kernels TVM's ONNX importer makes of ``Clip`` as Relax ``maximum`` /
    ``minimum``: ConvertLayout cannot see through a ``call_tir`` (each ReLU6 of an NHWC build was
    wrapped in two transposes) and ToMixedPrecision cannot type one (``Expected TensorType``)."""
    return rewrite_calls(mod, "relax.call_tir", _operator_of_bound_kernel)
