"""Reuse in a kernel's loop nest: bytes moved into a cache of any capacity (pure Python).

A kernel is a tree of loops whose leaves are memory accesses with affine indices. For a cache of
capacity ``C`` bytes (fully associative, LRU, ``LINE_BYTES`` lines) the traffic into it is estimated
with the classic working-set argument:

- the *footprint* of a loop is the number of distinct cache-line bytes its accesses touch while
  the loop runs through all its iterations (outer loops held fixed);
- if one iteration of a loop fits (the footprint of its body is at most ``C``), every line the
  loop touches is fetched once: data reused across iterations (an operand invariant in the loop,
  or the overlap of a sliding window) is still there when it is used again;
- otherwise each iteration is a fresh pass: traffic is the trip count times the traffic of the body.

The result for a kernel is a step function ``capacity -> bytes`` (:class:`ReuseProfile`), computed
once from the loop extents and index strides; a cost model evaluates it at each level's capacity, so
the same analysis scores any target. Bytes are kept per buffer so that a caller can discount a
buffer that an earlier kernel left in the cache.

Index expressions are given as strides per loop (``Site.terms``); an index that is not affine in
the loops (``Site.affine`` false) is taken to touch every combination of the loops it uses,
contiguously. A *gathered* site (``Site.gathered``) reads rows of a table that another tensor's values
choose, each group of choices taking ``choices`` distinct rows of ``rows`` (a mixture's router picks k of
E experts a token): its footprint is the expected number of distinct rows its iterations touch times one
row's footprint, under uniform choices (:func:`distinct_rows`) or a measured load (:class:`RowLoad`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Hashable

#: Cache-line size the profile is computed at (x86 and NVIDIA L2 sectors-of-four are 64 B / 128 B).
LINE_BYTES = 64


@dataclasses.dataclass(frozen=True)
class Loop:
    """One loop (or GPU thread/block binding) of a kernel; ``parent`` is -1 for outermost loops.

    ``spread`` marks a loop whose iterations go to different compute units (GPU thread blocks go
    to different SMs): a cache private to one unit cannot carry data across its iterations."""

    id: int
    parent: int
    extent: int
    spread: bool = False


def distinct_rows(rows: int, choices: int, groups: float) -> float:
    """The expected number of distinct rows of ``rows`` that ``groups`` groups of ``choices`` distinct,
    uniformly chosen rows touch: ``rows (1 - (1 - choices / rows)^groups)`` (each row is missed by a group
    with probability ``1 - choices / rows``, independently). A decode step of batch B over a mixture of
    E experts, k a token, reads E(1 - (1 - k/E)^B) experts' weights a layer."""
    if rows <= 0 or choices <= 0 or groups <= 0:
        return 0.0
    return rows * (1.0 - (1.0 - min(choices, rows) / rows) ** groups)


@dataclasses.dataclass(frozen=True)
class RowLoad:
    """How often each row of a gathered table is chosen, measured: per layer, the probability that one
    group of choices picks each row (a mixture's expert load: each layer's probabilities sum to the
    experts a token runs, none above 1). A gathered site with as many rows as :attr:`rows` counts its
    distinct rows under this load instead of uniform choices; ``source`` names where it came from."""

    picks: tuple[tuple[float, ...], ...]
    source: str = ""

    @property
    def rows(self) -> int:
        return len(self.picks[0])

    def distinct_rows(self, groups: float) -> float:
        """Distinct rows ``groups`` independent groups touch, averaged over the layers: per layer
        ``sum_e 1 - (1 - q_e)^groups`` (uniform ``q_e = k / E`` gives :func:`distinct_rows`)."""
        if groups <= 0:
            return 0.0
        return sum(sum(1.0 - (1.0 - q) ** groups for q in layer) for layer in self.picks) / len(self.picks)


@dataclasses.dataclass(frozen=True)
class Gathered:
    """What makes a site gathered (see the module docstring): the table's rows, the rows one group
    chooses, the choices the whole kernel makes, and the loops whose iterations make them."""

    rows: int
    choices: int
    total_choices: int
    loops: tuple[int, ...]

    def expected_rows(self, draws: float, load: RowLoad | None = None) -> float:
        """Distinct rows ``draws`` of the kernel's choices touch (fewer than a group: all distinct), under
        uniform choices or ``load`` where it describes this table (as many rows)."""
        if draws <= self.choices:
            return min(draws, self.rows)
        if load is not None and load.rows == self.rows:
            return load.distinct_rows(draws / self.choices)
        return distinct_rows(self.rows, self.choices, draws / self.choices)


