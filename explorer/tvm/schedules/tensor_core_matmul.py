"""A GPU schedule rule that puts a matmul's multiply-adds on the tensor cores with ``mma.sync`` (CUDA)
or on CDNA 3's matrix cores with MFMA (ROCm, ``gfx942``).

DLight's ``Matmul`` rule tensorizes only float16 (and int8, which TVM 0.27 then fails to lower) and only
when every static M, N and K is over 64, so a decode step's few rows and every bfloat16 or fp8 matmul
stay on the SIMT lanes. :class:`TensorCoreMatmul` takes any matmul-like kernel (a batch of
``C[S, I, J] += A[S, I, K] * B[S, J, K]`` under DLight's normalization, with fused producers and an
element-wise epilogue) whose operand and accumulator types an ``mma`` instruction takes
(:mod:`explorer.tvm.schedules.mma_intrinsics`) and whose rows and columns number more than
:data:`GEMV_ROWS`. A convolution is one: re-indexed by its block's iterators before the normalization,
its input is the implicit im2col matrix, gathered as it is copied to shared memory.

- the block tile is ``16 * warps_m * tiles_m`` rows by ``16 * warps_n * tiles_n`` columns, chosen by
  :func:`block_tile` from M so that a decode step's 8 rows pad to 16, not to 128; M, N and K are padded
  to the tile (``pad_einsum``) and the padded multiply-adds are executed ones;
- each step along K copies a ``[rows, k_tile]`` slice of A and of B from global to shared memory
  (16-byte vectors where the operand is stored along K, 4-byte runs a lane along M or N where it is
  not; rows skewed against bank conflicts), each warp loads its fragments with ``ldmatrix``
  and issues the ``mma``s of its ``tiles_m x tiles_n`` accumulator tiles, kept in registers across K;
- the accumulators go to shared memory once, and the fused epilogue (bias, activation, casts) reads
  them there and writes each output once.

The instruction family is data (:class:`~explorer.tvm.schedules.mma_intrinsics.MmaGroup`): its K per
call, the lanes that issue it (a 32-thread warp or a 64-lane wavefront) and its fragment layouts; the
schedule is the same for both, with at most four wavefronts a block on ROCm (TVM's rocm target allows
256 threads).

GEMVs (M of :data:`GEMV_ROWS` or fewer) and depthwise convolutions (as few output channels a group) are
left to the other rules: a tensor core would pad them to 16 rows and do 4-16x the multiply-adds for the
same bytes.
"""

from __future__ import annotations

import dataclasses

import tvm
import tvm_ffi
from tvm import DataType, s_tir, tirx
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule
from tvm.s_tir.dlight.gpu.matmul import (
    auto_inline_consumer_chain,
    auto_inline_producers,
    check_sm_version,
    get_index_map,
    get_reduction_blocks,
)

from explorer.tvm.schedules.common import loop_extent as extent
from explorer.tvm.schedules.mfma_intrinsics import is_cdna3, mfma_group
from explorer.tvm.schedules.mma_intrinsics import TILE_M, TILE_N, MmaGroup, lowest_sm, mma_group
from explorer.tvm.tir.expr import USEFUL_MACS_ATTR

#: Rows of a matmul at or below which it is a GEMV, not a tensor-core GEMM.
GEMV_ROWS = 4

#: Bytes one thread copies from global to shared memory at a time, in at most MAX_LANES elements (8-bit
#: copies capped at 8 lanes, the widest whose generated CUDA was checked to compile).
COPY_BYTES = 16
MAX_LANES = 8

#: Threads of a block, by the lanes of the group that issues an intrinsic: CUDA's 1024; TVM's rocm
#: target's ``max_threads_per_block`` (256, four wavefronts of 64).
MAX_THREADS = {32: 1024, 64: 256}


@dataclasses.dataclass(frozen=True)
class BlockTile:
    """How a thread block covers the output: ``warps_m x warps_n`` warps, each computing
    ``tiles_m x tiles_n`` accumulator tiles of 16 x 16, over ``k_steps`` intrinsic calls of K per
    copy to shared memory."""

    warps_m: int
    tiles_m: int
    warps_n: int
    tiles_n: int
    k_steps: int

    @property
    def rows(self) -> int:
        return TILE_M * self.warps_m * self.tiles_m

    @property
    def columns(self) -> int:
        return TILE_N * self.warps_n * self.tiles_n

    @property
    def warps(self) -> int:
        return self.warps_m * self.warps_n


