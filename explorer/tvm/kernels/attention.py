"""Fused attention kernels: ``softmax(scale * q k^T + bias) v`` without the scores in global memory.

Two kernels, as flash-decoding splits the work (Dao et al., "Flash-Decoding for long-context inference",
2023; FlashAttention's online softmax, Dao et al. 2022, section 3.1):

- :func:`partial_attention`: one thread block per (batch, key/value head, tile of query rows, split of
  the keys). It copies its query rows to shared memory once, then walks its split a tile of keys at a
  time: the tile of K and V into shared memory, the scores of the tile into shared memory, the running
  row maximum and sum updated (online softmax) and the running output rescaled and accumulated. It
  writes the split's unnormalized output, row maximum and row sum: ``[rows, splits, v_dim]`` and
  ``[rows, splits]`` floats. All the query heads of one key/value head (grouped-query attention) are
  rows of the same block, so a decode step reads each key and value once.
- :func:`merge_splits`: the splits of each row combined, ``sum_c e^(m_c - M) o_c / sum_c e^(m_c - M) l_c``;
  a plain reduction that the GPU schedule rules take.

Every tensor is passed flat (a reshape is a view), so the query may be ``[B, H, S, D]`` or grouped
``[B, Hkv, G, S, D]``, and the bias any shape that broadcasts over the scores; broadcast axes have
stride 0. Operands are cast to the types the matmuls they replace took (a float32 cache read as float32
and rounded to bfloat16 in registers), scores and softmax in float32 as the graph had them.

``device=False`` gives the same loops with every thread loop serial and shared buffers global: each
stage is a loop over threads of its own, so running the threads one after another computes what the
GPU computes, and the CPU can check it.
"""

from __future__ import annotations

import dataclasses

from tvm import te, tirx
from tvm.script import tirx as T

from explorer.tvm.tir.expr import USEFUL_MACS_ATTR, bytes_of

#: Threads of a block, and the most shared memory a block may allocate statically (CUDA's 48 KiB).
THREADS = 128
SHARED_BYTES = 48 * 1024
#: Query rows of a block at most, keys of a tile at most, and how many blocks the splits of the keys
#: aim to give a decode step (two waves of a 132-SM H100).
MAX_ROWS = 16
MAX_KEYS = 32
TARGET_BLOCKS = 264
_NEG = -3.4028234663852886e38


@dataclasses.dataclass(frozen=True)
class AttentionShape:
    """One attention: ``batch`` x ``kv_heads`` blocks of ``rows`` query rows (query heads per key/value
    head x query positions) over ``kv_len`` keys; strides of the bias over (batch, head, group, query,
    key), 0 where it broadcasts; operand and accumulator types of the two matmuls."""

    batch: int
    kv_heads: int
    group: int
    q_len: int
    kv_len: int
    head_dim: int
    v_dim: int
    bias_strides: tuple[int, int, int, int, int]
    bias_size: int
    scale: float
    q_dtype: str
    k_dtype: str
    v_dtype: str
    bias_dtype: str
    qk_dtype: str            # the scores matmul's operand type
    pv_dtype: str            # the context matmul's operand type
    out_dtype: str           # the context matmul's result type

    @property
    def rows(self) -> int:
        return self.group * self.q_len


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Query rows per block, keys per tile, key tiles per split and splits per row."""

    rows: int
    keys: int
    tiles_per_split: int
    splits: int


def _nbytes(dtype: str) -> int:
    return max(1, int(bytes_of(dtype)))


def shared_bytes(shape: AttentionShape, rows: int, keys: int) -> int:
    """Shared memory of a block: query rows, a tile of keys and values, scores and probabilities, and
    each row's rescaling factor (the running output and statistics are in registers)."""
    qk, pv = _nbytes(shape.qk_dtype), _nbytes(shape.pv_dtype)
    return (rows * shape.head_dim * qk + keys * (shape.head_dim + key_padding(shape.qk_dtype)) * qk
            + keys * shape.v_dim * pv + 2 * rows * keys * 4 + rows * 4)


