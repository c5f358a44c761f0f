"""bfloat16 kernels for CPUs with AVX512-BF16 (``VDPBF16PS``: bf16 pairs multiplied and summed into fp32 lanes).

A bf16 build (:mod:`explorer.tvm.passes.precision`) casts a ``conv2d``'s or ``matmul``'s operands to
bfloat16 and accumulates in float32. TVM legalizes bf16 arithmetic to fp32, so without this module
every operand is widened for an fp32 FMA and the build is slower than fp32 itself.
:func:`bf16_dot_kernels` rewrites each such kernel with a constant weight into the shared shape of
:mod:`explorer.tvm.passes.dot_kernels` for ``VDPBF16PS`` (weights packed as ``[N/16, K/2, 16, 2]`` or
``[OC/16, KH, KW, IC/2, 16, 2]``, 16 output channels of fp32 innermost), which the default schedule
tensorizes with :data:`BF16_INTRIN`.

TVM 0.27 cannot pass a bf16 vector to an LLVM intrinsic: LLVM 22 declares
``llvm.x86.avx512bf16.dpbf16ps.512`` on ``<32 x bfloat>`` operands, TVM's ``BF16ComputeLegalize``
promotes every bfloat16 operand of a call to float32, an ``int16x32`` argument fails LLVM's verifier
(TVM does not bitcast intrinsic arguments), and TVM's LLVM code generator maps no bfloat16 vector type.
So the kernels hold bf16 values as their bits (``uint16``: the activation reinterpreted in the padded
copy, the weights packed as bits), and the intrinsic's implementation calls :data:`EXTERN`, a
three-line LLVM function (:data:`LLVM_IR`) that bitcasts its operands and calls the instruction. The
schedule links it into each kernel's module (TVM's ``pragma_import_llvm``) and LLVM inlines it, so the
built code is one ``vdpbf16ps`` per 32 multiply-adds. The products are exact in fp32 and summed in fp32,
as the fp32-widened bf16 build sums them (in another order).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import tirx as T

from explorer.tvm.passes.dot_kernels import DotInstruction, DotRewriter, llvm_target_has
from explorer.tvm.passes.rewriting import rewritten

#: The tensor intrinsic's name.
BF16_INTRIN = "explorer_dpbf16ps_16x2"
#: The LLVM function its implementation calls.
EXTERN = "explorer_dpbf16ps_512"
#: That function, linked into every kernel that calls it (``linkonce_odr``: once per module) and inlined.
LLVM_IR = f"""
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
define linkonce_odr <16 x float> @{EXTERN}(<16 x float> %acc, <16 x i32> %a, <32 x i16> %b) alwaysinline {{
  %av = bitcast <16 x i32> %a to <32 x bfloat>
  %bv = bitcast <32 x i16> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %av, <32 x bfloat> %bv)
  ret <16 x float> %r
}}
"""
GROUP = 2
#: The instruction as the shared kernels of :mod:`explorer.tvm.passes.dot_kernels` use it.
BF16_DOT = DotInstruction("bf16_dot", BF16_INTRIN, GROUP, operand="uint16", weight="uint16", accumulator="float32",
                          pad=0, multiplied_as="bfloat16", llvm_ir=LLVM_IR)


def has_avx512_bf16(target: tvm.target.Target) -> bool:
    """Whether an llvm target has ``avx512bf16`` (the 512-bit VDPBF16PS that the intrinsic emits)."""
    return llvm_target_has(target, "avx512bf16")


@T.prim_func(s_tir=True)
def _dot_16x2_desc(
    A: T.Buffer((2,), "uint16", offset_factor=1),
    B: T.Buffer((16, 2), "uint16", offset_factor=1),
    C: T.Buffer((16,), "float32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:2], B[0:16, 0:2])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 2):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(T.reinterpret("bfloat16", A[vk]), "float32") * T.cast(
                        T.reinterpret("bfloat16", B[vi, vk]), "float32")


@T.prim_func(s_tir=True)
def _dot_16x2_vdpbf16ps(
    A: T.Buffer((2,), "uint16", offset_factor=1),
    B: T.Buffer((16, 2), "uint16", offset_factor=1),
    C: T.Buffer((16,), "float32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:2], B[0:16, 0:2])
        T.writes(C[0:16])
        a = T.broadcast(T.reinterpret(A.vload([0], "uint16x2"), dtype="int32"), 16)
        C[T.ramp(T.int32(0), 1, 16)] = T.call_pure_extern(
            "float32x16", EXTERN, C.vload([0], dtype="float32x16"), a, B.vload([0, 0], dtype="uint16x32"))


def register_bf16_intrinsic() -> str:
    """Register :data:`BF16_INTRIN` (once) and return its name."""
    from tvm import s_tir

    global _registered
    if not _registered:
        s_tir.TensorIntrin.register(BF16_INTRIN, _dot_16x2_desc, _dot_16x2_vdpbf16ps, override=True)
        _registered = True
    return BF16_INTRIN


_registered = False


class _Bf16Operands:
    """bf16 x bf16 kernels into fp32 with a constant weight, for :class:`~explorer.tvm.passes.dot_kernels.DotRewriter`."""

    instruction = BF16_DOT
    packs_activations = True  # attention's scores and context: bf16 x bf16 with no constant weight

    def takes(self, call, data, weight) -> bool:
        return weight.ty.dtype == "bfloat16" and data.ty.dtype == "bfloat16" and str(call.ty.dtype) == "float32"

    def operand(self, mutator, data):
        return data  # reinterpreted as its bits in the kernel's padded copy

    def weight_bits(self, w: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(w).view(np.uint16)

    def finish(self, w: np.ndarray | None, out_axis: int):
        return [], lambda: (lambda acc, c: acc)


def bf16_dot_kernels() -> tvm.transform.Pass:
    """The Relax pass of the module docstring."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.Bf16DotKernels")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewritten(DotRewriter(mod, _Bf16Operands()), mod)

    return apply
