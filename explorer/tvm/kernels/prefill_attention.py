"""Prefill attention on the tensor cores: ``softmax(scale * q k^T + bias) v`` in one kernel, the scores
in shared memory, both matmuls on ``mma.sync`` (or CDNA 3's MFMA).

FlashAttention-2's forward pass (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and
Work Partitioning", 2023, Algorithm 1), written for the explorer's tensor-core intrinsics
(:mod:`explorer.tvm.schedules.mma_intrinsics`, :mod:`explorer.tvm.schedules.mfma_intrinsics`). One thread
block per (batch, key/value head, tile of 64 query rows, or 32 for a head too large); each warp owns 16 rows. The
block copies its query rows to shared memory once and each warp loads them into its operand registers;
then, a tile of keys at a time:

1. the tile of K (``[keys, head_dim]``) and of V, transposed (``[v_dim, keys]``), into shared memory;
2. each warp's scores ``q k^T``: ``head_dim / 16`` multiply-adds into ``keys / 16`` accumulator tiles,
   stored to shared memory (float32);
3. the online softmax of each row (one lane a row): scale, bias and the padded keys' mask, the running
   maximum and sum, the probabilities (in the context matmul's operand type) into shared memory and the
   factor that rescales the row's running output;
4. each warp's running output, ``v_dim / 16`` accumulator tiles kept in registers across the whole key
   loop, rescaled by its rows' factors and accumulated with ``p v``.

At the end each lane divides its accumulators by their rows' sums and writes them. K and V are read from
global memory once per query tile; nothing but the output is written.

As :mod:`explorer.tvm.kernels.attention` does, every operand is flat, the query rows are all the query
heads of a key/value head times the query positions (grouped-query heads share each key read), and the
bias is any tensor that broadcasts over the scores, with stride 0 where it does; padded keys and query
rows are masked. Every key tile is computed: the bias is a tensor, so a causal mask's empty tiles are
not known to be empty (FlashAttention skips them; here they cost their multiply-adds).

The fragment steps are written as the intrinsics' descriptions (their blocks' loops and layouts): for the
GPU they are tensorized (TVM checks that each matches its intrinsic), and with ``device=False`` they stay
loops, the threads serial and the on-chip buffers global, so the CPU computes what the GPU would.
"""

from __future__ import annotations

import dataclasses

from tvm import s_tir, tirx
from tvm.script import tirx as T

from explorer.tvm.kernels.attention import AttentionShape
from explorer.tvm.schedules.mma_intrinsics import MmaGroup
from explorer.tvm.tir.expr import USEFUL_MACS_ATTR, bytes_of

#: Warps of a block (16 query rows each), the most first, and CUDA's static shared memory of a block.
WARP_CHOICES = (4, 2)
SHARED_BYTES = 48 * 1024
#: Keys of a tile at most; halved until the block fits its shared memory.
MAX_KEYS = 32
_NEG = -3.4028234663852886e38


@dataclasses.dataclass(frozen=True)
class PrefillTiling:
    """Warps of a block, its query rows (16 a warp) and keys a tile, and the 16-bit elements each shared
    row is padded by (16 bytes: ``ldmatrix`` reads 16-byte rows, and the padding staggers them over the
    banks)."""

    warps: int
    keys: int
    pad: int

    @property
    def rows(self) -> int:
        return 16 * self.warps


def shared_bytes(shape: AttentionShape, rows: int, keys: int, pad: int) -> int:
    """Shared memory of a block: the query rows, whose memory the key tile and the probabilities take
    once the queries are in registers (TVM's StorageRewrite gives it them: their lifetimes do not
    overlap), a transposed value tile, the scores (float32), and each row's running maximum, sum and
    rescaling factor."""
    qk, pv = int(bytes_of(shape.qk_dtype)), int(bytes_of(shape.pv_dtype))
    queries = rows * (shape.head_dim + pad) * qk
    keys_and_probabilities = keys * (shape.head_dim + pad) * qk + rows * (keys + pad) * pv
    return (max(queries, keys_and_probabilities) + shape.v_dim * (keys + pad) * pv + rows * (keys + 1) * 4
            + 3 * rows * 4)


