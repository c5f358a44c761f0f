"""Weights that are parameters of ``main``, treated as constant weights are (TVM-specific).

A decoder built from its config declares its weights as graph inputs of their shapes, with no values
(:func:`models.decoders.build_llama`): nothing of a 405B model is ever held. Its weights arrive here as
parameters of ``main``, named in :attr:`explorer.tvm.pipeline.PipelineContext.weights`. Wherever
``FoldConstant`` would evaluate a computation on constant weights (a cast to the kernel's precision, a
transpose into the layout the kernel reads), :func:`fold_weight_params` replaces that computation by a
new weight parameter of its result's type: the weight as a deployment stores it. The passes that make
new weights from old ones (weight-only quantization) make them as parameters the same way. The kernels,
and so the analysis, are the ones constant weights of the same shapes give.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from explorer.tvm.relax_ir import name_of


def _vars_of(expr) -> list:
    """The Relax variables among a call's arguments (through tuples)."""
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars_of(f)]
    return []


@relax.expr_functor.mutator
class _WeightFolder(relax.PyExprMutator):
    """Replaces each binding computed from weights alone by a new weight parameter of its type."""

    def __init__(self, mod: tvm.IRModule, weights: set[str], params):
        super().__init__(mod)
        self.weights = {p for p in params if name_of(p) in weights}
        self.new_params: list[relax.Var] = []

    def visit_var_binding_(self, binding) -> None:
        value = self.visit_expr(binding.value)
        if isinstance(value, relax.Call) and isinstance(binding.var.ty, relax.TensorType):
            used = [v for a in value.args for v in _vars_of(a)]
            if used and all(v in self.weights for v in used):
                var = relax.Var(name_of(used[0]), binding.var.ty)
                self.weights.add(var)
                self.new_params.append(var)
                self.set_var_remap(binding.var, var)
                return
        super().visit_var_binding_(binding)


def is_weight(expr, weights) -> bool:
    """Whether ``expr`` is a weight: a constant, or a parameter of ``main`` named in ``weights``."""
    return isinstance(expr, Constant) or (isinstance(expr, relax.Var) and name_of(expr) in weights)


def with_params(func: relax.Function, extra: list[relax.Var]) -> relax.Function:
    """``func`` with the parameters its body no longer uses dropped and ``extra`` appended."""
    free = {v for v in relax.analysis.free_vars(func.body)}
    params = [p for p in func.params if p in free] + [v for v in extra if v in free]
    return relax.Function(params, func.body, func.ret_ty, func.is_pure, func.attrs)


def fold_weight_params(weights: set[str]) -> tvm.transform.Pass:
    """The pass that folds computations on the weight parameters named in ``weights`` into new weight
    parameters (see the module doc); ``weights`` gains nothing: a new parameter keeps its source's name."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.FoldWeightParams")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        main = mod["main"]
        if not weights or not any(name_of(p) in weights for p in main.params):
            return mod
        folder = _WeightFolder(mod, weights, main.params)
        body = folder.visit_expr(main.body)
        if not folder.new_params:
            return mod
        mod = mod.clone()
        mod["main"] = with_params(relax.Function(main.params, body, main.ret_ty, main.is_pure, main.attrs),
                                  folder.new_params)
        return mod

    return apply
