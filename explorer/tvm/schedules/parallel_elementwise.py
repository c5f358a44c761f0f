"""The CPU's schedule of an element-wise kernel: one vectorized, parallel loop nest."""

from __future__ import annotations

from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline

from explorer.tvm.schedules.common import normalized, with_vectorized_output


class ParallelElementwise(ScheduleRule):
    """A kernel of injective blocks: inlined into its last block, whose loops are fused, split by the
    vector width, vectorized inside and parallel outside."""

    def apply(self, func, target, _):
        sch, infos = normalized(func, target)
        if infos is None or any(not b.is_injective() for b in infos):
            return None
        remaining = try_inline(sch, infos)
        if len(remaining) != 1:
            return None
        return with_vectorized_output(sch, remaining[0], target)
