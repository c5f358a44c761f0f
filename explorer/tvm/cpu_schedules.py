"""Default schedules for llvm (CPU) targets, in DLight's style: one :class:`ScheduleRule` per kind of
kernel, tried in order by ``dl.ApplyDefaultSchedule``.

TVM 0.27's DLight CPU rules cover GEMV and row reductions only, so convolutions, matmuls and
element-wise kernels ran as scalar single-threaded loops. These rules give them the classic CPU
shape: the outer spatial loops fused and spread over the cores, the innermost spatial loop split
to the native vector width and vectorized, a register tile of accumulators kept across the whole
reduction, and fused element-wise epilogues applied to the tile before it is written back.

- :class:`TiledReduction`: a kernel whose work is one reduction block (conv2d in NCHW or NHWC,
  depthwise and pointwise convolutions, matmul, dense, batch matmul), with element-wise producers
  inlined and epilogues fused.
- :class:`VnniReduction`: the int8 kernels of :mod:`explorer.tvm.vnni` (their accumulator block
  annotated :data:`~explorer.tvm.vnni.VNNI_BLOCK`), tensorized with ``dot_16x4_vnni``.
- :class:`ParallelElementwise`: a kernel of injective blocks only.

Both return ``None`` (the next rule takes the kernel) for anything they do not recognise, and for
a kernel they cannot schedule (a schedule primitive refusing is not an error: the kernel then keeps
the fallback schedule of :class:`explorer.tvm.pipeline.InlineElementwise`).
"""

from __future__ import annotations

import functools
import math

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline
from tvm.target import Target
from tvm.target.codegen import llvm_get_cpu_features, llvm_get_vector_width

from .vnni import LANES, VNNI_BLOCK, register_vnni_intrinsic

#: Accumulator rows of a register tile, tried largest first (a divisor of the axis' extent).
TILE_ROWS = (8, 7, 6, 5, 4, 3, 2)
#: Vectors along the innermost spatial loop in a register tile of :class:`TiledReduction`.
TILE_VECTORS = (4, 3, 2, 1)
#: Accumulator registers a tile may take, by the target's vector width in bits: AVX-512 has 32
#: vector registers, AVX2 and SSE 16; the rest hold the loaded operand vectors and the broadcast.
TILE_REGISTERS = {512: 24, 256: 12, 128: 12}
#: Blocks of 16 output channels that one broadcast activation feeds, tried largest first.
VNNI_BLOCKS = (2, 1)
#: A kernel with fewer output elements than this stays on one core (forking threads costs more)...
MIN_PARALLEL_ELEMENTS = 4096
#: ...unless each output takes a long reduction: a decode step's GEMV has a few thousand outputs but
#: 768 x 2304 multiply-adds, some 10 us on one core against about 1 us to fork and join the pool.
MIN_PARALLEL_WORK = 1 << 18
#: Parallel tasks an element-wise kernel's outer loops are fused into, at least (the rest stay serial loops).
PARALLEL_TASKS = 32


@functools.lru_cache(maxsize=16)
def _vector_bits(target_str: str) -> int:
    target = Target(target_str)
    features = set(llvm_get_cpu_features(target))
    # llvm_get_vector_width says 512 for every x86 mcpu with this wheel (haswell too): x86 by features
    if "avx512f" in features:
        return 512
    if "avx" in features:
        return 256
    if "sse2" in features:
        return 128
    return max(llvm_get_vector_width(target), 128)


def vector_bits(target: Target) -> int:
    """Width in bits of the target's native vector registers (x86: by its CPU features)."""
    return _vector_bits(str(target))


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


def _is_cpu(target: Target) -> bool:
    return target.kind.name == "llvm"