@dataclasses.dataclass(frozen=True)
class Site:
    """One load or store site: which buffer, under which loops, with what strides."""

    buffer: Hashable
    elem_bytes: int
    buffer_bytes: float
    path: tuple[int, ...]                 # enclosing loop ids, outermost first
    terms: tuple[tuple[int, int], ...]    # (loop id, stride in elements) for loops in the index
    offset: int | None = 0                # constant part of the index in elements (None: unknown)
    affine: bool = True
    gathered: Gathered | None = None      # rows chosen by another tensor's values; terms are within a row


def footprint_bytes(strides: list[tuple[int, int]], elem_bytes: int, start_align: int,
                    start_offset: int = 0, line: int = LINE_BYTES) -> float:
    """Distinct cache-line bytes touched by ``base + sum(stride_i * v_i)``, ``0 <= v_i < extent_i``.

    ``strides`` are ``(stride in bytes, extent)`` of the iterating loops; ``start_align`` is the
    largest power of two known to divide every start address of the innermost contiguous run (then
    runs start ``start_offset`` bytes into a line when that alignment is a whole line)."""
    terms: dict[int, int] = {}
    for stride, extent in strides:
        stride = abs(stride)
        if extent > 1 and stride > 0:
            terms[stride] = terms.get(stride, 1) + extent - 1  # v1 + v2 with one stride: a longer range
    ordered = sorted(terms.items())
    run = elem_bytes  # the dense contiguous block built from the smallest strides
    i = 0
    while i < len(ordered) and ordered[i][0] <= run:
        stride, extent = ordered[i]
        run += stride * (extent - 1)
        i += 1
    outer = ordered[i:]
    align = math.gcd(line, start_align, *(stride for stride, _ in outer))

    def lines_of(span: float) -> float:
        """Lines a contiguous ``span`` of bytes touches, given where spans may start."""
        if align == line:
            return math.ceil((start_offset % line + span) / line)
        return max(1.0, (span + line - align) / line)  # expected count over the possible offsets

    # Copies of the block at growing strides: lines are shared only where copies come within a line.
    lines, span = lines_of(run), run
    for stride, extent in outer:
        new_span = span + stride * (extent - 1)
        lines = extent * lines if stride >= span + line else min(extent * lines, lines_of(new_span))
        span = new_span
    return float(lines * line)


@dataclasses.dataclass(frozen=True)
class ReuseProfile:
    """Traffic into a cache as a step function of its capacity, per buffer.

    ``traffic[buffer][i]`` is the bytes moved for ``buffer`` when the capacity is at least
    ``capacities[i]`` (and below ``capacities[i + 1]``); ``capacities[0]`` is 0. ``unit_traffic``
    is the same for a cache private to one compute unit (an SM's L1), summed over units: loops
    marked ``spread`` carry no reuse there. ``first_touch`` is each buffer's footprint over the
    whole kernel (the part a warm cache would save)."""

    capacities: tuple[float, ...]
    traffic: dict
    unit_traffic: dict
    first_touch: dict

    def at(self, capacity: float, per_unit: bool = False) -> dict:
        """Bytes per buffer for a cache of ``capacity`` bytes (per compute unit if ``per_unit``)."""
        i = max(j for j, c in enumerate(self.capacities) if c <= capacity)
        return {b: t[i] for b, t in (self.unit_traffic if per_unit else self.traffic).items()}


