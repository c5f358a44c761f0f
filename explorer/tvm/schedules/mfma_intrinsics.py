"""The wavefront-level MFMA intrinsics of AMD's CDNA 3 matrix cores (MI300X, ``gfx942``) that
:class:`~explorer.tvm.schedules.tensor_core_matmul.TensorCoreMatmul` tensorizes with on ROCm, one group
per operand type, registered the first time a kernel needs them.

One call is one ``v_mfma_*_16x16x{k}`` instruction of a 64-lane wavefront: a 16 x 16 accumulator tile
(four registers a lane) += A ``[16, k]`` x B ``[16, k]``^T. The operand layouts are AMD's (CDNA 3 ISA,
"Matrix fused multiply-add (MFMA)" operand layouts, the same as TVM's own ``tensor_intrin/rocm.py``): lane
``i + 16 * (c // per_lane)`` holds row ``i``, elements ``c`` of a run of ``per_lane = k / 4`` along K; the
accumulator's lane ``j + 16 * (i // 4)`` holds row ``i``'s register ``i % 4`` of column ``j``. Both
operands are read ``[rows, K]`` (B as ``[N, K]``), so A's layout serves both.

They are written here rather than taken from ``tvm.s_tir.tensor_intrin.rocm`` because

- that module's int8 instruction, ``v_mfma_i32_16x16x16i8``, is one CDNA 3 removed (gfx940 on take
  ``v_mfma_i32_16x16x32_i8``, two 64-bit operands a lane), and it registers no bfloat16 group, which
  CDNA 3 runs as ``v_mfma_f32_16x16x16bf16_1k`` (LLVM's operands: ``<4 x i16>``);
- its B operand is ``[K, N]``, where the rule normalizes every matmul to B ``[N, K]``;
- importing ``tvm.s_tir.tensor_intrin`` parses every target's intrinsics (15-25 s a compile worker).

float8 stays on the vector ALUs: CDNA 3's fp8 MFMA takes the FNUZ encodings (``float8_e4m3fnuz``), not
the OCP ``float8_e4m3fn`` the fp8 strategy quantizes to, and TVM 0.27's AMDGPU code generator has no
float8 type (the rocm lowering computes float8 as integers, :mod:`explorer.tvm.passes.scalar_float8`).
"""

from __future__ import annotations

import functools

from tvm.script import tirx as T
from tvm.tirx import Cast, IntImm

from explorer.tvm.schedules import fragment_descriptions as descriptions
from explorer.tvm.schedules.mma_intrinsics import MmaGroup, register

#: Lanes of a CDNA wavefront.
WAVE = 64

#: The CDNA 3 processors (``mcpu``) whose matrix cores take the instructions here.
CDNA3 = ("gfx940", "gfx941", "gfx942", "gfx950")

#: (operand dtype, accumulator dtype) -> (K of one instruction, LLVM intrinsic, the operand as LLVM takes
#: it: "" as it is, a type its lanes are reinterpreted as, or ``bf16-bits``: bfloat16 lanes as ``<4 x i16>``).
SUPPORTED = {
    ("float16", "float32"): (16, "llvm.amdgcn.mfma.f32.16x16x16f16", ""),
    ("bfloat16", "float32"): (16, "llvm.amdgcn.mfma.f32.16x16x16bf16.1k", "bf16-bits"),
    ("int8", "int32"): (32, "llvm.amdgcn.mfma.i32.16x16x32.i8", "int64"),
}

#: Accumulator registers of a lane: a 16 x 16 tile over 64 lanes.
ACC_PER_LANE = 16 * 16 // WAVE


