"""The design spaces tuning searches, by name: the default rules' own choices, TVM's generic space, or
both. A space is made per target, since the rules read the target's vector width."""

from __future__ import annotations

from collections.abc import Callable

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from explorer.tvm.schedules.common import deferred_border_splits, split_annotated_borders


def default_schedule(func, target: Target):
    """The schedule :func:`explorer.tvm.pipeline.cpu_default_schedule` gives the kernel ``func`` on
    ``target`` (its first rule that takes it), or ``None`` when no rule does."""
    from explorer.tvm.pipeline import cpu_default_rules

    for rule in cpu_default_rules():
        sch = rule.apply(func, target, False)
        if sch is not None:
            return sch[0] if isinstance(sch, list) else sch
    return None


@derived_object
class SplitBorders(ms.postproc.PyPostproc):
    """The padding stages the rule space leaves annotated, split into zeros and a copy of their rows
    as the default schedule splits them (:func:`explorer.tvm.schedules.common.deferred_border_splits`)."""

    def __init__(self, target: Target | None = None):
        self._target = target

    def _initialize_with_tune_context(self, context) -> None:
        self._target = context.target

    def apply(self, sch) -> bool:
        try:
            split_annotated_borders(sch, self._target)
        except (RuntimeError, ValueError):  # a candidate whose padding cannot be split is dropped
            return False
        return True

    def clone(self) -> SplitBorders:
        return SplitBorders(self._target)


def postprocs() -> list:
    """Postprocessing of every candidate: :class:`SplitBorders`, then MetaSchedule's own for CPUs."""
    return [SplitBorders(), *ms.postproc.Postproc.create("llvm")]


def rule_space(target: Target) -> ms.space_generator.ScheduleFn:
    """The default rules as a design space: a kernel's one design is the schedule of the rule that takes
    it, whose tile sizes are sampled decisions (:mod:`explorer.tvm.schedules.decisions`), so the search
    mutates and resamples them (register tiles, cache blocks, the reduction's blocking and unrolling)
    while keeping the rule's loop structure. A kernel no rule takes has no design here."""

    def designs(sch):
        with deferred_border_splits():
            found = default_schedule(sch.mod["main"], target)
        return [found] if found is not None else []

    return ms.space_generator.ScheduleFn(designs, postprocs=postprocs())


#: Design spaces by name; each factory takes the tasks' target.
SPACES: dict[str, Callable[[Target], ms.space_generator.SpaceGenerator]] = {
    "rules": rule_space,
    "tvm": lambda target: ms.space_generator.PostOrderApply(),
    "rules+tvm": lambda target: ms.space_generator.SpaceGeneratorUnion(
        [rule_space(target), ms.space_generator.PostOrderApply()], postprocs=postprocs()),
}

#: The space :func:`explorer.tvm.tuning.search.tune` searches unless told otherwise.
DEFAULT_SPACE = "rules+tvm"