def vector_lanes(target: Target, dtype_bits: int) -> int:
    """Lanes of ``dtype_bits``-bit elements in the target's native vector register."""
    return max(vector_bits(target) // max(dtype_bits, 8), 1)


def loop_extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def largest_divisor(extent: int, limit: int) -> int:
    """The largest divisor of ``extent`` not above ``limit`` (1 when none is)."""
    return next((d for d in range(min(limit, extent), 0, -1) if extent % d == 0), 1)


def vars_in(expr) -> set:
    return set(tirx.analysis.undefined_vars(expr))


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


def static_elements(buffer) -> int:
    """Elements of ``buffer``, its dynamic dimensions counted as 1."""
    return math.prod(int(d) if isinstance(d, tirx.IntImm) else 1 for d in buffer.shape)


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


def reduction_kernel(sch: s_tir.Schedule):
    """A kernel that is one reduction block (spatial loops outside, reduction loops inside) with
    injective epilogues, once its element-wise producers are inlined; padding stays a stage of its
    own (inlined, every load of the inner loop would test the border). Returns ``(reduction block
    info, number of spatial loops, epilogue infos, padding infos)``, or ``None`` for another kernel."""
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
    return red, n_spatial, epilogues, pads


class TiledReduction(ScheduleRule):
    """A reduction kernel (convolution, matmul) tiled for registers, vectorized and parallel.

    With spatial loops ``s...`` and reduction loops ``r...`` (after inlining element-wise producers
    such as padding), the innermost spatial loop ``j`` is split by the vector width; ``i``, the
    innermost other spatial loop that the operand read along ``j`` does not depend on (a matmul's
    rows, a convolution's output channels), is split into a tile of :data:`TILE_ROWS`; the outer
    spatial loops are fused and parallel. Loop order: ``parallel(outer) / r... / i_tile / j_vec``
    with the ``i_tile x j_vec`` accumulators in a local buffer initialised before the reduction
    and written back (with the fused epilogues) after it.
    """

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not _is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        kernel = reduction_kernel(sch)
        if kernel is None:
            return None
        red, n_spatial, epilogues, pads = kernel
        try:
            self._schedule(sch, red, n_spatial, epilogues, target)
            for pad in pads:
                _parallel_rows(sch, pad.block_rv, target)
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

        if vectors > 1:
            jo, jv, ji = sch.split(spatial[j], factors=[None, vectors, vec])
        else:
            jo, ji = sch.split(spatial[j], factors=[None, vec])
        if rows > 1:
            io, ii = sch.split(spatial[i], factors=[None, rows])
        outer = []
        for k, loop in enumerate(spatial):
            if k == j:
                outer.append(jo)
            elif k == i and rows > 1:
                outer.append(io)
            else:
                outer.append(loop)
        inner = ([ii] if rows > 1 else []) + ([jv] if vectors > 1 else []) + [ji]
        outer = [outer[k] for k in task_order(sch, block, [loop_extent(sch, loop) or 1 for loop in outer])]
        sch.reorder(*outer, *reduce, *inner)
        fused = sch.fuse(*outer)
        elements = static_elements(stmt.writes[0].source)
        work = elements
        for loop in reduce:
            work *= loop_extent(sch, loop) or 1
        if (elements >= MIN_PARALLEL_ELEMENTS or work >= MIN_PARALLEL_WORK) and (loop_extent(sch, fused) or 0) > 1:
            sch.parallel(fused)

        acc = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(acc, fused, preserve_unit_loops=True)
        for epilogue in epilogues:
            try:
                sch.reverse_compute_inline(epilogue.block_rv)
            except RuntimeError:
                sch.reverse_compute_at(epilogue.block_rv, fused, preserve_unit_loops=True)
                _vectorize_innermost(sch, epilogue.block_rv, lanes)
        if vec > 1:  # before the init is split off: vectorize checks the block is still a reduction
            sch.vectorize(ji)
        init = sch.decompose_reduction(block, reduce[0])
        if vec > 1 and sch.get(sch.get_loops(init)[-1]).kind != tirx.ForKind.VECTORIZED:
            sch.vectorize(sch.get_loops(init)[-1])
        _vectorize_innermost(sch, acc, lanes)


class VnniReduction(ScheduleRule):
    """An int8 kernel of :mod:`explorer.tvm.vnni`, tensorized with ``dot_16x4_vnni``.

    The accumulator block's loops are ``s... / rows / block / lane`` (spatial; ``lane`` the 16 output
    channels of one instruction) and ``r... / group`` (reduction; ``group`` its 4 bytes). ``rows``
    (output pixels or matmul rows) is split into a register tile of :data:`TILE_ROWS` and ``block``
    into :data:`VNNI_BLOCKS` blocks of 16 channels, so each weight load feeds ``rows`` instructions
    and each broadcast activation ``blocks`` of them. Loop order: ``parallel(outer) / r... /
    blocks / rows / [lane x group: VPDPBUSD]``, accumulators in a local tile initialised before the
    reduction, the epilogue (shift correction, dequantization, fused element-wise work) applied to
    the tile after it; the padded channels-last copy of the input is a parallel stage of its own.
    """

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not _is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        acc = [b for b in infos if VNNI_BLOCK in sch.get(b.block_rv).annotations]
        if len(acc) != 1:
            return None
        acc = acc[0]
        pads = [b for b in infos if sch.get(b.block_rv).name_hint == "vnni_pad"]
        remaining = try_inline(sch, [b for b in infos if b is not acc and b not in pads])
        epilogues = [b for b in remaining if b is not acc]
        if len(epilogues) != 1 or not epilogues[0].is_injective():
            return None
        try:
            self._schedule(sch, acc, epilogues[0].block_rv, target)
            for pad in pads:
                _parallel_vectorized(sch, pad.block_rv, target)
        except (RuntimeError, ValueError):
            return None
        return sch

    def _schedule(self, sch, acc, epilogue, target):
        block = acc.block_rv
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
            raise ValueError("not a VNNI accumulator")
        lane = role["lane"]
        outer = [loop for loop in spatial if all(not sch.get(loop).same_as(sch.get(r)) for r in role.values())]
        row_tile, block_tile = [], []
        for name, sizes, tile in (("rows", TILE_ROWS, row_tile), ("block", VNNI_BLOCKS, block_tile)):
            if name in role:
                size = next((r for r in sizes if (loop_extent(sch, role[name]) or 0) % r == 0), 1)
                lo, hi = sch.split(role[name], factors=[None, size])
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
        sch.tensorize(lane, register_vnni_intrinsic())
        for loop in (*row_tile, *block_tile):
            sch.unroll(loop)
        _vectorize_innermost(sch, epilogue, vector_lanes(target, 32))


def _vectorize_innermost(sch, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = loop_extent(sch, loops[-1])
    if extent is None or extent < 2:
        return
    vec = largest_divisor(extent, lanes)
    if vec < 2:
        return
    if vec < extent:
        _, loops_inner = sch.split(loops[-1], factors=[None, vec])
        sch.vectorize(loops_inner)
    else:
        sch.vectorize(loops[-1])


def _normalized(func, target):
    """``(schedule, block infos)`` of a CPU PrimFunc, normalized as DLight's rules want it; infos are
    ``None`` where the function is not one or does not normalize."""
    if not isinstance(func, tirx.PrimFunc) or not _is_cpu(target):
        return None, None
    sch = s_tir.Schedule(func)
    return sch, normalize_prim_func(sch)


def _with_vectorized_output(sch, output, target):
    """``sch`` with the ``output`` block fused, vectorized and parallel (:func:`_parallel_vectorized`),
    or ``None`` where its loops do not allow it."""
    try:
        _parallel_vectorized(sch, output.block_rv, target)
    except (RuntimeError, ValueError):
        return None
    return sch


class ParallelElementwise(ScheduleRule):
    """A kernel of injective blocks: inlined into its last block, whose loops are fused, split by the
    vector width, vectorized inside and parallel outside."""

    def apply(self, func, target, _):
        sch, infos = _normalized(func, target)
        if infos is None or any(not b.is_injective() for b in infos):
            return None
        remaining = try_inline(sch, infos)
        if len(remaining) != 1:
            return None
        return _with_vectorized_output(sch, remaining[0], target)


class SingleRowReduction(ScheduleRule):
    """A row reduction (LayerNorm, RMSNorm, softmax) whose reductions have one row: a decode step's
    norms at batch 1. DLight's CPU ``Reduction`` makes the output's loop over the row the parallel
    loop and computes the reductions under it, once per element (a 768-wide LayerNorm did 768 x 768
    additions); here each reduction runs once, at the root, and the element-wise rest is inlined into
    the output, which is vectorized."""

    def apply(self, func, target, _):
        sch, infos = _normalized(func, target)
        if infos is None:
            return None
        reductions = [b for b in infos if b.is_reduction()]
        if not reductions or any(i.kind == "S" and i.dom != 1 for b in reductions for i in b.iters):
            return None
        remaining = try_inline(sch, infos)
        if not remaining or remaining[-1].is_reduction() or not remaining[-1].is_injective():
            return None
        return _with_vectorized_output(sch, remaining[-1], target)


def _parallel_rows(sch, block, target) -> None:
    """A padding (or copying) stage: its loops but the innermost fused and run on the cores, the
    innermost (one row: the border test there is on its own index) vectorized where a divisor of its
    extent fills at least a quarter of a vector register."""
    loops = sch.get_loops(block)
    stmt = sch.get(block)
    if not loops or not stmt.writes:
        raise ValueError("nothing to schedule")
    if len(loops) > 1:
        outer = sch.fuse(*loops[:-1])
        if (loop_extent(sch, outer) or 0) * (loop_extent(sch, loops[-1]) or 0) >= MIN_PARALLEL_ELEMENTS:
            sch.parallel(outer)
    lanes = vector_lanes(target, stmt.writes[0].source.dtype.bits)
    extent = loop_extent(sch, loops[-1]) or 1
    vec = largest_divisor(extent, lanes)
    if vec >= max(lanes // 4, 2):
        if vec < extent:
            _, inner = sch.split(loops[-1], factors=[None, vec])
            sch.vectorize(inner)
        else:
            sch.vectorize(loops[-1])


def _parallel_vectorized(sch, block, target) -> None:
    """Fuse a spatial block's loops, vectorize the inner ``lanes`` (a divisor of the innermost axis's
    extent) and run the rest on the cores (when the block is large enough to pay for it)."""
    loops = sch.get_loops(block)
    stmt = sch.get(block)
    if not loops or not stmt.writes:
        raise ValueError("nothing to schedule")
    lanes = vector_lanes(target, stmt.writes[0].source.dtype.bits)
    extents = [loop_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):
        raise ValueError("dynamic extent")
    # a vector within one row of the innermost axis: across rows its index has a division by the row
    # length that TVM does not simplify away, and LLVM gathers and scatters it lane by lane. The vector
    # is split off the innermost loop before the rest is fused, so that each lane's index is the loop's
    # own and not a division of the fused index (evaluated lane by lane in int64)
    vec = largest_divisor(extents[-1], lanes)
    serial = list(loops)
    if vec > 1:
        rest, vector = sch.split(loops[-1], factors=[None, vec])
        sch.vectorize(vector)
        serial = [*loops[:-1], rest]
    # only as many outer loops as make PARALLEL_TASKS are fused: each lane's indices are then the inner
    # loops' own, not divisions of one fused index (a dequantize kernel spent 30 scalar instructions
    # a vector on them, 4x its arithmetic)
    count, tasks = 0, 1
    while count < len(serial) and tasks < PARALLEL_TASKS:
        tasks *= loop_extent(sch, serial[count]) or 1
        count += 1
    outer = sch.fuse(*serial[:count]) if count > 1 else serial[0]
    if math.prod(extents) >= MIN_PARALLEL_ELEMENTS:
        sch.parallel(outer)
