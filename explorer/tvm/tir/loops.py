"""The loops around the statement the walker is at: their extents and kinds, the loop tree of the reuse
model, and what the schedule makes of an access or accumulation there (vector lanes, parallel tasks,
register-tile sharing, independent accumulators)."""

from __future__ import annotations

import contextlib

import numpy as np
import tvm
from tvm import sym

from explorer.tvm.tir.expr import int_of, vars_of
from explorer.workload import reuse

#: The most loop and thread points a guard's share is counted over; beyond, a fixed sample of as many.
_GUARD_POINTS = 1 << 16


class LoopNest:
    """The enclosing loops of a walk through one kernel."""

    def __init__(self):
        self.extent: dict = {}  # loop var -> extent
        self.thread_extent: dict = {}  # GPU thread or block var -> extent
        self.thread_tag: dict = {}  # GPU thread or block var -> its tag (blockIdx.x, threadIdx.x, ...)
        self.loops: list[reuse.Loop] = []  # the loop tree of the reuse model (see explorer.workload.reuse)
        self.path: list[tuple[int, object]] = []  # (loop id, loop var) of the enclosing loops
        self.analyzer = sym.Analyzer()  # knows loop ranges and let-bound values, to simplify indices
        self.frames: list[tuple[object, int, str]] = []  # (loop var, extent, kind) of the enclosing For loops
        self.parallel = 1  # product of the enclosing parallel loops' extents
        self.vector = 1  # product of the enclosing vectorized loops' extents

    def _enter(self, var, extent: int, spread: bool = False) -> None:
        lid = len(self.loops)
        self.analyzer.bind(var, tvm.ir.Range(0, extent))
        self.loops.append(reuse.Loop(lid, self.path[-1][0] if self.path else -1, extent, spread))
        self.path.append((lid, var))

    @contextlib.contextmanager
    def loop(self, var, extent: int, kind: str):
        """Inside a ``For`` loop of ``kind`` (:data:`explorer.tvm.tir.expr.FOR_KINDS`)."""
        self.extent[var] = extent
        self._enter(var, extent)
        self.frames.append((var, extent, kind))
        saved = self.parallel, self.vector
        if kind == "parallel":
            self.parallel *= extent
        elif kind == "vectorized":
            self.vector *= extent
        try:
            yield
        finally:
            self.parallel, self.vector = saved
            self.frames.pop()
            self.path.pop()

    def launch(self) -> tuple[int, int]:
        """A GPU kernel's thread blocks and threads per block, from its thread bindings (each tag's extent
        once); (0, 0) for a kernel without them."""
        tags: dict[str, int] = {}
        for var, extent in self.thread_extent.items():
            tags[str(self.thread_tag.get(var, ""))] = extent
        if not any(t.startswith("blockIdx") for t in tags):
            return 0, 0
        blocks = threads = 1
        for tag, extent in tags.items():
            if tag.startswith("blockIdx"):
                blocks *= extent
            elif tag.startswith("threadIdx"):
                threads *= extent
        return blocks, threads

    @contextlib.contextmanager
    def threads(self, var, extent: int, spread: bool, tag: str = ""):
        """Inside a GPU thread binding (``spread``: over thread blocks, which share no cache) of ``tag``
        (``blockIdx.x``, ``threadIdx.y``, ...)."""
        self.thread_extent[var] = extent
        self.thread_tag[var] = tag
        self._enter(var, extent, spread)
        try:
            yield
        finally:
            self.path.pop()

    def vector_stride(self, indices) -> int:
        """How far apart the lanes of an access inside vectorized loops lie, in elements: 1 for a
        contiguous vector (and outside vectorized loops), 0 for a broadcast (one element loaded for every
        lane), the stride of a strided one, a large number where the index is not linear along the
        innermost vectorized loop. Any stride but 0 and 1 is accessed lane by lane: TVM's codegen emits a
        strided vector as one scalar load and insert per lane (``vpinsrb``, ``vinsertps``)."""
        inner = next((var for var, _, kind in reversed(self.frames) if kind == "vectorized"), None)
        if inner is None or len(indices) != 1:
            return 1
        coeffs = sym.detect_linear_equation(self.analyzer.simplify(indices[0]), [inner])
        step = int_of(coeffs[0]) if len(coeffs) == 2 else None
        return abs(step) if step is not None else 1 << 30

    def tile_sharing(self, store, indices) -> int:
        """How many accumulators of the register tile around the multiply-add ``store`` share one load
        of an operand at ``indices``, or one evaluation of an operand expression that uses those indices:
        the extents of the loops inside its innermost reduction loop that they do not use (LLVM unrolls
        the tile and loads or computes it once for all of them); 1 outside one (``store`` None)."""
        if store is None:
            return 1
        written = [v for idx in store.indices for v in vars_of(self.analyzer.simplify(idx))]
        read = [v for idx in indices for v in vars_of(self.analyzer.simplify(idx))]
        shared = 1
        for var, extent, kind in reversed(self.frames):
            if kind == "vectorized":
                continue
            if kind in ("serial", "unrolled") and not any(var.same_as(u) for u in written):
                return shared  # the reduction loop: the tile is the loops inside it
            if not any(var.same_as(u) for u in read):
                shared *= extent
        return 1

    def chains(self, store) -> int:
        """Independent accumulators the innermost reduction loop around an accumulating ``store``
        updates: the elements the loops inside it write, over the vector lanes of one instruction
        (``0`` when no loop around the store leaves its index unchanged)."""
        used = [v for idx in store.indices for v in vars_of(self.analyzer.simplify(idx))]
        inner = 1
        for var, extent, kind in reversed(self.frames):
            indexes = any(var.same_as(u) for u in used)
            if not indexes and kind in ("serial", "unrolled"):
                return max(inner // max(self.vector, 1), 1)
            if indexes:
                inner *= extent
        return 0

    def init_fraction(self, cond) -> float:
        """Share of the enclosing loops' and threads' iterations in which the guard ``cond`` holds
        (``v == 0``, ``i * 128 + tx < 64``, ``(bx % 5 * 4 + it) * 32 < 513``: a tile or a thread
        block larger than the work), counted over every point of their ranges, or over a fixed sample
        of :data:`_GUARD_POINTS` where there are more. Terms over anything else (data, unknown
        variables) are taken to hold."""
        extents = {**self.thread_extent, **self.extent}
        terms, stack = [], [cond]
        while stack:
            c = stack.pop()
            if type(c).__name__ == "And":
                stack += [c.a, c.b]
            else:
                terms.append(self.analyzer.simplify(c))
        known = []
        for t in terms:
            used = vars_of(t)
            if used and all(any(v.same_as(k) for k in extents) for v in used):
                known.append(t)
        if not known:
            return 1.0
        involved = []
        for t in known:
            involved += [v for v in vars_of(t) if not any(v.same_as(u) for u in involved)]
        sizes = [next(e for k, e in extents.items() if k.same_as(v)) for v in involved]
        total = int(np.prod(sizes, dtype=np.float64))
        if total <= _GUARD_POINTS:
            points = [g.ravel() for g in np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")]
        else:
            rng = np.random.default_rng(0)
            points = [rng.integers(0, n, _GUARD_POINTS) for n in sizes]
        values = list(zip(involved, points))
        holds = np.ones(len(points[0]), dtype=bool)
        for t in known:
            try:
                holds &= np.broadcast_to(np.asarray(_evaluate(t, values), dtype=bool), holds.shape)
            except _NotEvaluable:
                continue
        return float(holds.mean())


class _NotEvaluable(Exception):
    """A guard term over something other than integer arithmetic of loop and thread variables."""


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "FloorDiv": np.floor_divide,
           "FloorMod": np.mod, "Div": np.floor_divide, "Mod": np.mod, "Min": np.minimum, "Max": np.maximum,
           "LT": np.less, "LE": np.less_equal, "GT": np.greater, "GE": np.greater_equal, "EQ": np.equal,
           "NE": np.not_equal, "And": np.logical_and, "Or": np.logical_or}


def _evaluate(e, values: list):
    """An integer or boolean expression at every point (``values``: (var, array) pairs; loop and thread
    variables are non-negative, so truncating and flooring division agree)."""
    kind = type(e).__name__
    if kind == "IntImm":
        return int(e.value)
    if kind == "Var":
        for var, v in values:
            if var.same_as(e):
                return v
        raise _NotEvaluable
    if kind in _BINARY:
        return _BINARY[kind](_evaluate(e.a, values), _evaluate(e.b, values))
    if kind == "Not":
        return np.logical_not(_evaluate(e.a, values))
    if kind == "Cast" and "int" in str(e.dtype):
        return _evaluate(e.value, values)
    raise _NotEvaluable
