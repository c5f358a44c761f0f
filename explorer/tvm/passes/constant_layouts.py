"""Transposes, reshapes and float casts of constant weights folded in numpy, before TVM's
``FoldConstant`` builds them.

``FoldConstant`` evaluates an operator on constants by legalizing it and compiling the PrimFunc with
LLVM, once per distinct shape: tens of milliseconds each. ``ConvertLayout`` to NHWC transposes every
convolution's weight into the kernel layout, the ONNX importer reshapes every convolution's bias to
broadcast it, and ``ToMixedPrecision`` casts every weight to float16: resnet18's NHWC build compiled 60
such kernels, its fp16 build 62, some two seconds of each compile. A transpose and a reshape move
elements; a cast between float types rounds to nearest even in numpy (and ml_dtypes for bfloat16) as in
TVM's generated code, bit for bit (``tests/tvm/test_constant_layouts.py``). So numpy gives the same
constants.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from explorer.tvm.passes.rewriting import rewrite_calls

#: Element types whose constants numpy holds (bfloat16 through ml_dtypes; not float8).
NUMPY_DTYPES = {name: np.dtype(name) for name in
                ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")}
NUMPY_DTYPES["bfloat16"] = np.dtype(ml_dtypes.bfloat16)

_FLOATS = frozenset({"float64", "float32", "float16", "bfloat16"})


def _constant(expr) -> np.ndarray | None:
    """The value of ``expr`` if it is a constant numpy holds, else None."""
    if not isinstance(expr, Constant) or str(expr.ty.dtype) not in NUMPY_DTYPES:
        return None
    return expr.value.numpy()


def _transposed(call, _mod):
    value = _constant(call.args[0])
    if value is None:
        return None
    axes = None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]
    return relax.const(np.ascontiguousarray(np.transpose(value, axes)), str(call.args[0].ty.dtype))


def _reshaped(call, _mod):
    value, shape = _constant(call.args[0]), call.args[1]
    if value is None or not isinstance(shape, relax.ShapeExpr):
        return None
    dims = [getattr(d, "value", None) for d in shape.values]
    if any(d is None for d in dims):
        return None
    return relax.const(value.reshape(dims), str(call.args[0].ty.dtype))


def _cast(call, _mod):
    value, dtype = _constant(call.args[0]), str(call.attrs.dtype)
    if value is None or str(call.args[0].ty.dtype) not in _FLOATS or dtype not in _FLOATS:
        return None
    with np.errstate(over="ignore"):  # beyond the narrower type's range is infinity, as in TVM's code
        return relax.const(value.astype(NUMPY_DTYPES[dtype]), dtype)


@tvm.transform.module_pass(opt_level=0, name="explorer.FoldConstantLayouts")
def fold_constant_layouts(mod, _ctx):
    """Replace ``permute_dims``, ``reshape`` (to a static shape) and ``astype`` (between float types)
    of a constant by the constant they make (see the module doc)."""
    for op, fold in (("relax.permute_dims", _transposed), ("relax.reshape", _reshaped), ("relax.astype", _cast)):
        mod = rewrite_calls(mod, op, fold)
    return mod
