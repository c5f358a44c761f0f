"""Running a Relax expression mutator over every Relax function of a module (what each of our
rewriting passes does once its mutator is made)."""

from __future__ import annotations

import tvm
from tvm import relax


def rewritten(rewriter: relax.PyExprMutator, mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each Relax function visited by ``rewriter`` (a mutator made on ``mod``), with the
    functions the rewriter added to its builder."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()
