"""What the tensor-core intrinsics compute, for tensorization to match: the descriptions shared by every
instruction family, and the one implementation they share (the accumulators' store, plain stores of each
lane's registers) (:mod:`explorer.tvm.schedules.mma_intrinsics`, :mod:`explorer.tvm.schedules.mfma_intrinsics`).

A family is its ``lanes`` (a 32-thread warp, a 64-lane wavefront), the depth ``k`` of one call and where
each element of a ``[16, k]`` operand tile and of the 16 x 16 accumulator tile lies: ``layout(i, j) ->
(lane, register)``. The fragments are ``[lanes, 16 * k / lanes]`` (operands) and ``[lanes, 256 / lanes]``
(accumulators) buffers of ``warp`` scope; operands and accumulators are offset by a whole tile.
"""

from __future__ import annotations

from tvm.script import tirx as T
from tvm.tirx import Cast, IntImm


def load(k: int, dtype: str, lanes: int, layout):
    """A ``[16, k]`` operand tile from shared memory into the fragment."""
    per_lane = 16 * k // lanes

    @T.prim_func(s_tir=True)
    def desc(warp_handle: T.handle, shared_handle: T.handle) -> None:
        shared = T.match_buffer(shared_handle, (16, k), dtype, align=64, offset_factor=k, scope="shared")
        warp = T.match_buffer(warp_handle, (lanes, per_lane), dtype, align=64, offset_factor=k, scope="warp")
        with T.sblock("root"):
            T.reads(shared[0:16, 0:k])
            T.writes(warp[0:lanes, 0:per_lane])
            for ax0, ax1 in T.grid(16, k):
                with T.sblock("shared_warp"):
                    v0, v1 = T.axis.remap("SS", [ax0, ax1])
                    T.reads(shared[v0, v1])
                    lane, reg = T.meta_var(layout(v0, v1))
                    T.writes(warp[lane, reg])
                    warp[lane, reg] = shared[v0, v1]

    return desc


def multiply_add(k: int, in_dtype: str, acc_dtype: str, lanes: int, layout, accumulator_layout):
    """The 16 x 16 accumulator tile += A ``[16, k]`` x B ``[16, k]``^T, operands widened to the accumulator's type."""
    per_lane, acc_per_lane = 16 * k // lanes, 256 // lanes

    def widen(v):
        return Cast(acc_dtype, v) if acc_dtype != in_dtype else v

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes, per_lane), in_dtype, align=64, offset_factor=k, scope="warp")
        B = T.match_buffer(b, (lanes, per_lane), in_dtype, align=64, offset_factor=k, scope="warp")
        C = T.match_buffer(c, (lanes, acc_per_lane), acc_dtype, align=64, offset_factor=16, scope="warp")
        with T.sblock("root"):
            T.reads(C[0:lanes, 0:acc_per_lane], A[0:lanes, 0:per_lane], B[0:lanes, 0:per_lane])
            T.writes(C[0:lanes, 0:acc_per_lane])
            for i, j, r in T.grid(16, 16, k):
                with T.sblock("C"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, r])
                    lane_c, reg_c = T.meta_var(accumulator_layout(vi, vj))
                    lane_a, reg_a = T.meta_var(layout(vi, vk))
                    lane_b, reg_b = T.meta_var(layout(vj, vk))
                    T.reads(C[lane_c, reg_c], A[lane_a, reg_a], B[lane_b, reg_b])
                    T.writes(C[lane_c, reg_c])
                    C[lane_c, reg_c] += widen(A[lane_a, reg_a]) * widen(B[lane_b, reg_b])

    return desc


def fill(dtype: str, lanes: int, accumulator_layout):
    """Each lane's accumulators of a 16 x 16 tile set to zero."""
    zero = IntImm("int32", 0).astype(dtype)
    acc_per_lane = 256 // lanes

    @T.prim_func(s_tir=True)
    def desc(a: T.handle) -> None:
        C = T.match_buffer(a, (lanes, acc_per_lane), dtype, scope="warp")
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:lanes, 0:acc_per_lane])
            for i0, i1 in T.grid(16, 16):
                with T.sblock("C_warp"):
                    i, j = T.axis.remap("SS", [i0, i1])
                    lane, reg = T.meta_var(accumulator_layout(i, j))
                    T.reads()
                    T.writes(C[lane, reg])
                    C[lane, reg] = zero

    return desc


def store(dtype: str, lanes: int, accumulator_layout):
    """A 16 x 16 accumulator tile from the fragment into shared memory."""
    acc_per_lane = 256 // lanes

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        C_warp = T.match_buffer(a, (lanes, acc_per_lane), dtype, scope="warp")
        C = T.match_buffer(c, (16, 16), dtype, scope="shared")
        with T.sblock("root"):
            T.reads(C_warp[0:lanes, 0:acc_per_lane])
            T.writes(C[0:16, 0:16])
            for i0, i1 in T.grid(16, 16):
                with T.sblock("C_warp"):
                    v0, v1 = T.axis.remap("SS", [i0, i1])
                    lane, reg = T.meta_var(accumulator_layout(v0, v1))
                    T.reads(C_warp[lane, reg])
                    T.writes(C[v0, v1])
                    C[v0, v1] = C_warp[lane, reg]

    return desc


def store_implementation(dtype: str, lanes: int, accumulator_element):
    """:func:`store` as each lane's plain stores of its registers (``accumulator_element(lane, register)
    -> (row, column)``, the inverse of the family's accumulator layout): no family has a store
    instruction the explorer uses."""
    acc_per_lane = 256 // lanes

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, c: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        C_warp = T.match_buffer(a, (lanes, acc_per_lane), dtype, scope="warp", offset_factor=1)
        C = T.match_buffer(c, (16, 16), dtype, scope="shared", offset_factor=1, strides=[s0, s1])
        with T.sblock("root"):
            T.reads(C_warp[0:lanes, 0:acc_per_lane])
            T.writes(C[0:16, 0:16])
            for tx in T.thread_binding(0, lanes, "threadIdx.x"):
                for reg in T.serial(acc_per_lane):
                    row, col = T.meta_var(accumulator_element(tx, reg))
                    C[row, col] = C_warp[tx, reg]

    return impl
