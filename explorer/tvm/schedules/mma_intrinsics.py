"""The warp-level ``mma.sync`` intrinsics that :class:`~explorer.tvm.schedules.tensor_core_matmul.TensorCoreMatmul`
tensorizes with, one group per operand type, registered the first time a kernel needs them.

They are TVM's own ``ldmatrix`` / ``mma`` / fill / store intrinsics (``tvm/s_tir/tensor_intrin/cuda.py``,
Apache-2.0), reduced to the one layout the rule uses: A ``[M, K]`` and B ``[N, K]`` (a matmul normalized to
``C[S, I, J] += A[S, I, K] * B[S, J, K]``) in static shared memory, the 16 x 16 accumulator tile stored
element by element into shared memory, where the fused epilogue reads it. They are written here rather
than imported because

- importing ``tvm.s_tir.tensor_intrin`` parses and registers every target's intrinsics, some 15-25 s in
  every compile worker; the few a kernel needs parse in well under a second;
- TVM registers no bfloat16 group, although PTX has ``mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32``
  (sm_80 on) and TVM's PTX code generator emits it. ``ldmatrix`` moves 16-bit words whatever they mean and
  the m16n8k16 fragment layouts of f16 and bf16 are the same (PTX ISA, "Matrix Fragments for
  mma.m16n8k16 with floating point type"), so the bf16 group is the f16 one with its element type.

They register tensor intrinsics and nothing else: ``tensor_intrin/cuda.py`` registers the global function
``tirx.index_map.shared_16x16_to_ldmatrix_32x8_layout`` (read only by the code generator of the
``mma_store`` builtin, which the store here does not use) without ``override``, and MetaSchedule imports
that module, so a global of the same name registered first makes every later tuning run fail.

TVM's TIRx tile primitives (``tvm.backend.cuda.tile_primitive.gemm``) also emit bf16 ``mma.sync``, but
they lower whole-tile ``gemm`` calls of kernels written in TIRx with explicit layouts; the kernels here
are legalized Relax operators that ``s_tir`` schedules, which tensorize against intrinsics like these.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from tvm.runtime import convert
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from explorer.tvm.schedules import fragment_descriptions as descriptions

#: Rows and columns of the accumulator tile of one intrinsic call (two m16n8 ``mma`` instructions).
TILE_M = TILE_N = 16

#: Threads of a warp.
WARP = 32


@dataclasses.dataclass(frozen=True)
class MmaGroup:
    """The intrinsics that tensorize one tile of a matmul: operand loads, the multiply-add, the
    accumulator's initialisation and its store; ``k`` is the reduction depth of one call, ``lanes`` the
    threads that issue it together (a warp, or a CDNA wavefront), and the layouts map an element of a
    ``[16, k]`` operand tile or of the 16 x 16 accumulator tile to its (lane, register) and back."""

    k: int
    load_a: str
    load_b: str
    compute: str
    init: str
    store: str
    in_dtype: str
    acc_dtype: str
    lanes: int
    operand_layout: Callable
    accumulator_layout: Callable
    accumulator_element: Callable   # the inverse of accumulator_layout: (lane, register) -> (row, column)


#: (operand dtype, accumulator dtype) -> (K of one instruction, PTX type, lowest sm).
SUPPORTED = {
    ("float16", "float32"): (16, "fp16", 75),
    ("float16", "float16"): (16, "fp16", 75),
    ("bfloat16", "float32"): (16, "bf16", 80),
    ("int8", "int32"): (32, "int8", 75),
    ("float8_e4m3fn", "float32"): (32, "e4m3", 89),
    ("float8_e5m2", "float32"): (32, "e5m2", 89),
}

_PTX_ACC = {"float32": "fp32", "float16": "fp16", "int32": "int32"}


def layout_16x16(i, j):
    """(lane, register) of element ``(i, j)`` of a 16 x 16 tile of 16-bit elements (or accumulators)."""
    return 4 * (i % 8) + (j % 8) // 2, 4 * (j // 8) + (i // 8) * 2 + (j % 2)


def layout_16x32(i, j):
    """(lane, register) of element ``(i, j)`` of a 16 x 32 tile of 8-bit elements."""
    return 4 * (i % 8) + (j % 16) // 4, 8 * (j // 16) + (i // 8) * 4 + j % 4


def _tile_of_lane(lane, register):
    """The inverse of :func:`layout_16x16`: (row, column) of a lane's accumulator register."""
    return 8 * (register % 4 // 2) + (lane // 4), 8 * (register // 4) + (lane % 4) * 2 + (register % 2)


def operand_layout(k: int):
    """The fragment layout of a ``[16, k]`` operand tile (``k`` 16 for 16-bit, 32 for 8-bit types)."""
    return layout_16x16 if k == 16 else layout_16x32


def _ldmatrix(k: int, dtype: str, matrix: str):
    """``ldmatrix`` of a ``[16, k]`` tile of A (``[M, K]``) or of B stored ``[N, K]``, four 8 x 8 matrices
    of 16-bit words into the warp's registers."""
    local = TILE_M * k // WARP
    layout = operand_layout(k)
    half = convert(WARP // 2)
    if matrix == "A":
        offset = (lambda tx, stride: stride * (tx % half) + 8 * (tx // half)) if k == 16 else \
                 (lambda tx, stride: stride * (tx % 16) + 16 * (tx // 16))
    else:
        offset = (lambda tx, stride: stride * 8 * (tx // half) + stride * (tx % 8) + 8 * ((tx % half) // 8)) \
            if k == 16 else (lambda tx, stride: stride * 8 * (tx // half) + (tx % 8) * stride + 16 * ((tx % half) // 8))

    desc = descriptions.load(k, dtype, WARP, layout)

    @T.prim_func(s_tir=True)
    def impl(warp_handle: T.handle, shared_handle: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        shared = T.match_buffer(shared_handle, (16, k), dtype, align=64, offset_factor=k, scope="shared",
                                strides=[s0, s1])
        warp = T.match_buffer(warp_handle, (WARP, local), dtype, align=64, offset_factor=k, scope="warp")
        with T.sblock("root"):
            T.reads(shared[0:16, 0:k])
            T.writes(warp[0:WARP, 0:local])
            for tx in T.thread_binding(0, WARP, "threadIdx.x"):
                T.evaluate(T.ptx_legacy.ldmatrix(False, 4, ".b16", warp.data, warp.elem_offset + convert(local) * tx,
                                                 shared.access_ptr("r"), offset(tx, s0), dtype=dtype))

    return desc, impl


def _mma(k: int, in_dtype: str, acc_dtype: str, ptx_type: str):
    """Two m16n8k``k`` ``mma.sync`` of a warp: a 16 x 16 accumulator tile += A ``[16, k]`` x B ``[16, k]``^T."""
    local = TILE_M * k // WARP
    local_out = TILE_M * TILE_N // WARP
    layout = operand_layout(k)
    shape, ptx_acc = f"m16n8k{k}", _PTX_ACC[acc_dtype]

    desc = descriptions.multiply_add(k, in_dtype, acc_dtype, WARP, layout, layout_16x16)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (WARP, local), in_dtype, align=64, offset_factor=k, scope="warp")
        B = T.match_buffer(b, (WARP, local), in_dtype, align=64, offset_factor=k, scope="warp")
        C = T.match_buffer(c, (WARP, local_out), acc_dtype, align=64, offset_factor=16, scope="warp")
        with T.sblock("root"):
            T.reads(C[0:WARP, 0:local_out], A[0:WARP, 0:local], B[0:WARP, 0:local])
            T.writes(C[0:WARP, 0:local_out])
            for tx in T.thread_binding(0, WARP, "threadIdx.x"):
                T.evaluate(T.ptx_legacy.mma(shape, "row", "col", ptx_type, ptx_type, ptx_acc,
                                            A.data, A.elem_offset + tx * convert(local),
                                            B.data, B.elem_offset + tx * convert(local),
                                            C.data, C.elem_offset + tx * convert(local_out), False, dtype=acc_dtype))
                T.evaluate(T.ptx_legacy.mma(shape, "row", "col", ptx_type, ptx_type, ptx_acc,
                                            A.data, A.elem_offset + tx * convert(local),
                                            B.data, B.elem_offset + tx * convert(local) + convert(local) // 2,
                                            C.data, C.elem_offset + tx * convert(local_out) + convert(local_out) // 2,
                                            False, dtype=acc_dtype))

    return desc, impl


def _fill(dtype: str):
    """Each lane's 8 accumulators of a 16 x 16 tile set to zero."""

    desc = descriptions.fill(dtype, WARP, layout_16x16)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle) -> None:
        C = T.match_buffer(a, [WARP, 8], dtype=dtype, scope="warp", offset_factor=1)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:WARP, 0:8])
            for tx in T.thread_binding(0, WARP, "threadIdx.x"):
                T.evaluate(T.cuda.mma_fill_legacy(8, C.data, C.elem_offset, dtype=dtype))

    return desc, impl


def _store(dtype: str):
    """A 16 x 16 accumulator tile from the warp's registers into shared memory, element by element."""
    return (descriptions.store(dtype, WARP, layout_16x16),
            descriptions.store_implementation(dtype, WARP, _tile_of_lane))


def register(name: str, make, *args) -> str:
    """Register the intrinsic ``name`` made by ``make(*args)`` unless it is registered; its name."""
    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, *make(*args))
    return name


@functools.cache
def mma_group(in_dtype: str, acc_dtype: str) -> MmaGroup | None:
    """The intrinsics for ``in_dtype`` operands accumulated in ``acc_dtype``, registered on first use
    (``None`` where no ``mma`` instruction takes them)."""
    if (in_dtype, acc_dtype) not in SUPPORTED:
        return None
    k, ptx_type, _ = SUPPORTED[(in_dtype, acc_dtype)]
    prefix = f"explorer_mma_{ptx_type}"
    return MmaGroup(
        k=k,
        load_a=register(f"{prefix}_ldmatrix_a", _ldmatrix, k, in_dtype, "A"),
        load_b=register(f"{prefix}_ldmatrix_b_nk", _ldmatrix, k, in_dtype, "B"),
        compute=register(f"{prefix}_{_PTX_ACC[acc_dtype]}_mma_nt", _mma, k, in_dtype, acc_dtype, ptx_type),
        init=register(f"explorer_mma_fill_{acc_dtype}", _fill, acc_dtype),
        store=register(f"explorer_mma_store_{acc_dtype}_shared", _store, acc_dtype),
        in_dtype=in_dtype, acc_dtype=acc_dtype, lanes=WARP, operand_layout=operand_layout(k),
        accumulator_layout=layout_16x16, accumulator_element=_tile_of_lane)


def lowest_sm(in_dtype: str, acc_dtype: str) -> int:
    """The lowest compute capability whose tensor cores take these operand and accumulator types."""
    return SUPPORTED[(in_dtype, acc_dtype)][2]
