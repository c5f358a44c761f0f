"""The CPU's default schedule of a reduction kernel (convolution, matmul): a register tile of
accumulators, vectorized along the innermost spatial loop, its outer loops fused and parallel, the
fused epilogues applied as the tile is written back.

A convolution that does few multiply-adds per input element (depthwise), a pooling and a convolution
with a light epilogue read their input through a border test rather than a padded copy of it
(:func:`~explorer.tvm.schedules.tiling.pays_to_inline_padding`).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule

from explorer.tvm.schedules.common import (
    MIN_PARALLEL_ELEMENTS,
    is_cpu,
    largest_divisor,
    loop_extent,
    parallel_rows,
    static_elements,
    vector_lanes,
    vectorize_innermost,
)
from explorer.tvm.schedules.decisions import sampled_split
from explorer.tvm.schedules.tiling import (
    MIN_PARALLEL_WORK,
    TILE_ROWS,
    TILE_VECTORS,
    reduction_kernel,
    register_tile,
    reuse_axis,
    task_order,
    tile_registers,
)

#: The most steps of the reduction's longest loop tuning may unroll around the register tile.
MAX_UNROLLED_STEPS = 8


class TiledReduction(ScheduleRule):
    """A reduction kernel (convolution, matmul) tiled for registers, vectorized and parallel.

    With spatial loops ``s...`` and reduction loops ``r...`` (after inlining element-wise producers
    such as padding), the innermost spatial loop ``j`` is split by the vector width; ``i``, the
    innermost other spatial loop that the operand read along ``j`` does not depend on (a matmul's
    rows, a convolution's output channels), is split into a tile of :data:`TILE_ROWS`; the outer
    spatial loops are fused and parallel. Loop order: ``parallel(outer) / r... / i_tile / j_vec``
    with the ``i_tile x j_vec`` accumulators in a local buffer initialised before the reduction
    and written back (with the fused epilogues) after it.

    Every tile size is a sampled decision (:mod:`explorer.tvm.schedules.decisions`) that tuning may
    change, with levels the default leaves at 1: cache blocks of ``i`` and ``j`` tiles and a block of
    the reduction's longest loop outside the reduction, and steps of that loop unrolled inside it
    (``parallel(outer) / r_block / i_block / j_block / r... / r_unrolled / i_tile / j_vec``).
    """

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        kernel = reduction_kernel(sch, inline_padding=True)
        if kernel is None:
            return None
        red, n_spatial, epilogues, pads = kernel
        try:
            self._schedule(sch, red, n_spatial, epilogues, target)
            for pad in pads:
                parallel_rows(sch, pad.block_rv, target)
        except (RuntimeError, ValueError):  # a primitive refused: the next rule takes it
            return None
        return sch

    def _schedule(self, sch, red, n_spatial, epilogues, target):
        block = red.block_rv
        stmt = sch.get(block)
        out_bits = stmt.writes[0].source.dtype.bits
        loops = sch.get_loops(block)
        spatial, reduce = list(loops[:n_spatial]), list(loops[n_spatial:])
        lanes = vector_lanes(target, out_bits)

        j = n_spatial - 1
        j_extent = loop_extent(sch, spatial[j])
        if j_extent is None:
            raise ValueError("dynamic extent")
        vec = largest_divisor(j_extent, lanes)
        i = reuse_axis(sch, block, n_spatial)
        # several vectors along j only when they are whole registers (a row of 56 is 4 x 14 lanes)
        rows, vectors = register_tile(loop_extent(sch, spatial[i]) if i is not None else 1,
                                      j_extent // vec if vec == lanes else 1, tile_registers(target))

        elements = static_elements(stmt.writes[0].source)
        work = elements
        for loop in reduce:
            work *= loop_extent(sch, loop) or 1
        parallel = elements >= MIN_PARALLEL_ELEMENTS or work >= MIN_PARALLEL_WORK

        # every tile size is a decision tuning may change (explorer.tvm.schedules.decisions); the
        # cache blocks (mid), the reduction's block and its unrolled steps are 1 by default
        jo, ji = sch.split(spatial[j], factors=[None, vec])
        mid, tile = [], []
        if vec == lanes and j_extent // vec > 1:
            jo, jm, jv = sampled_split(sch, jo, [j_extent // vec // vectors, 1, vectors], max(TILE_VECTORS))
            mid, tile = [jm], [jv]
        io = None
        if i is not None and (loop_extent(sch, spatial[i]) or 0) > 1:
            io, im, ii = sampled_split(sch, spatial[i], [loop_extent(sch, spatial[i]) // rows, 1, rows], max(TILE_ROWS))
            mid, tile = [im, *mid], [ii, *tile]
        static = [k for k, loop in enumerate(reduce) if loop_extent(sch, loop)]
        blocked, unrolled = [], []
        if static:
            r = max(static, key=lambda k: loop_extent(sch, reduce[k]))
            ko, ki, ku = sampled_split(sch, reduce[r], [1, loop_extent(sch, reduce[r]), 1], MAX_UNROLLED_STEPS)
            reduce = [*reduce[:r], ki, *reduce[r + 1:]]
            blocked, unrolled = [ko], [ku]
        outer = []
        for k, loop in enumerate(spatial):
            if k == j:
                outer.append(jo)
            elif k == i and io is not None:
                outer.append(io)
            else:
                outer.append(loop)
        inner = [*tile, ji]
        outer = [outer[k] for k in task_order(sch, block, [loop_extent(sch, loop) or 1 for loop in outer])]
        sch.reorder(*outer, *blocked, *mid, *reduce, *unrolled, *inner)
        for loop in [*unrolled, *inner[:-1]]:
            sch.unroll(loop)
        fused = sch.fuse(*outer)
        if parallel and (loop_extent(sch, fused) or 0) > 1:
            sch.parallel(fused)

        acc = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(acc, fused, preserve_unit_loops=True)
        for epilogue in epilogues:
            try:
                sch.reverse_compute_inline(epilogue.block_rv)
            except RuntimeError:
                sch.reverse_compute_at(epilogue.block_rv, fused, preserve_unit_loops=True)
                vectorize_innermost(sch, epilogue.block_rv, lanes)
        if vec > 1:  # before the init is split off: vectorize checks the block is still a reduction
            sch.vectorize(ji)
        init = sch.decompose_reduction(block, (blocked or reduce)[0])
        if vec > 1 and sch.get(sch.get_loops(init)[-1]).kind != tirx.ForKind.VECTORIZED:
            sch.vectorize(sch.get_loops(init)[-1])
        vectorize_innermost(sch, acc, lanes)
