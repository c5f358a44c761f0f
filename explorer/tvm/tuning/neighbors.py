"""The default schedule's nearest neighbours, measured before the search.

At a few trials per kernel MetaSchedule's search measures what its untrained cost model picks, mostly
random tilings. The default schedules are good starting points, so half of each kernel's budget after
the default goes to its neighbours: the default with one of its sampled tiles
(:mod:`explorer.tvm.schedules.decisions`) changed by one move of a factor of 2 (then 4) between two
levels, taken a tile at a time in turn. With the default ``[1, steps, 1]`` of a reduction, the first
moves unroll 2 steps and block the reduction in 2; with rows ``[outer, 1, rows]``, they add a cache block
of 2 row tiles, halve the register tile and double it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tvm import s_tir

from explorer.tvm.tuning.ledgers import Budgets, Neighbors
from explorer.tvm.tuning.seeds import measure_and_commit, trace_digest

#: Moves within one tile, in the order they are tried: (from level, to level), levels outermost first.
MOVES = ((1, 2), (0, 1), (1, 0), (2, 0), (0, 2), (2, 1))

#: Factors moved, in the order they are tried.
FACTORS = (2, 4)


def tile_moves(decision: list[int], max_innermost: int) -> list[list[int]]:
    """The tilings one move from ``decision``: a factor of :data:`FACTORS` moved between two levels
    (:data:`MOVES`), the innermost at most ``max_innermost``."""
    n = len(decision)
    pairs = [(src, dst) for src, dst in MOVES if src < n and dst < n] if n == 3 else [(1, 0), (0, 1)]
    found = []
    for factor in FACTORS:
        for src, dst in pairs:
            if decision[src] % factor:
                continue
            moved = list(decision)
            moved[src] //= factor
            moved[dst] *= factor
            if moved[-1] <= max_innermost and moved not in found:
                found.append(moved)
    return found


def neighbor_traces(trace) -> list:
    """``trace`` with one sampled tile's decision moved (:func:`tile_moves`), the tiles taken in turn:
    every tile's first move, then every tile's second, and so on."""
    tiles = [inst for inst in trace.insts if inst.kind.name == "SamplePerfectTile"]
    moves = [[(inst, moved) for moved in tile_moves([int(x) for x in trace.decisions[inst]], int(inst.attrs[1]))]
             for inst in tiles]
    in_turn = [move for round_ in itertools.zip_longest(*moves) for move in round_ if move is not None]
    return [trace.with_decision(inst, moved, remove_postproc=True) for inst, moved in in_turn]


def neighbors_per_kernel(per_kernel: int) -> int:
    """Neighbours measured for a kernel whose budget is ``per_kernel`` trials: half of those after
    its default schedule (the search gets the rest)."""
    return max(per_kernel - 1, 0) // 2


def measure_neighbors(tasks: list, defaults: dict, per_kernel: int, work_dir: Path, db, builder, runner) -> int:
    """Measure the next :func:`neighbors_per_kernel` neighbours of each kernel's default schedule
    (``defaults``, by :meth:`Budgets.key`) not yet measured, and commit them as tuning records.
    Returns the schedules measured."""
    ledger = Neighbors(work_dir)
    want = neighbors_per_kernel(per_kernel)
    todo, counts = [], {}
    for task in tasks:
        key = Budgets.key(task)
        default = defaults.get(key)
        if default is None:
            continue
        digest = trace_digest(default.trace)
        done = ledger.measured(key, digest)
        if done >= want:
            continue
        for trace in neighbor_traces(default.trace)[done:want]:
            sch = s_tir.Schedule(task.dispatched[0])
            try:
                trace.apply_to_schedule(sch, remove_postproc=True)
            except (RuntimeError, ValueError):  # a tiling the schedule refuses
                continue
            todo.append((task, sch))
        counts[key] = (digest, want)
    committed = measure_and_commit(todo, db, builder, runner)
    ledger.add(counts)
    return sum(committed)