class _Tree:
    def __init__(self, loops: list[Loop], sites: list[Site], line: int, load: RowLoad | None = None):
        self.loops = {lp.id: lp for lp in loops}
        self.children: dict[int, list[int]] = defaultdict(list)
        for lp in loops:
            self.children[lp.parent].append(lp.id)
        self.depth = {}
        for lp in loops:
            d, p = 0, lp.parent
            while p != -1:
                d, p = d + 1, self.loops[p].parent
            self.depth[lp.id] = d
        self.sites = sites
        self.line = line
        self.load = load
        self.direct: dict[int, list[Site]] = defaultdict(list)  # sites whose innermost loop is the key
        self.under: dict[int, list[Site]] = defaultdict(list)   # sites anywhere inside the key
        for s in sites:
            self.direct[s.path[-1] if s.path else -1].append(s)
            self.under[-1].append(s)
            for lid in s.path:
                self.under[lid].append(s)

    def footprint(self, node: int, include_node: bool) -> dict:
        """Per-buffer line bytes touched by the sites under ``node`` with its inner loops (and
        the node's own loop when ``include_node``) iterating and every outer loop fixed."""
        depth = -1 if node == -1 else self.depth[node]
        first_iter = depth if include_node else depth + 1
        per_buffer: dict = defaultdict(dict)
        for s in self.under[node]:
            iterating = {lid for lid in s.path if self.depth[lid] >= first_iter}
            if s.gathered is not None:  # distinct rows the iterating choices touch, each its row footprint
                g = s.gathered
                # a loop that also runs within the row (fused with it) makes more iterations than choices
                draws = min(math.prod(self.loops[lid].extent for lid in g.loops if lid in iterating), g.total_choices)
                row_bytes = s.buffer_bytes / max(g.rows, 1)
                if s.affine:
                    strides = [(stride * s.elem_bytes, self.loops[lid].extent) for lid, stride in s.terms
                               if lid in iterating and lid not in g.loops]
                    row_fp = footprint_bytes(strides, s.elem_bytes, s.elem_bytes, 0, self.line)
                else:
                    ext = math.prod(self.loops[lid].extent for lid, _ in s.terms if lid in iterating)
                    row_fp = math.ceil(ext * s.elem_bytes / self.line) * self.line
                fp = g.expected_rows(draws, self.load) * min(row_fp, math.ceil(row_bytes / self.line) * self.line)
                key = ("gathered", tuple(sorted(iterating)))
            elif not s.affine:  # every combination of the iterating loops its index uses, contiguously
                used = iterating & {lid for lid, _ in s.terms}
                ext = math.prod(self.loops[lid].extent for lid in used)
                fp = max(1.0, (ext * s.elem_bytes + self.line - s.elem_bytes) / self.line) * self.line
                key = ("nonaffine", tuple(sorted(used)))
            else:
                strides = [(stride * s.elem_bytes, self.loops[lid].extent) for lid, stride in s.terms
                           if lid in iterating]
                fixed = [abs(stride) * s.elem_bytes for lid, stride in s.terms if lid not in iterating]
                offset_bytes = s.elem_bytes if s.offset is None else s.offset * s.elem_bytes
                align = math.gcd(self.line, offset_bytes, *fixed)
                fp = footprint_bytes(strides, s.elem_bytes, align, offset_bytes, self.line)
                # sites with the same strides over iterating loops and the same fixed part coincide
                key = (tuple(sorted((st, e) for st, e in strides)),
                       tuple(sorted((lid, st) for lid, st in s.terms if lid not in iterating)), s.offset)
            per_buffer[s.buffer][key] = fp
        out = {}
        for buf, fps in per_buffer.items():
            size = next(s.buffer_bytes for s in self.under[node] if s.buffer == buf)
            cap = math.ceil(size / self.line) * self.line  # TVM allocates buffers line-aligned
            out[buf] = min(sum(fps.values()), cap)
        return out

    def traffic(self, node: int, capacity: float, memo: dict, per_unit: bool = False) -> dict:
        """Per-buffer bytes moved into a cache of ``capacity`` by one execution of ``node``: each
        iteration's traffic, or, when one iteration fits, at most the loop's footprint (taking the
        smaller keeps traffic monotone where the two footprint estimates disagree)."""
        out: dict = defaultdict(float)
        for child in self.children[node]:
            for b, t in self.traffic(child, capacity, memo, per_unit).items():
                out[b] += t
        direct: dict = defaultdict(float)
        for s in self.direct[node]:
            direct[s.buffer] = max(direct[s.buffer], float(self.line))
        for b, t in direct.items():
            out[b] += t
        trips = 1 if node == -1 else self.loops[node].extent
        out = {b: t * trips for b, t in out.items()}
        spread = node != -1 and self.loops[node].spread
        if sum(memo["body"][node].values()) <= capacity and not (per_unit and spread):
            full = memo["full"][node]
            out = {b: min(t, full.get(b, t)) for b, t in out.items()}
        return out


def reuse_profile(loops: list[Loop], sites: list[Site], line: int = LINE_BYTES,
                  load: RowLoad | None = None) -> ReuseProfile:
    """The traffic-versus-capacity step function of one kernel (see the module docstring); gathered
    sites count distinct rows under ``load`` where it describes their table, else uniform choices."""
    tree = _Tree(loops, sites, line, load)
    nodes = [-1] + [lp.id for lp in loops]
    memo = {"full": {n: tree.footprint(n, True) for n in nodes},
            "body": {n: tree.footprint(n, False) for n in nodes}}
    memo["body"][-1] = memo["full"][-1]  # the kernel as a whole has no iterations of its own
    caps = sorted({0.0} | {float(sum(memo["body"][n].values())) for n in nodes})
    buffers = sorted({s.buffer for s in sites}, key=str)
    curves = {}
    for per_unit in (False, True):
        traffic = {b: [] for b in buffers}
        for c in caps:
            t = tree.traffic(-1, c, memo, per_unit)
            for b in buffers:
                traffic[b].append(float(t.get(b, 0.0)))
        curves[per_unit] = traffic
    # drop capacities at which nothing changes
    keep = [0] + [i for i in range(1, len(caps)) if any(t[b][i] != t[b][i - 1] for t in curves.values() for b in buffers)]
    pick = {k: {b: tuple(t[b][i] for i in keep) for b in buffers} for k, t in curves.items()}
    return ReuseProfile(tuple(caps[i] for i in keep), pick[False], pick[True], dict(memo["full"][-1]))
