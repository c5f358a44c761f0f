"""Vectorizable approximations of ``exp``, ``sigmoid``, ``tanh``, ``erf`` and ``softmax`` for CPU builds.

TVM lowers ``exp`` (and ``sigmoid``, which is ``1 / (1 + exp(-x))``) on LLVM to a call of the C library's
scalar ``expf`` per element, which LLVM cannot vectorize without a vector math library: a SiLU
epilogue then cost yolo-block's 1x1 convolutions more than their multiply-adds did. onnxruntime's MLAS
computes these with vectorized polynomial approximations. :func:`fast_math` does the same with TVM's own:
its ``FastMathTransform`` (``fast_exp``, ``fast_tanh``, ``fast_erf``, ``fast_softmax``) and ``sigmoid``
through ``fast_exp`` (rewritten for float32 only). ``fast_exp`` and ``fast_tanh`` have float32
polynomials and fall back to the exact operators for other types; ``fast_erf`` has a float16 one too, so
an fp16 build's GELU is a polynomial as well. The fp32 builds stay within their tolerance of
onnxruntime's outputs.
"""

from __future__ import annotations

import tvm
from tvm import relax, topi

from explorer.tvm.passes.rewriting import rewritten


def _fast_sigmoid_te(x):
    one = tvm.tirx.const(1.0, "float32")
    return topi.divide(one, topi.add(one, topi.fast_exp(topi.negative(x))))


@relax.expr_functor.mutator
class _FastSigmoid(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.sigmoid"
                and str(call.args[0].ty.dtype) == "float32"):
            return self.builder_.call_te(_fast_sigmoid_te, call.args[0], primfunc_name_hint="fast_sigmoid")
        return call


@tvm.transform.module_pass(opt_level=0, name="explorer.FastMath")
def fast_math(mod, _ctx):
    """``sigmoid`` through ``fast_exp``, then TVM's ``FastMathTransform`` (see the module doc)."""
    return relax.transform.FastMathTransform()(rewritten(_FastSigmoid(mod), mod))