def prefill_tiling(shape: AttentionShape, group: MmaGroup) -> PrefillTiling | None:
    """The block tile for ``shape`` with ``group``'s intrinsics, or None where they cannot take it:
    operand types other than the group's, head or value sizes not multiples of 16, or no tile that fits
    the shared memory. The most warps first (each block reads every key and value of its head once, so
    more rows a block read them fewer times), then the most keys a tile."""
    if shape.qk_dtype != group.in_dtype or shape.pv_dtype != group.in_dtype or group.k != 16:
        return None
    if shape.head_dim % 16 or shape.v_dim % 16:
        return None
    pad = 16 // int(bytes_of(group.in_dtype))
    for warps in WARP_CHOICES:
        keys = MAX_KEYS
        while keys >= 16:
            if shared_bytes(shape, 16 * warps, keys, pad) <= SHARED_BYTES:
                return PrefillTiling(warps=warps, keys=keys, pad=pad)
            keys //= 2
    return None


#: The fragment steps of the kernel, each a block written as its intrinsic's description: (block name,
#: the MmaGroup field naming the intrinsic, how many of the block's innermost loops it replaces).
FRAGMENT_STEPS = (("q_fragment", "load_a", 2), ("s_init", "init", 2), ("k_fragment", "load_b", 2),
                  ("s_mma", "compute", 3), ("s_store", "store", 2), ("o_init", "init", 2),
                  ("p_fragment", "load_a", 2), ("v_fragment", "load_b", 2), ("o_mma", "compute", 3))


