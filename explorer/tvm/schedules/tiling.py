"""The shape of a tiled reduction on a CPU: which kernels are one reduction, the register tile of
accumulators, the loop it reuses loads along, and the order of its parallel tasks."""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base.common_schedules import try_inline
from tvm.target import Target

from explorer.tvm.schedules.common import loop_extent, static_elements, vars_in, vector_bits

#: Accumulator rows of a register tile, tried largest first (a divisor of the axis' extent).
TILE_ROWS = (8, 7, 6, 5, 4, 3, 2)


#: Vectors along the innermost spatial loop in a register tile of :class:`TiledReduction`.
TILE_VECTORS = (4, 3, 2, 1)


#: Accumulator registers a tile may take, by the target's vector width in bits: AVX-512 has 32
#: vector registers, AVX2 and SSE 16; the rest hold the loaded operand vectors and the broadcast.
TILE_REGISTERS = {512: 24, 256: 12, 128: 12}


#: ...unless each output takes a long reduction: a decode step's GEMV has a few thousand outputs but
#: 768 x 2304 multiply-adds, some 10 us on one core against about 1 us to fork and join the pool.
MIN_PARALLEL_WORK = 1 << 18


def tile_registers(target: Target) -> int:
    """Accumulators a register tile may take on ``target`` (:data:`TILE_REGISTERS`)."""
    return TILE_REGISTERS.get(vector_bits(target), 12)


