"""The rule a kernel no other rule takes falls to: fused element-wise stages inlined, epilogues placed."""

from __future__ import annotations

import tvm
from tvm import s_tir
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline


class InlineElementwise(ScheduleRule):
    """Inline injective blocks into their neighbours and place epilogues after a reduction inside
    the reduction's spatial loops, so a fused kernel keeps no full-size intermediate buffer."""

    def apply(self, func, target, _):
        if not isinstance(func, tvm.tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        remaining = try_inline(sch, infos)
        reductions = [b for b in remaining if b.is_reduction()]
        for info in remaining:
            if info.is_reduction():
                continue
            producers = [p for p in sch.get_producers(info.block_rv)]
            for red in reductions:
                if any(sch.get(p).same_as(sch.get(red.block_rv)) for p in producers):
                    kinds = red.dom_kind()
                    n_spatial = len(kinds) - len(kinds.lstrip("S"))
                    loops = sch.get_loops(red.block_rv)
                    if 0 < n_spatial <= len(loops):
                        try:
                            sch.reverse_compute_at(info.block_rv, loops[n_spatial - 1], preserve_unit_loops=True)
                        except Exception:  # not placeable (e.g. a transposing epilogue): stays separate
                            pass
                    break
        return sch
