"""Running a Relax expression mutator over every Relax function of a module (what each of our
rewriting passes does once its mutator is made), and rewriting every call of one operator."""

from __future__ import annotations

import tvm
from tvm import relax


def bound_value(mutator: relax.PyExprMutator, expr):
    """What ``expr`` is bound to, through the bindings ``mutator`` has visited, else ``expr`` itself."""
    while isinstance(expr, relax.Var):
        value = mutator.lookup_binding(expr)
        if value is None:
            return expr
        expr = value
    return expr


def rewritten(rewriter: relax.PyExprMutator, mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each Relax function visited by ``rewriter`` (a mutator made on ``mod``), with the
    functions the rewriter added to its builder."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()


@relax.expr_functor.mutator
class CallRewriter(relax.PyExprMutator):
    """Rewrites every call of one Relax operator with ``rewrite(call, mod)`` (None keeps the call)."""

    def __init__(self, mod: tvm.IRModule, op: str, rewrite):
        super().__init__(mod)
        self.op, self.rewrite = op, rewrite

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == self.op):
            return call
        rewritten = self.rewrite(call, self.builder_.get())
        return call if rewritten is None else rewritten


def rewrite_calls(mod: tvm.IRModule, op: str, rewrite) -> tvm.IRModule:
    """``mod`` with every call of ``op`` in its Relax functions rewritten (see :class:`CallRewriter`;
    a copy: a pass may be given the importer's cached module)."""
    mod = mod.clone()
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mod[gv] = CallRewriter(mod, op, rewrite).visit_expr(func)
    return mod