def block_tile(m: int | None, n: int | None, k: int | None = None, k_step: int = 16, max_warps: int = 32) -> BlockTile:
    """The block tile for an ``m x n`` output with reduction depth ``k`` (``None``: not static), one
    intrinsic call covering ``k_step`` of it: the fewest rows of 16 that hold ``m`` up to 64 (64
    beyond), 128 columns unless ``n`` is smaller, and two calls per copy to shared memory unless one
    pads ``k`` less. 64 x 128 keeps a float32 accumulator tile (32 kB) and the operand slices within
    the 48 kB of static shared memory. Where the block would have more than ``max_warps`` warps, each
    warp takes more tiles."""
    n_tiles = 8 if n is None or n > 64 else max(-(-n // TILE_N), 1)
    warps_n, tiles_n = (4, 2) if n_tiles >= 8 else (n_tiles, 1)
    m_tiles = 4 if m is None else min(-(-m // TILE_M), 4)
    warps_m, tiles_m = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2)}[m_tiles]
    while warps_m * warps_n > max_warps:
        if warps_n % 2 == 0:
            warps_n, tiles_n = warps_n // 2, tiles_n * 2
        elif warps_m % 2 == 0:
            warps_m, tiles_m = warps_m // 2, tiles_m * 2
        elif warps_n > 1:
            warps_n, tiles_n = 1, tiles_n * warps_n
        else:
            warps_m, tiles_m = 1, tiles_m * warps_m
    k_steps = 2 if k is None or -(-k // (2 * k_step)) * 2 <= -(-k // k_step) else 1
    return BlockTile(warps_m=warps_m, tiles_m=tiles_m, warps_n=warps_n, tiles_n=tiles_n, k_steps=k_steps)


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _warp_layout(k: int, layout):
    """The index map from a ``[16, k]`` tile (an operand's, or the accumulator's with ``k`` 16) to its
    ``[lanes, registers]`` fragment under ``layout``, applied to every tile of a warp's ``[batch, rows, k]``
    buffer."""
    return lambda b, i, j: (b, i // 16, j // k, *layout(i % 16, j % k))


def _k_run(block, region) -> int:
    """How many consecutive K an operand holds consecutively in memory: the extent of the innermost
    reduction iterator (the last of the fused K) where it alone indexes the operand's innermost
    dimension (a matmul's ``[M, K]``, a channels-last convolution's input channels), else 0 (``[K, N]``,
    an NCHW window)."""
    reductions = [iv for iv in block.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    last = region.region[-1].min
    if not reductions or not isinstance(last, tirx.Var) or not last.same_as(reductions[-1].var):
        return 0
    return _static(reductions[-1].dom.extent) or 0


def _writers(sch) -> dict:
    """Each buffer the kernel's blocks write -> the block that writes it."""
    return {w.source: sch.get(block) for block in sch.get_child_blocks(get_root_block(sch)) for w in sch.get(block).writes}


def _producers(writer: dict, region) -> list:
    """The blocks of the kernel that compute an operand, transitively (empty for a parameter)."""
    todo, seen, blocks = [region.source], set(), []
    while todo:
        buf = todo.pop()
        if buf in seen or buf not in writer:
            continue
        seen.add(buf)
        blocks.append(writer[buf])
        todo.extend(r.source for r in writer[buf].reads)
    return blocks


def _unpacked(producers: list, bits: int) -> bool:
    """Whether an operand is computed from narrower elements (a weight-only matmul's packed int4 or int8
    weights): TVM 0.27 emits a vectorized copy of that computation as CUDA that does not compile, so it
    is copied element by element."""
    return any(DataType(str(r.source.dtype)).bits < bits for block in producers for r in block.reads)


def _selects(producers: list) -> bool:
    """Whether computing an operand selects (a convolution's zero padding, inlined into its copy)."""
    found = []
    for block in producers:
        tvm_ffi.structural_visit(block.body, [((tirx.Select, tvm.ir.expr.Call), lambda node, *_: found.append(
            type(node).__name__ == "Select" or str(getattr(node.op, "name", "")).endswith(".if_then_else")))])
    return any(found)


def intrinsics(arch: str, in_dtype: str, acc_dtype: str) -> MmaGroup | None:
    """The intrinsics that tensorize ``in_dtype`` operands accumulated in ``acc_dtype`` on ``arch``
    (``sm_90``: ``mma.sync``; a CDNA 3 ``gfx942``: MFMA), or None where its matrix units take no such
    instruction (or the explorer has none for it)."""
    if arch.startswith("gfx"):
        return mfma_group(in_dtype, acc_dtype) if is_cdna3(arch) else None
    group = mma_group(in_dtype, acc_dtype)
    return group if group is not None and check_sm_version(arch) >= lowest_sm(in_dtype, acc_dtype) else None


class TensorCoreMatmul(GPUScheduleRule):
    """A matmul-like kernel on the tensor cores with ``mma.sync``, or on CDNA 3's matrix cores with MFMA
    (see the module doc)."""

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        if target.kind.name not in ("cuda", "rocm") or "dlight.do_not_tensorize" in func.attrs.keys():
            return None
        arch = target.attrs.get("arch", "") if target.kind.name == "cuda" else target.attrs.get("mcpu", "")
        return self.schedule(func, str(arch))

    def schedule(self, func: tirx.PrimFunc, arch: str, device: bool = True) -> s_tir.Schedule | None:
        """``func`` scheduled for ``arch`` (``sm_90``, ``gfx942``), or None where the rule does not take
        it. ``device=False`` gives the same schedule for a CPU, to check its numbers: on-chip buffers in
        global memory, no thread bindings, and the loops the intrinsics would replace left as loops."""
        sch = s_tir.Schedule(func)
        reductions = get_reduction_blocks(sch, sch.get_child_blocks(get_root_block(sch)))
        if reductions is None or len(sch.get(reductions[0]).reads) != 2:
            return None
        main = reductions[0]
        in_dtypes = {str(r.source.dtype) for r in sch.get(main).reads}
        acc_dtype = str(sch.get(main).writes[0].source.dtype)
        if len(in_dtypes) != 1:
            return None
        in_dtype = in_dtypes.pop()
        group = intrinsics(arch, in_dtype, acc_dtype)
        if group is None:
            return None
        try:
            return self._schedule(sch, main, group, device)
        except (RuntimeError, ValueError, AssertionError):
            return None

    def _schedule(self, sch, main, group, device):
        shared, warp = ("shared", "warp") if device else ("global", "global")

        def bind(loop, thread: str):
            if device:
                sch.bind(loop, thread)

        def tensorize(loop, intrin: str):
            if device:
                sch.tensorize(loop, intrin)

        stmt = sch.get(main)
        k_run = [_k_run(stmt, region) for region in stmt.reads]
        bits = DataType(group.in_dtype).bits
        writers = _writers(sch)
        producers = [_producers(writers, region) for region in stmt.reads]
        unpacked = [_unpacked(p, bits) for p in producers]
        selecting = [_selects([*p, stmt]) for p in producers]  # a legalized conv may pad in its own block
        # the operands and the output re-indexed by the block's iterators: a convolution's input becomes
        # its implicit im2col matrix, gathered as it is copied to shared memory (the re-index block is
        # inlined there), never materialised
        reindex_a = sch.reindex(main, ("read", 0))
        reindex_b = sch.reindex(main, ("read", 1))
        reindex_c = sch.reindex(main, ("write", 0))
        maps = get_index_map(sch.get(main))
        if maps is None:
            return None
        matmul_map, a_map, b_map, c_map = maps
        sch.transform_layout(reindex_a, ("write", 0), a_map)
        sch.transform_layout(reindex_b, ("write", 0), b_map)
        sch.transform_layout(reindex_c, ("read", 0), c_map)
        sch.transform_block_layout(main, matmul_map)

        extents = [_static(iv.dom.extent) for iv in sch.get(main).iter_vars]
        m = extents[1]
        if (m is not None and m <= GEMV_ROWS) or (extents[2] is not None and extents[2] <= GEMV_ROWS):
            return None  # a GEMV (or a depthwise convolution, one output channel a group)
        lanes = group.lanes
        tile = block_tile(m, extents[2], extents[3], group.k, max_warps=MAX_THREADS[lanes] // lanes)
        k_tile = group.k * tile.k_steps
        sch.pad_einsum(main, [1, tile.rows, tile.columns, k_tile])

        batch, i, j, k = sch.get_loops(main)
        i, i_mma = sch.split(i, factors=[None, TILE_M])
        j, j_mma = sch.split(j, factors=[None, TILE_N])
        k, k_mma = sch.split(k, factors=[None, group.k])
        sch.reorder(i, j, k, i_mma, j_mma, k_mma)
        inner = main
        outer = sch.blockize(i_mma)

        i0, i1, i2 = sch.split(i, factors=[None, tile.warps_m, tile.tiles_m])
        j0, j1, j2 = sch.split(j, factors=[None, tile.warps_n, tile.tiles_n])
        k0, k1 = sch.split(k, factors=[None, tile.k_steps])
        sch.reorder(i0, j0, i1, j1, k0, k1, i2, j2)
        block_x = sch.fuse(i0, j0)
        warp_y = sch.fuse(i1, j1)
        bind(batch, "blockIdx.y")
        bind(block_x, "blockIdx.x")
        bind(warp_y, "threadIdx.y")

        _, m_ext, n_ext, k_ext = extents
        padded = [(m_ext or 1) % tile.rows or (k_ext or 1) % k_tile or selecting[0],
                  (n_ext or 1) % tile.columns or (k_ext or 1) % k_tile or selecting[1]]

        def to_shared(index: int):
            # TVM 0.27's CUDA code generator writes the zero of a padded (selecting) copy of more than 4
            # 8-bit lanes as one make_int2/make_int4 of every lane, which does not compile
            vector = min(COPY_BYTES * 8 // bits, 4 if padded[index] and bits == 8 else MAX_LANES)
            run = 32 // bits
            copy = sch.cache_read(outer, index, shared)
            sch.compute_at(copy, k0)
            rows, depth = sch.get_loops(copy)[-2:]
            if k_run[index] and k_run[index] % vector == 0:
                _, ty, tx, vec = sch.split(sch.fuse(rows, depth), factors=[None, tile.warps, lanes, vector])
                if device and not unpacked[index]:  # (LLVM takes no vector condition of a padded copy)
                    sch.vectorize(vec)
                else:
                    sch.unroll(vec)
            elif (extent(sch, rows) or 1) % (lanes * run) == 0 and (extent(sch, depth) or 1) % tile.warps == 0:
                # the lanes along M or N, each reading a 4-byte run of them, the warps along K: affine
                # indices, each warp reading 128 bytes in a row
                rows_o, tx, lane = sch.split(rows, factors=[None, lanes, run])
                depth_o, ty = sch.split(depth, factors=[None, tile.warps])
                sch.reorder(depth_o, rows_o, ty, tx, lane)
                sch.unroll(lane)
            else:
                sch.reorder(depth, rows)
                _, ty, tx = sch.split(sch.fuse(depth, rows), factors=[None, tile.warps, lanes])
            bind(tx, "threadIdx.x")
            bind(ty, "threadIdx.y")
            sch.storage_align(copy, 0, axis=-2, factor=32, offset=vector)
            return copy

        a_shared, b_shared = to_shared(0), to_shared(1)
        auto_inline_producers(sch, a_shared)
        auto_inline_producers(sch, b_shared)

        a_warp = sch.cache_read(outer, 0, warp)
        b_warp = sch.cache_read(outer, 1, warp)
        sch.compute_at(a_warp, k1)
        sch.compute_at(b_warp, k1)

        c_shared = sch.cache_write(outer, 0, shared)
        c_warp = sch.cache_write(outer, 0, warp)
        sch.reverse_compute_at(c_warp, warp_y)
        sch.reverse_compute_at(c_shared, block_x)
        ci, cj = sch.get_loops(c_warp)[-2:]
        ci0, ci1 = sch.split(ci, factors=[None, TILE_M])
        cj0, cj1 = sch.split(cj, factors=[None, TILE_N])
        sch.reorder(ci0, cj0, ci1, cj1)

        init = sch.decompose_reduction(outer, k0)
        init_inner = sch.get_child_blocks(init)[0]

        def fragment_loop(block, rows, cols):
            li, lj = sch.get_loops(block)[-2:]
            li0, li1 = sch.split(li, factors=[None, rows])
            lj0, lj1 = sch.split(lj, factors=[None, cols])
            sch.reorder(li0, lj0, li1, lj1)
            return li1

        loop_a = fragment_loop(a_warp, TILE_M, group.k)
        loop_b = fragment_loop(b_warp, TILE_N, group.k)
        sch.transform_layout(a_warp, ("write", 0), _warp_layout(group.k, group.operand_layout))
        sch.transform_layout(b_warp, ("write", 0), _warp_layout(group.k, group.operand_layout))
        sch.transform_layout(c_warp, ("read", 0), _warp_layout(16, group.accumulator_layout))

        tensorize(loop_a, group.load_a)
        tensorize(loop_b, group.load_b)
        tensorize(sch.get_loops(inner)[-3], group.compute)
        tensorize(sch.get_loops(init_inner)[-2], group.init)
        tensorize(sch.get_loops(c_warp)[-2], group.store)

        auto_inline_consumer_chain(sch, c_shared)
        fused = sch.fuse(*sch.get_loops(c_shared)[-2:])
        _, ty, tx = sch.split(fused, factors=[None, tile.warps, lanes])
        bind(tx, "threadIdx.x")
        bind(ty, "threadIdx.y")
        if None in extents:
            return sch
        # the multiply-adds before padding: the walker counts the executed (padded) ones
        useful = extents[0] * extents[1] * extents[2] * extents[3]
        return s_tir.Schedule(sch.mod["main"].with_attr(USEFUL_MACS_ATTR, tirx.IntImm("int64", useful)))

