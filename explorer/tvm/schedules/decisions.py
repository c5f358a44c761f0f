"""The choices of a CPU schedule rule written as MetaSchedule decisions, so that tuning can leave them.

A rule splits a loop by the tile sizes its heuristics choose. Written as a sampled perfect tile whose
decision is that choice, the default schedule is exactly the rule's; the rule's trace is then a design
space of its own (:func:`explorer.tvm.tuning.spaces.rule_space`) whose decisions MetaSchedule's
``MutateTileSize`` moves between the levels, and whose random samples draw other tilings of the same
loop nest. The loop nest's structure (which loops exist, their order, what is unrolled and vectorized)
stays the rule's; only the extents move.
"""

from __future__ import annotations

from tvm import s_tir

from explorer.tvm.schedules.common import loop_extent


def sampled_split(sch: s_tir.Schedule, loop, extents: list[int], max_innermost: int) -> list:
    """Split ``loop`` into ``len(extents)`` loops of these extents (outermost first; their product is
    the loop's extent), recorded as a sampled perfect tile with ``extents`` as its decision. Tuning may
    draw any other perfect tiling whose innermost extent is at most ``max_innermost``."""
    total = loop_extent(sch, loop)
    product = 1
    for extent in extents:
        product *= extent
    if total is None or product != total:
        raise ValueError(f"tile {extents} does not cover a loop of {total}")
    tiles = sch.sample_perfect_tile(loop, n=len(extents), max_innermost_factor=max(max_innermost, extents[-1]),
                                    decision=list(extents))
    return list(sch.split(loop, factors=tiles))
