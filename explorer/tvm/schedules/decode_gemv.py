"""The GPU's schedule of a weight-only decode GEMV (DLight's GEMV rule does not take its packed integers)."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule

from explorer.tvm.schedules.tiling import reduction_kernel


class DecodeGEMV(GPUScheduleRule):
    """DLight's ``GEMV`` rule for the float GEMVs of a decode step (a weight-only kernel's too, whose
    packed integer weight :class:`Int8Reduction` would otherwise take), where it can schedule them:
    the rule asserts on loops it cannot split evenly (a vocabulary of 50257) rather than declining, and
    such a kernel goes to the next rule."""

    def __init__(self):
        self.gemv = dl.gpu.GEMV()

    def apply(self, func, target, tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        kernel = reduction_kernel(sch)
        if kernel is None or "float" not in str(sch.get(kernel[0].block_rv).writes[0].source.dtype):
            return None  # integer accumulation: Int8Reduction's
        try:
            return self.gemv.apply(func, target, tunable)
        except (AssertionError, AttributeError, ValueError, RuntimeError):
            return None