def register_tile(row_extent: int, vectors: int, registers: int = TILE_REGISTERS[512]) -> tuple[int, int]:
    """``(rows, vectors)`` of an accumulator tile: ``rows`` a divisor of ``row_extent`` from
    :data:`TILE_ROWS` (or 1), ``vectors`` a divisor of the ``vectors`` along the vectorized loop from
    :data:`TILE_VECTORS`, at most ``registers`` accumulators, and the most multiply-adds per load
    (``rows * vectors / (rows + vectors)``: each step loads ``vectors`` vectors and broadcasts
    ``rows`` elements)."""
    row_options = [r for r in TILE_ROWS if row_extent % r == 0] or [1]
    vector_options = [v for v in TILE_VECTORS if vectors % v == 0]
    tiles = [(r, v) for r in row_options for v in vector_options if r * v <= registers] or [(1, 1)]
    return max(tiles, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def reuse_axis(sch: s_tir.Schedule, block, n_spatial: int) -> int | None:
    """For a reduction block whose innermost spatial loop is ``j``: the innermost other spatial loop
    (by position) that the operand read along ``j`` does not depend on, so that a tile along it reuses
    each load of that operand (a matmul's rows, a convolution's output channels); where every operand
    is read along ``j``, the innermost that some operand does not depend on; ``None`` if none."""
    stmt = sch.get(block)
    iters = [iv.var for iv in stmt.iter_vars]
    spatial = sch.get_loops(block)[:n_spatial]
    j = n_spatial - 1
    along_j = set()
    for region in stmt.reads:
        used = set()
        for rng in region.region:
            used |= vars_in(rng.min)
        if iters[j] in used:
            along_j |= used
    candidates = [k for k in range(n_spatial - 2, -1, -1) if (loop_extent(sch, spatial[k]) or 0) > 1]
    axis = next((k for k in candidates if iters[k] not in along_j), None)
    if axis is not None:
        return axis
    # every operand is read along j (a depthwise convolution): a loop that one operand does not
    # depend on (the weights, along the output row) still reuses each of that operand's loads
    independent = [set().union(*(vars_in(r.min) for r in region.region)) for region in stmt.reads]
    return next((k for k in candidates if any(iters[k] not in used for used in independent)), None)


def _operand_bytes(region) -> float:
    return static_elements(region.source) * region.source.dtype.bits // 8


def task_order(sch: s_tir.Schedule, block, extents: list[int]) -> list[int]:
    """The order of a tiled reduction's outer spatial loops (their ``extents`` by the position of
    the block's spatial axes, outside the register tile), which are fused into its parallel tasks:
    consecutive tasks should share the larger operand's slab.

    The operand read along the innermost spatial loop ``j`` (the weights of a channels-last
    convolution or a matmul) depends on some outer loops; the other operands on the rest. Loops
    both depend on (a batch) stay outermost. With the loops only the ``j`` operand depends on
    innermost (the spatial order), each of its slabs is read once per task of the other loops; with
    them outermost, the other operands are read once per task of these instead. The order that
    reads fewer bytes is taken (a channels-last convolution of 7x7 pixels and 512 channels read its
    9.4 MB of weights once per output row, 66 MB, from DRAM: 4x slower than reading them once)."""
    stmt = sch.get(block)
    iters = [iv.var for iv in stmt.iter_vars]
    n_spatial = len(extents)
    j = n_spatial - 1
    along_j, others, along_j_bytes, other_bytes = set(), set(), 0.0, 0.0
    for region in stmt.reads:
        used = set().union(*(vars_in(rng.min) for rng in region.region))
        if iters[j] in used:
            along_j |= used
            along_j_bytes += _operand_bytes(region)
        else:
            others |= used
            other_bytes += _operand_bytes(region)
    outer = range(n_spatial)
    shared = [k for k in outer if iters[k] in along_j and iters[k] in others]
    own = [k for k in outer if k not in shared and iters[k] in along_j]
    rest = [k for k in outer if k not in shared and k not in own]
    reread_along_j = along_j_bytes * math.prod(extents[k] for k in rest) + other_bytes
    reread_others = other_bytes * math.prod(extents[k] for k in own) + along_j_bytes
    if reread_others < reread_along_j:
        return shared + own + rest
    return list(outer)


#: The most reduction steps per element of the padded input at which a convolution reads its input
#: through a border test rather than a padded copy whatever its epilogue (:func:`pays_to_inline_padding`).
INLINE_PADDING_MAX_STEPS = 32

#: The most arithmetic operations per output element of the fused epilogue with which any convolution
#: reads its input through the border test (:func:`pays_to_inline_padding`): a bias, a ReLU or ReLU6 and a
#: residual add take 2-4; yolo-block's SiLU epilogues, with the ``fast_exp`` polynomial, 137-138.
INLINE_PADDING_MAX_EPILOGUE_OPS = 6


def epilogue_ops(sch: s_tir.Schedule, epilogues) -> int:
    """Arithmetic operations per output element in a reduction kernel's injective epilogue blocks (every
    expression node but variables, constants and loads)."""
    count = 0

    def node(expr, visitor):
        nonlocal count
        if not isinstance(expr, (tirx.Var, tirx.IntImm, tirx.FloatImm, tvm.ir.TensorLoad)):
            count += 1
        visitor.default_visit(expr)

    for block in epilogues:
        tvm_ffi.structural_visit(sch.get(block.block_rv).body, [((tvm.ir.expr.Expr,), node)])
    return count


def pays_to_inline_padding(sch: s_tir.Schedule, red, pad, n_spatial: int, epilogue: int) -> bool:
    """Whether the reduction ``red`` should read its input through ``pad``'s border test instead of a
    padded copy. Every lane of its vector (the innermost spatial loop) must see the same border: no
    padded axis is indexed by that loop, as in a channels-last convolution. Then it pays where the
    kernel does few reduction steps per input element (at most :data:`INLINE_PADDING_MAX_STEPS`: a
    depthwise convolution does 9 at stride 1, a max pool 2.25 at stride 2), for writing and reading the
    copy costs more than its arithmetic; and where its fused ``epilogue`` does at most
    :data:`INLINE_PADDING_MAX_EPILOGUE_OPS` operations per element (:func:`epilogue_ops`).

    Measured on 2 Zen 4 cores: mobilenetv2's 3x3 depthwise of 96 channels at stride 2 on 112x112 took 109 us
    with the copy and 50-66 us without, resnet18's max pool 174 and 57 us, its 3x3 convolutions of 256
    channels at 14x14 (ReLU) 1192 and 1015 us. Where the epilogue was a SiLU, LLVM spilled the register
    tile around the border branches (yolo-block's 3x3 of 64 channels at 20x20: 142 us with the copy, 207
    us without)."""
    pad_stmt, red_stmt = sch.get(pad.block_rv), sch.get(red.block_rv)
    source, padded = pad_stmt.reads[0].source, pad_stmt.writes[0].source
    if len(source.shape) != len(padded.shape):
        return False
    steps = static_elements(red_stmt.writes[0].source)
    for loop in sch.get_loops(red.block_rv)[n_spatial:]:
        steps *= loop_extent(sch, loop) or 0
    if steps > INLINE_PADDING_MAX_STEPS * static_elements(source) and epilogue > INLINE_PADDING_MAX_EPILOGUE_OPS:
        return False
    axes = [k for k, (a, b) in enumerate(zip(source.shape, padded.shape)) if not tvm_ffi.structural_equal(a, b)]
    j = red_stmt.iter_vars[n_spatial - 1].var
    for region in red_stmt.reads:
        if region.source.same_as(padded) and any(j in vars_in(region.region[k].min) for k in axes):
            return False
    return True


def reduction_kernel(sch: s_tir.Schedule, inline_padding: bool = False):
    """A kernel that is one reduction block (spatial loops outside, reduction loops inside) with
    injective epilogues, once its element-wise producers are inlined. Padding stays a stage of its
    own unless ``inline_padding`` and :func:`pays_to_inline_padding` (then each load of the inner loop
    tests the border, but no padded copy of the input is written and read back). Returns
    ``(reduction block info, number of spatial loops, epilogue infos, padding infos)``, or ``None``
    for another kernel."""
    infos = normalize_prim_func(sch)
    if infos is None:
        return None
    is_pad = [b.is_data_pad(sch) for b in infos]
    pads = [b for b, pad in zip(infos, is_pad) if pad]
    remaining = try_inline(sch, [b for b, pad in zip(infos, is_pad) if not pad])
    reductions = [b for b in remaining if b.is_reduction()]
    if len(reductions) != 1:
        return None
    red = reductions[0]
    kinds = red.dom_kind()
    n_spatial = len(kinds) - len(kinds.lstrip("S"))
    if n_spatial == 0 or n_spatial == len(kinds) or "S" in kinds[n_spatial:]:
        return None
    epilogues = [b for b in remaining if b is not red]
    if any(not b.is_injective() for b in epilogues):
        return None
    if inline_padding:
        kept = []
        for pad in pads:
            if not pays_to_inline_padding(sch, red, pad, n_spatial, epilogue_ops(sch, epilogues)):
                kept.append(pad)
                continue
            try:
                sch.compute_inline(pad.block_rv)
            except RuntimeError:  # the schedule refused: the pad stays a stage of its own
                kept.append(pad)
        pads = kept
    return red, n_spatial, epilogues, pads
