"""The CPU's schedule of a dot-product kernel of :mod:`explorer.tvm.passes.dot_kernels` (``VPDPBUSD`` for
int8, ``VDPBF16PS`` for bf16) tensorized over a register tile of output rows and blocks of 16 channels."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline

from explorer.tvm.passes.bf16_dot import BF16_DOT, register_bf16_intrinsic
from explorer.tvm.passes.dot_kernels import DOT_BLOCK, LANES
from explorer.tvm.passes.vnni import VNNI, register_vnni_intrinsic
from explorer.tvm.schedules.common import (
    MIN_PARALLEL_ELEMENTS,
    is_cpu,
    loop_extent,
    parallel_vectorized,
    vars_in,
    vector_lanes,
    vectorize_innermost,
)
from explorer.tvm.schedules.decisions import sampled_split
from explorer.tvm.schedules.tiling import TILE_ROWS

#: Blocks of 16 output channels that one broadcast activation feeds, tried largest first.
CHANNEL_BLOCKS = (2, 1)
#: Each instruction by its tensor intrinsic's name, with the function that registers the intrinsic.
INSTRUCTIONS = {VNNI.intrinsic: (VNNI, register_vnni_intrinsic), BF16_DOT.intrinsic: (BF16_DOT, register_bf16_intrinsic)}


class DotReduction(ScheduleRule):
    """A kernel of :mod:`explorer.tvm.passes.dot_kernels`, tensorized with the intrinsic its accumulator
    block names (:data:`~explorer.tvm.passes.dot_kernels.DOT_BLOCK`).

    The accumulator block's loops are ``s... / rows / block / lane`` (spatial; ``lane`` the 16 output
    channels of one instruction) and ``r... / group`` (reduction; ``group`` its 4 bytes or 2 bf16). ``rows``
    (output pixels or matmul rows) is split into a register tile of :data:`TILE_ROWS` and ``block``
    into :data:`CHANNEL_BLOCKS` blocks of 16 channels, so each weight load feeds ``rows`` instructions
    and each broadcast activation ``blocks`` of them. Loop order: ``parallel(outer) / r... /
    blocks / rows / [lane x group: VPDPBUSD]``, accumulators in a local tile initialised before the
    reduction, the epilogue (shift correction, dequantization, fused element-wise work) applied to
    the tile after it along its channels (an NCHW output gets the tile through a transposing copy,
    :func:`epilogue_along_lanes`); the padded channels-last copy of the input is a parallel stage of its own. An
    instruction whose implementation calls LLVM IR of its own (bf16) has it linked into the kernel
    (``pragma_import_llvm`` on the parallel loop).
    """

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        acc = [b for b in infos if DOT_BLOCK in sch.get(b.block_rv).annotations]
        if len(acc) != 1 or str(sch.get(acc[0].block_rv).annotations[DOT_BLOCK]) not in INSTRUCTIONS:
            return None
        acc = acc[0]
        pads = [b for b in infos if sch.get(b.block_rv).name_hint.startswith(("dot_pad", "dot_pack"))]
        remaining = try_inline(sch, [b for b in infos if b is not acc and b not in pads])
        epilogues = [b for b in remaining if b is not acc]
        if len(epilogues) != 1 or not epilogues[0].is_injective():
            return None
        try:
            self._schedule(sch, acc, epilogues[0].block_rv, target)
            for pad in pads:
                parallel_vectorized(sch, pad.block_rv, target)
        except (RuntimeError, ValueError):
            return None
        return sch

    def _schedule(self, sch, acc, epilogue, target):
        block = acc.block_rv
        accumulator = sch.get(block).writes[0].source
        instruction, register = INSTRUCTIONS[str(sch.get(block).annotations[DOT_BLOCK])]
        kinds = acc.dom_kind()
        n_spatial = len(kinds) - len(kinds.lstrip("S"))
        loops = sch.get_loops(block)
        spatial, reduce = list(loops[:n_spatial]), list(loops[n_spatial:])
        # which loop is which, by the accumulator dimension its iterator indexes (normalisation drops
        # unit loops: one matmul row, a single block of 16 channels)
        iters = [iv.var for iv in sch.get(block).iter_vars][:n_spatial]
        region = sch.get(block).writes[0].region
        role = {}
        for name, dim in (("lane", -1), ("block", -2), ("rows", -3)):
            if len(region) >= -dim and isinstance(region[dim].min, tirx.Var) and region[dim].min in iters:
                role[name] = spatial[iters.index(region[dim].min)]
        if "lane" not in role or len(reduce) < 2 or loop_extent(sch, role["lane"]) != LANES:
            raise ValueError("not a dot-product accumulator")
        lane = role["lane"]
        outer = [loop for loop in spatial if all(not sch.get(loop).same_as(sch.get(r)) for r in role.values())]
        row_tile, block_tile = [], []
        for name, sizes, tile in (("rows", TILE_ROWS, row_tile), ("block", CHANNEL_BLOCKS, block_tile)):
            if name in role:
                extent = loop_extent(sch, role[name])
                size = next((r for r in sizes if (extent or 0) % r == 0), 1)
                if extent is None:
                    lo, hi = sch.split(role[name], factors=[None, size])
                else:  # a decision tuning may change (explorer.tvm.schedules.decisions)
                    lo, hi = sampled_split(sch, role[name], [extent // size, size], max(sizes))
                outer.append(lo)
                tile.append(hi)
        sch.reorder(*outer, *reduce[:-1], *block_tile, *row_tile, lane, reduce[-1])
        fused = sch.fuse(*outer)
        elements = 1
        for dim in sch.get(block).writes[0].source.shape:
            elements *= int(dim) if isinstance(dim, tirx.IntImm) else 1
        if elements >= MIN_PARALLEL_ELEMENTS:
            sch.parallel(fused)
        # the accumulator is the kernel's own buffer: under the parallel loop it compacts to the tile
        # (a stack array; the intrinsic's buffers are in the default scope, so it cannot be "local")
        sch.reverse_compute_at(epilogue, fused, preserve_unit_loops=True)
        init = sch.decompose_reduction(block, reduce[0])
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(lane, register())
        if instruction.llvm_ir:
            sch.annotate(fused, "pragma_import_llvm", instruction.llvm_ir)
        for loop in (*row_tile, *block_tile):
            sch.unroll(loop)
        copy = epilogue_along_lanes(sch, epilogue, accumulator, fused)
        vectorize_innermost(sch, epilogue, vector_lanes(target, 32))
        if copy is not None:
            vectorize_innermost(sch, copy, vector_lanes(target, sch.get(copy).writes[0].source.dtype.bits))


def epilogue_along_lanes(sch, epilogue, accumulator, tasks):
    """Where the output's innermost axis is not the accumulator's lanes (an NCHW output's width, its
    channels in the lanes), the epilogue computes along the lanes into a channels-last tile on the stack
    and a copy writes that tile in the output's layout: vectorized along the output's width, the whole
    epilogue read the accumulators across the tile's rows, a gather of 8 lanes a vector, and ran its
    arithmetic (yolo-block's SiLU and requantization: 73 instructions a 32 elements) on half-empty
    vectors (yolo-block's NCHW int8 convolutions took 25-40% less time so, on 2 Zen 4 cores).
    ``accumulator``: the accumulator block's buffer; ``tasks``: the loop of the parallel tasks,
    which the epilogue and the copy are under. Returns the copy's block, or ``None`` where the output
    already has the lanes innermost."""
    stmt = sch.get(epilogue)
    lane_index = next((r.region[-1].min for r in stmt.reads if r.source.same_as(accumulator)), None)
    if lane_index is None:
        return None
    lane_vars = vars_in(lane_index)
    written = stmt.writes[0].region
    dims = [k for k, rng in enumerate(written) if vars_in(rng.min) & lane_vars]
    if len(dims) != 1 or dims[0] == len(written) - 1:
        return None
    loops = sch.get_loops(epilogue)
    loops = loops[1 + [sch.get(loop).same_as(sch.get(tasks)) for loop in loops].index(True):]
    realize = sch.get(loops[-1]).body
    iters = {iv.var: value for iv, value in zip(realize.block.iter_vars, realize.iter_values)}
    lane_loops = [k for k, loop in enumerate(loops)
                  if any(sch.get(loop).loop_var in vars_in(iters[v]) for v in lane_vars if v in iters)]
    if len(lane_loops) != 1:
        return None
    copy = sch.cache_write(epilogue, 0, "local")
    sch.reverse_compute_at(copy, tasks, preserve_unit_loops=True)
    dim = dims[0]
    order = [k for k in range(len(written)) if k != dim] + [dim]
    sch.transform_layout(epilogue, ("write", 0), lambda *idx: [idx[k] for k in order])
    lane_loop = loops[lane_loops[0]]
    sch.reorder(*[loop for k, loop in enumerate(loops) if k != lane_loops[0]], lane_loop)
    return copy