def operand_layout(k: int):
    """(lane, register) of element ``(i, c)`` of a ``[16, k]`` operand tile."""
    per_lane = k * 16 // WAVE
    return lambda i, c: (i + 16 * (c // per_lane), c % per_lane)


def accumulator_layout(i, j):
    """(lane, register) of element ``(i, j)`` of the 16 x 16 accumulator tile."""
    return j + 16 * (i // 4), i % 4


def _tile_of_lane(lane, register):
    """The inverse of :func:`accumulator_layout`: (row, column) of a lane's accumulator register."""
    return 4 * (lane // 16) + register, lane % 16


def _load(k: int, dtype: str):
    """A ``[16, k]`` operand tile from shared memory into the wavefront's registers, a lane its run."""
    per_lane = k * 16 // WAVE
    layout = operand_layout(k)

    desc = descriptions.load(k, dtype, WAVE, layout)

    @T.prim_func(s_tir=True)
    def impl(reg_handle: T.handle, shared_handle: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        shared = T.match_buffer(shared_handle, (16, k), dtype, align=64, offset_factor=k, scope="shared", strides=[s0, s1])
        reg = T.match_buffer(reg_handle, (WAVE, per_lane), dtype, align=64, offset_factor=k, scope="warp")
        with T.sblock("root"):
            T.reads(shared[0:16, 0:k])
            T.writes(reg[0:WAVE, 0:per_lane])
            for tx in T.thread_binding(0, WAVE, "threadIdx.x"):
                for r in T.serial(per_lane):
                    reg[tx, r] = shared[tx % 16, per_lane * (tx // 16) + r]

    return desc, impl


def _mfma(k: int, in_dtype: str, acc_dtype: str, intrinsic: str, operand: str):
    """One ``v_mfma`` of the wavefront: a 16 x 16 accumulator tile += A ``[16, k]`` x B ``[16, k]``^T."""
    per_lane = k * 16 // WAVE
    layout = operand_layout(k)

    def as_llvm(v):
        if operand == "bf16-bits":
            # TVM promotes a kernel's own bfloat16 buffers to float32 before code generation (its
            # BF16ComputeLegalize): the fragment holds each value exactly as a float32, whose high 16
            # bits (the odd 16-bit halves, little-endian) are the bfloat16 the instruction takes
            halves = T.reinterpret(f"int16x{2 * per_lane}", Cast(f"float32x{per_lane}", v))
            return T.Shuffle([halves], [2 * i + 1 for i in range(per_lane)])
        return T.reinterpret(operand, v) if operand else v

    desc = descriptions.multiply_add(k, in_dtype, acc_dtype, WAVE, layout, accumulator_layout)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (WAVE, per_lane), in_dtype, align=64, offset_factor=k, scope="warp")
        B = T.match_buffer(b, (WAVE, per_lane), in_dtype, align=64, offset_factor=k, scope="warp")
        C = T.match_buffer(c, (WAVE, ACC_PER_LANE), acc_dtype, align=64, offset_factor=16, scope="warp")
        with T.sblock("root"):
            T.reads(C[0:WAVE, 0:ACC_PER_LANE], A[0:WAVE, 0:per_lane], B[0:WAVE, 0:per_lane])
            T.writes(C[0:WAVE, 0:ACC_PER_LANE])
            for tx in T.thread_binding(0, WAVE, "threadIdx.x"):
                C[tx, T.ramp(0, 1, ACC_PER_LANE)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(intrinsic),
                    as_llvm(A[tx, T.ramp(0, 1, per_lane)]), as_llvm(B[tx, T.ramp(0, 1, per_lane)]),
                    C[tx, T.ramp(0, 1, ACC_PER_LANE)], T.int32(0), T.int32(0), T.int32(0),
                    dtype=f"{acc_dtype}x{ACC_PER_LANE}")

    return desc, impl


def _fill(dtype: str):
    """Each lane's accumulators of a 16 x 16 tile set to zero."""
    zero = IntImm("int32", 0).astype(dtype)

    desc = descriptions.fill(dtype, WAVE, accumulator_layout)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle) -> None:
        C = T.match_buffer(a, (WAVE, ACC_PER_LANE), dtype, scope="warp", offset_factor=1)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:WAVE, 0:ACC_PER_LANE])
            for tx in T.thread_binding(0, WAVE, "threadIdx.x"):
                for r in T.serial(ACC_PER_LANE):
                    C[tx, r] = zero

    return desc, impl


def _store(dtype: str):
    """A 16 x 16 accumulator tile from the wavefront's registers into shared memory, element by element."""
    return (descriptions.store(dtype, WAVE, accumulator_layout),
            descriptions.store_implementation(dtype, WAVE, _tile_of_lane))


@functools.cache
def mfma_group(in_dtype: str, acc_dtype: str) -> MmaGroup | None:
    """The intrinsics for ``in_dtype`` operands accumulated in ``acc_dtype``, registered on first use
    (``None`` where no CDNA 3 MFMA instruction takes them)."""
    if (in_dtype, acc_dtype) not in SUPPORTED:
        return None
    k, intrinsic, operand = SUPPORTED[(in_dtype, acc_dtype)]
    prefix = f"explorer_mfma_{in_dtype}"
    return MmaGroup(
        k=k,
        load_a=register(f"{prefix}_load_16x{k}", _load, k, in_dtype),
        load_b=register(f"{prefix}_load_16x{k}", _load, k, in_dtype),
        compute=register(f"{prefix}_{acc_dtype}_mfma_16x16x{k}_nt", _mfma, k, in_dtype, acc_dtype, intrinsic, operand),
        init=register(f"explorer_mfma_fill_{acc_dtype}", _fill, acc_dtype),
        store=register(f"explorer_mfma_store_{acc_dtype}_shared", _store, acc_dtype),
        in_dtype=in_dtype, acc_dtype=acc_dtype, lanes=WAVE, operand_layout=operand_layout(k),
        accumulator_layout=accumulator_layout, accumulator_element=_tile_of_lane)


def is_cdna3(mcpu: str) -> bool:
    """Whether ``mcpu`` names a CDNA 3 processor, whose matrix cores the groups here use."""
    return str(mcpu) in CDNA3

