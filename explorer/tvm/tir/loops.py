"""The loops around the statement the walker is at: their extents and kinds, the loop tree of the reuse
model, and what the schedule makes of an access or accumulation there (vector lanes, parallel tasks,
register-tile sharing, independent accumulators)."""

from __future__ import annotations

import contextlib

import tvm
from tvm import sym

from explorer.tvm.tir.expr import int_of, vars_of
from explorer.workload import reuse


class LoopNest:
    """The enclosing loops of a walk through one kernel."""

    def __init__(self):
        self.extent: dict = {}  # loop var -> extent
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

    @contextlib.contextmanager
    def threads(self, var, extent: int, spread: bool):
        """Inside a GPU thread binding (``spread``: over thread blocks, which share no cache)."""
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
        """Share of iterations in which ``cond`` holds, for ``v == 0 and w == 0`` guards on loops."""
        terms, stack = [], [cond]
        while stack:
            c = stack.pop()
            if type(c).__name__ == "And":
                stack += [c.a, c.b]
            else:
                terms.append(c)
        frac = 1.0
        for t in terms:
            if type(t).__name__ == "EQ" and int_of(t.b) == 0 and t.a in self.extent:
                frac /= max(self.extent[t.a], 1)
            else:
                return 1.0 if frac == 1.0 else frac
        return frac