def prefill_attention(shape: AttentionShape, group: MmaGroup, tile: PrefillTiling, device: bool = True) -> tirx.PrimFunc:
    """The kernel (see the module docstring): flat ``q, k, v, bias`` in, the output ``[B, Hkv, rows, v_dim]``
    flat in ``out_dtype`` out; tensorized with ``group``'s intrinsics where ``device``."""
    B, H, ROWS, S, TK = shape.batch, shape.kv_heads, shape.rows, shape.q_len, shape.kv_len
    D, DV = shape.head_dim, shape.v_dim
    R, L, PAD = tile.rows, tile.keys, tile.pad
    W, LANES = tile.warps, group.lanes
    NT = W * LANES
    RT, KT = -(-ROWS // R), -(-TK // L)
    DK, LT, DVT = D // 16, L // 16, DV // 16
    OPR, ACC = 16 * group.k // LANES, 256 // LANES
    sb, sh, sg, ss, st = shape.bias_strides
    scale = float(shape.scale)
    qk, pv, acc_t = shape.qk_dtype, shape.pv_dtype, group.acc_dtype
    opl, accl, elem = group.operand_layout, group.accumulator_layout, group.accumulator_element
    zero = tirx.IntImm("int32", 0).astype(acc_t)  # as the fill intrinsics write it
    smem = "shared" if device else "global"
    frag = "warp" if device else "global"

    def blocks(n):
        return T.thread_binding(n, thread="blockIdx.x") if device else T.serial(n)

    def warps():
        return T.thread_binding(W, thread="threadIdx.y") if device else T.serial(W)

    def lanes():
        return T.thread_binding(LANES, thread="threadIdx.x") if device else T.serial(LANES)

    def block_threads():
        """The threads that copy a tile together: a warp's lanes on the GPU (all warps run it), every
        thread of the block on the CPU (one warp's turn copies the whole tile)."""
        return T.thread_binding(LANES, thread="threadIdx.x") if device else T.serial(NT)

    def thread(ty, tx):
        return ty * LANES + tx if device else tx

    def score(bias, bx, ty, tx, it, j, S_s):
        """Row ``tx`` of warp ``ty``'s scaled, biased score of key ``j`` of tile ``it`` (masked past the
        keys and rows)."""
        row = bx % RT * R + ty * 16 + tx
        t = it * L + j
        return T.if_then_else(
            tirx.all(row < ROWS, t < TK),
            S_s[ty * 16 + tx, j] * T.float32(scale) + T.Cast("float32", bias[
                bx // RT // H * sb + bx // RT % H * sh + row // S * sg + row % S * ss + t * st]),
            T.float32(_NEG))

    @T.prim_func(s_tir=True)
    def prefill(q: T.Buffer((B * H * ROWS * D,), shape.q_dtype), k: T.Buffer((B * H * TK * D,), shape.k_dtype),
                v: T.Buffer((B * H * TK * DV,), shape.v_dtype), bias: T.Buffer((shape.bias_size,), shape.bias_dtype),
                out: T.Buffer((B * H * ROWS * DV,), shape.out_dtype)):
        T.func_attr({"tirx.noalias": True})
        for bx in blocks(B * H * RT):
            with T.sblock("attention"):
                T.reads()
                T.writes()
                Q_s = T.sblock_alloc_buffer((R, D), qk, scope=smem)
                K_s = T.sblock_alloc_buffer((L, D), qk, scope=smem)
                Vt_s = T.sblock_alloc_buffer((DV, L), pv, scope=smem)
                S_s = T.sblock_alloc_buffer((R, L), "float32", scope=smem)
                P_s = T.sblock_alloc_buffer((R, L), pv, scope=smem)
                m_s = T.sblock_alloc_buffer((R,), "float32", scope=smem)
                l_s = T.sblock_alloc_buffer((R,), "float32", scope=smem)
                a_s = T.sblock_alloc_buffer((R,), "float32", scope=smem)
                Q_w = T.alloc_buffer((DK, LANES, OPR), qk, scope=frag)
                K_w = T.alloc_buffer((LANES, OPR), qk, scope=frag)
                S_w = T.alloc_buffer((LT, LANES, ACC), acc_t, scope=frag)
                P_w = T.alloc_buffer((LT, LANES, OPR), pv, scope=frag)
                V_w = T.alloc_buffer((LANES, OPR), pv, scope=frag)
                O_w = T.alloc_buffer((DVT, LANES, ACC), acc_t, scope=frag)
                run = T.alloc_buffer((3,), "float32", scope="local")
                for ty in warps():
                    for tx0 in block_threads():
                        for i in T.serial(-(-(R * D) // NT)):
                            with T.sblock("q_copy"):
                                vbx, vty, vtx, vi = T.axis.remap("SSSS", [bx, ty, tx0, i])
                                T.where(i * NT + thread(ty, tx0) < R * D)
                                e = T.meta_var(vi * NT + thread(vty, vtx))
                                Q_s[e // D, e % D] = T.if_then_else(
                                    vbx % RT * R + e // D < ROWS,
                                    T.Cast(qk, q[(vbx // RT * ROWS + vbx % RT * R + e // D) * D + e % D]), T.Cast(qk, 0))
                    for tx1 in lanes():
                        if tx1 < 16:
                            m_s[ty * 16 + tx1] = T.float32(_NEG)
                            l_s[ty * 16 + tx1] = T.float32(0)
                    for ks in T.serial(DK):
                        for ax0, ax1 in T.grid(16, 16):
                            with T.sblock("q_fragment"):
                                vty, vks = T.axis.remap("SS", [ty, ks])
                                v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                lane, reg = T.meta_var(opl(v0, v1))
                                Q_w[vks, lane, reg] = Q_s[vty * 16 + v0, vks * 16 + v1]
                    for ot in T.serial(DVT):
                        for ax0, ax1 in T.grid(16, 16):
                            with T.sblock("o_init"):
                                vot = T.axis.spatial(DVT, ot)
                                v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                lane, reg = T.meta_var(accl(v0, v1))
                                O_w[vot, lane, reg] = zero
                    for it in T.serial(KT):
                        for tx2 in block_threads():
                            for i in T.serial(-(-(L * D) // NT)):
                                with T.sblock("k_copy"):
                                    vbx, vty, vit, vtx, vi = T.axis.remap("SSSSS", [bx, ty, it, tx2, i])
                                    T.where(i * NT + thread(ty, tx2) < L * D)
                                    e = T.meta_var(vi * NT + thread(vty, vtx))
                                    K_s[e // D, e % D] = T.if_then_else(
                                        vit * L + e // D < TK,
                                        T.Cast(qk, k[(vbx // RT * TK + vit * L + e // D) * D + e % D]), T.Cast(qk, 0))
                            for i in T.serial(-(-(L * DV) // NT)):
                                with T.sblock("v_copy"):
                                    vbx, vty, vit, vtx, vi = T.axis.remap("SSSSS", [bx, ty, it, tx2, i])
                                    T.where(i * NT + thread(ty, tx2) < L * DV)
                                    e = T.meta_var(vi * NT + thread(vty, vtx))
                                    Vt_s[e % DV, e // DV] = T.if_then_else(
                                        vit * L + e // DV < TK,
                                        T.Cast(pv, v[(vbx // RT * TK + vit * L + e // DV) * DV + e % DV]), T.Cast(pv, 0))
                        for nt in T.serial(LT):
                            for ax0, ax1 in T.grid(16, 16):
                                with T.sblock("s_init"):
                                    vnt = T.axis.spatial(LT, nt)
                                    v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                    lane, reg = T.meta_var(accl(v0, v1))
                                    S_w[vnt, lane, reg] = zero
                            for ks in T.serial(DK):
                                for ax0, ax1 in T.grid(16, 16):
                                    with T.sblock("k_fragment"):
                                        vnt, vks = T.axis.remap("SS", [nt, ks])
                                        v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                        lane, reg = T.meta_var(opl(v0, v1))
                                        K_w[lane, reg] = K_s[vnt * 16 + v0, vks * 16 + v1]
                                for i0, j0, r0 in T.grid(16, 16, 16):
                                    with T.sblock("s_mma"):
                                        vnt = T.axis.spatial(LT, nt)
                                        vks = T.axis.reduce(DK, ks)
                                        vi, vj, vk = T.axis.remap("SSR", [i0, j0, r0])
                                        lane_c, reg_c = T.meta_var(accl(vi, vj))
                                        lane_a, reg_a = T.meta_var(opl(vi, vk))
                                        lane_b, reg_b = T.meta_var(opl(vj, vk))
                                        S_w[vnt, lane_c, reg_c] = S_w[vnt, lane_c, reg_c] + T.Cast(
                                            acc_t, Q_w[vks, lane_a, reg_a]) * T.Cast(acc_t, K_w[lane_b, reg_b])
                            for ax0, ax1 in T.grid(16, 16):
                                with T.sblock("s_store"):
                                    vty, vnt = T.axis.remap("SS", [ty, nt])
                                    v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                    lane, reg = T.meta_var(accl(v0, v1))
                                    S_s[vty * 16 + v0, vnt * 16 + v1] = S_w[vnt, lane, reg]
                        for tx3 in lanes():
                            if tx3 < 16:
                                run[0] = m_s[ty * 16 + tx3]
                                for j in T.serial(L):
                                    run[0] = T.max(run[0], score(bias, bx, ty, tx3, it, j, S_s))
                                run[1] = T.float32(0)
                                for j in T.serial(L):
                                    run[2] = T.exp(score(bias, bx, ty, tx3, it, j, S_s) - run[0])
                                    with T.sblock("p_store"):
                                        vty, vtx, vj = T.axis.remap("SSS", [ty, tx3, j])
                                        P_s[vty * 16 + vtx, vj] = T.Cast(pv, run[2])
                                    run[1] = run[1] + run[2]
                                a_s[ty * 16 + tx3] = T.exp(m_s[ty * 16 + tx3] - run[0])
                                l_s[ty * 16 + tx3] = l_s[ty * 16 + tx3] * T.exp(m_s[ty * 16 + tx3] - run[0]) + run[1]
                                m_s[ty * 16 + tx3] = run[0]
                        for tx4 in lanes():
                            for ot in T.serial(DVT):
                                for r in T.serial(ACC):
                                    row, col = T.meta_var(elem(tx4, r))
                                    O_w[ot, tx4, r] = O_w[ot, tx4, r] * a_s[ty * 16 + row]
                        for ks in T.serial(LT):
                            for ax0, ax1 in T.grid(16, 16):
                                with T.sblock("p_fragment"):
                                    vty, vks = T.axis.remap("SS", [ty, ks])
                                    v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                    lane, reg = T.meta_var(opl(v0, v1))
                                    P_w[vks, lane, reg] = P_s[vty * 16 + v0, vks * 16 + v1]
                        for ot in T.serial(DVT):
                            for ks in T.serial(LT):
                                for ax0, ax1 in T.grid(16, 16):
                                    with T.sblock("v_fragment"):
                                        vot, vks = T.axis.remap("SS", [ot, ks])
                                        v0, v1 = T.axis.remap("SS", [ax0, ax1])
                                        lane, reg = T.meta_var(opl(v0, v1))
                                        V_w[lane, reg] = Vt_s[vot * 16 + v0, vks * 16 + v1]
                                for i0, j0, r0 in T.grid(16, 16, 16):
                                    with T.sblock("o_mma"):
                                        vot = T.axis.spatial(DVT, ot)
                                        vks = T.axis.reduce(LT, ks)
                                        vi, vj, vk = T.axis.remap("SSR", [i0, j0, r0])
                                        lane_c, reg_c = T.meta_var(accl(vi, vj))
                                        lane_a, reg_a = T.meta_var(opl(vi, vk))
                                        lane_b, reg_b = T.meta_var(opl(vj, vk))
                                        O_w[vot, lane_c, reg_c] = O_w[vot, lane_c, reg_c] + T.Cast(
                                            acc_t, P_w[vks, lane_a, reg_a]) * T.Cast(acc_t, V_w[lane_b, reg_b])
                    for tx5 in lanes():
                        for ot in T.serial(DVT):
                            for r in T.serial(ACC):
                                row, col = T.meta_var(elem(tx5, r))
                                if bx % RT * R + ty * 16 + row < ROWS:
                                    out[(bx // RT * ROWS + bx % RT * R + ty * 16 + row) * DV + ot * 16 + col] = T.Cast(
                                        shape.out_dtype, O_w[ot, tx5, r] / l_s[ty * 16 + row])

    useful = shape.batch * shape.kv_heads * shape.rows * shape.kv_len * (shape.head_dim + shape.v_dim)
    func = prefill.with_attr(USEFUL_MACS_ATTR, tirx.IntImm("int64", useful)).without_attr("global_symbol")
    if not device:
        return func
    sch = s_tir.Schedule(func)
    # rows of 16-bit elements padded by 16 bytes (ldmatrix reads 16-byte rows; a row of 64 or 128
    # elements would put the 8 rows one ldmatrix reads in the same banks), the float32 scores' by a bank
    for name, offset in (("q_copy", PAD), ("k_copy", PAD), ("v_copy", PAD), ("p_store", PAD)):
        sch.storage_align(sch.get_sblock(name), 0, axis=0, factor=32, offset=offset)
    for name, intrinsic, depth in FRAGMENT_STEPS:
        block = sch.get_sblock(name)
        sch.tensorize(sch.get_loops(block)[-depth], getattr(group, intrinsic))
    # (the store's block is the tensorized one: aligned after, or its annotation would go with the loops)
    sch.storage_align(sch.get_sblock("s_store_o"), 0, axis=0, factor=32, offset=1)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)