def key_padding(dtype: str) -> int:
    """Elements added to each row of the key tile: one 4-byte shared-memory bank, so the 32 keys a warp
    scores at once (each lane its own key, the same element of each) lie in 32 different banks rather
    than all in one (a row of 64 or 128 elements is a multiple of the 128-byte bank cycle)."""
    return max(1, 4 // _nbytes(dtype))


def tiling(shape: AttentionShape) -> Tiling:
    """Rows of a block (all of a key/value head's rows up to :data:`MAX_ROWS`), keys of a tile (halved
    from :data:`MAX_KEYS` until the block fits in shared memory), and the splits of the keys: as many
    as bring the grid to :data:`TARGET_BLOCKS` (a decode step of few sequences), one where the query
    tiles already fill the device (prefill)."""
    rows = min(shape.rows, MAX_ROWS)
    keys = MAX_KEYS
    while keys > 8 and shared_bytes(shape, rows, keys) > SHARED_BYTES:
        keys //= 2
    if shared_bytes(shape, rows, keys) > SHARED_BYTES:
        raise ValueError(f"head_dim {shape.head_dim} does not fit a block's shared memory")
    tiles = -(-shape.kv_len // keys)
    blocks = shape.batch * shape.kv_heads * -(-shape.rows // rows)
    splits = max(1, min(tiles, -(-TARGET_BLOCKS // blocks)))
    per_split = -(-tiles // splits)
    return Tiling(rows, keys, per_split, -(-tiles // per_split))


def partial_attention(shape: AttentionShape, tile: Tiling, device: bool = True) -> tirx.PrimFunc:
    """The split kernel (see the module docstring): flat ``q, k, v, bias`` in, each split's output
    ``[B, Hkv, rows, splits, v_dim]``, row maximum and row sum ``[B, Hkv, rows, splits]`` out."""
    B, H, ROWS, S, TK = shape.batch, shape.kv_heads, shape.rows, shape.q_len, shape.kv_len
    D, DV = shape.head_dim, shape.v_dim
    R, L, PER, C = tile.rows, tile.keys, tile.tiles_per_split, tile.splits
    RT = -(-ROWS // R)
    NT = THREADS
    sb, sh, sg, ss, st = shape.bias_strides
    scale = float(shape.scale)
    qk, pv = shape.qk_dtype, shape.pv_dtype
    smem = "shared" if device else "global"
    KPAD = key_padding(qk)
    # each thread's share of the running output, and a row's running maximum and sum, stay in its
    # registers: [1, items] on the GPU; the CPU's serial threads need a row each. (Shared per-row
    # statistics would be read and written inside ``if tx < R``; with R = 1 the simplifier makes their
    # index 0, ThreadSync sees every thread write one location and fails placing a barrier in the if.)
    ITEMS, NTO = -(-(R * DV) // NT), 1 if device else NT

    def blocks(n):
        return T.thread_binding(n, thread="blockIdx.x") if device else T.serial(n)

    def own(tx):
        """The row of a thread's private buffers: its own on the CPU, the only one on the GPU."""
        return 0 if device else tx

    def threads():
        return T.thread_binding(NT, thread="threadIdx.x") if device else T.serial(NT)

    @T.prim_func(s_tir=True)
    def partial(q: T.Buffer((B * H * ROWS * D,), shape.q_dtype), k: T.Buffer((B * H * TK * D,), shape.k_dtype),
                v: T.Buffer((B * H * TK * DV,), shape.v_dtype), bias: T.Buffer((shape.bias_size,), shape.bias_dtype),
                o_part: T.Buffer((B, H, ROWS, C, DV), "float32"), m_part: T.Buffer((B, H, ROWS, C), "float32"),
                l_part: T.Buffer((B, H, ROWS, C), "float32")):
        T.func_attr({"tirx.noalias": True})
        for bx in blocks(B * H * RT * C):
            with T.sblock("attention"):
                T.reads()
                T.writes()
                Q_s = T.alloc_buffer((R, D), qk, scope=smem)
                # flat, so that buffer compaction keeps the padded row stride
                K_s = T.alloc_buffer((L * (D + KPAD),), qk, scope=smem)
                V_s = T.alloc_buffer((L, DV), pv, scope=smem)
                S_s = T.alloc_buffer((R, L), "float32", scope=smem)
                P_s = T.alloc_buffer((R, L), "float32", scope=smem)
                O_l = T.alloc_buffer((NTO, ITEMS), "float32", scope="local" if device else "global")
                stats = T.alloc_buffer((NTO, 2), "float32", scope="local" if device else "global")
                alpha_s = T.alloc_buffer((R,), "float32", scope=smem)
                acc = T.alloc_buffer((1,), "float32", scope="local")
                run = T.alloc_buffer((3,), "float32", scope="local")
                for tx0 in threads():
                    for i in T.serial(-(-(R * D) // NT)):
                        if i * NT + tx0 < R * D:
                            row = T.meta_var((bx // C) % RT * R + (i * NT + tx0) // D)
                            Q_s[(i * NT + tx0) // D, (i * NT + tx0) % D] = T.if_then_else(
                                row < ROWS, T.Cast(qk, q[((bx // (C * RT)) * ROWS + row) * D + (i * NT + tx0) % D]),
                                T.Cast(qk, 0))
                    for i in T.serial(ITEMS):
                        O_l[own(tx0), i] = T.float32(0)
                    if tx0 < R:
                        stats[own(tx0), 0] = T.float32(_NEG)
                        stats[own(tx0), 1] = T.float32(0)
                for it in T.serial(PER):
                    for tx1 in threads():
                        for i in T.serial(-(-(L * D) // NT)):
                            if i * NT + tx1 < L * D:
                                t = T.meta_var(((bx % C) * PER + it) * L + (i * NT + tx1) // D)
                                K_s[(i * NT + tx1) // D * (D + KPAD) + (i * NT + tx1) % D] = T.if_then_else(
                                    t < TK, T.Cast(qk, k[((bx // (C * RT)) * TK + t) * D + (i * NT + tx1) % D]), T.Cast(qk, 0))
                        for i in T.serial(-(-(L * DV) // NT)):
                            if i * NT + tx1 < L * DV:
                                t = T.meta_var(((bx % C) * PER + it) * L + (i * NT + tx1) // DV)
                                V_s[(i * NT + tx1) // DV, (i * NT + tx1) % DV] = T.if_then_else(
                                    t < TK, T.Cast(pv, v[((bx // (C * RT)) * TK + t) * DV + (i * NT + tx1) % DV]), T.Cast(pv, 0))
                    for tx2 in threads():
                        for i in T.serial(-(-(R * L) // NT)):
                            if i * NT + tx2 < R * L:
                                acc[0] = T.float32(0)
                                for d in T.serial(D):
                                    acc[0] = acc[0] + T.Cast("float32", Q_s[(i * NT + tx2) // L, d]) * T.Cast("float32", K_s[(i * NT + tx2) % L * (D + KPAD) + d])
                                row = T.meta_var((bx // C) % RT * R + (i * NT + tx2) // L)
                                t = T.meta_var(((bx % C) * PER + it) * L + (i * NT + tx2) % L)
                                S_s[(i * NT + tx2) // L, (i * NT + tx2) % L] = T.if_then_else(
                                    row < ROWS and t < TK,
                                    acc[0] * T.float32(scale) + T.Cast("float32", bias[
                                        (bx // (C * RT * H)) * sb + (bx // (C * RT)) % H * sh + row // S * sg + row % S * ss + t * st]),
                                    T.float32(_NEG))
                    for tx3 in threads():
                        if tx3 < R:
                            run[0] = stats[own(tx3), 0]
                            for j in T.serial(L):
                                run[0] = T.max(run[0], S_s[tx3, j])
                            run[1] = T.float32(0)
                            for j in T.serial(L):
                                run[2] = T.exp(S_s[tx3, j] - run[0])
                                P_s[tx3, j] = run[2]
                                run[1] = run[1] + run[2]
                            run[2] = T.exp(stats[own(tx3), 0] - run[0])
                            alpha_s[tx3] = run[2]
                            stats[own(tx3), 1] = stats[own(tx3), 1] * run[2] + run[1]
                            stats[own(tx3), 0] = run[0]
                    for tx4 in threads():
                        for i in T.serial(-(-(R * DV) // NT)):
                            if i * NT + tx4 < R * DV:
                                acc[0] = T.float32(0)
                                for j in T.serial(L):
                                    acc[0] = acc[0] + T.Cast("float32", T.Cast(pv, P_s[(i * NT + tx4) // DV, j])) * T.Cast("float32", V_s[j, (i * NT + tx4) % DV])
                                O_l[own(tx4), i] = O_l[own(tx4), i] * alpha_s[(i * NT + tx4) // DV] + acc[0]
                for tx5 in threads():
                    for i in T.serial(-(-(R * DV) // NT)):
                        if i * NT + tx5 < R * DV:
                            row = T.meta_var((bx // C) % RT * R + (i * NT + tx5) // DV)
                            if row < ROWS:
                                o_part[bx // (C * RT * H), (bx // (C * RT)) % H, row, bx % C, (i * NT + tx5) % DV] = (
                                    O_l[own(tx5), i])
                    if tx5 < R:
                        if (bx // C) % RT * R + tx5 < ROWS:
                            m_part[bx // (C * RT * H), (bx // (C * RT)) % H, (bx // C) % RT * R + tx5, bx % C] = stats[own(tx5), 0]
                            l_part[bx // (C * RT * H), (bx // (C * RT)) % H, (bx // C) % RT * R + tx5, bx % C] = stats[own(tx5), 1]

    useful = shape.batch * shape.kv_heads * shape.rows * shape.kv_len * (shape.head_dim + shape.v_dim)
    return (partial.with_attr("tirx.is_scheduled", device).with_attr(USEFUL_MACS_ATTR, tirx.IntImm("int64", useful))
            .without_attr("global_symbol"))


def merge_splits(shape: AttentionShape, splits: int) -> tirx.PrimFunc:
    """The splits of each row combined into its output ``[B, Hkv, rows, v_dim]`` of ``out_dtype``."""
    dims = (shape.batch, shape.kv_heads, shape.rows)
    o = te.placeholder((*dims, splits, shape.v_dim), "float32", "o_part")
    m = te.placeholder((*dims, splits), "float32", "m_part")
    l = te.placeholder((*dims, splits), "float32", "l_part")  # noqa: E741
    c = te.reduce_axis((0, splits), "c")
    top = te.compute(dims, lambda b, h, r: te.max(m[b, h, r, c], axis=c), name="row_max")
    c = te.reduce_axis((0, splits), "c")
    total = te.compute(dims, lambda b, h, r: te.sum(te.exp(m[b, h, r, c] - top[b, h, r]) * l[b, h, r, c], axis=c),
                       name="row_sum")
    c = te.reduce_axis((0, splits), "c")
    weighted = te.compute((*dims, shape.v_dim), lambda b, h, r, d: te.sum(
        te.exp(m[b, h, r, c] - top[b, h, r]) * o[b, h, r, c, d], axis=c), name="weighted")
    out = te.compute((*dims, shape.v_dim), lambda b, h, r, d: (weighted[b, h, r, d] / total[b, h, r]).astype(shape.out_dtype),
                     name="attention_out")
    return te.create_prim_func([o, m, l, out]).without_attr("global_symbol")
