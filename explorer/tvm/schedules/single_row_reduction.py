"""The CPU's schedule of a row reduction over one row (a decode step's norms at batch 1)."""

from __future__ import annotations

from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline

from explorer.tvm.schedules.common import normalized, with_vectorized_output


class SingleRowReduction(ScheduleRule):
    """A row reduction (LayerNorm, RMSNorm, softmax) whose reductions have one row: a decode step's
    norms at batch 1. DLight's CPU ``Reduction`` makes the output's loop over the row the parallel
    loop and computes the reductions under it, once per element (a 768-wide LayerNorm did 768 x 768
    additions); here each reduction runs once, at the root, and the element-wise rest is inlined into
    the output, which is vectorized."""

    def apply(self, func, target, _):
        sch, infos = normalized(func, target)
        if infos is None:
            return None
        reductions = [b for b in infos if b.is_reduction()]
        if not reductions or any(i.kind == "S" and i.dom != 1 for b in reductions for i in b.iters):
            return None
        remaining = try_inline(sch, infos)
        if not remaining or remaining[-1].is_reduction() or not remaining[-1].is_injective():
            return None
        return with_vectorized_output(sch, remaining[-1], target)
