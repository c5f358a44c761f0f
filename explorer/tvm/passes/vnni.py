"""int8 kernels for CPUs with VNNI (``VPDPBUSD``: u8 x s8 products summed by fours into s32 lanes).

The tensor intrinsic :data:`VNNI_INTRIN` computes ``C[i] += sum_k A[k] * B[i, k]`` for 16 output
lanes ``i`` and 4 reduction steps ``k``, with ``A`` unsigned and ``B`` signed. The int8 kernels of
:mod:`explorer.tvm.passes.precision` are s8 x s8, so :func:`vnni_int8_kernels` rewrites every int8
``conv2d``/``matmul`` with a constant weight (before ``LegalizeOps``) into a kernel of our own:

- activations are shifted into u8 (``x + 128``, an element-wise step that fusion puts in the
  producer's epilogue, added before the cast where the activation is quantized here) and the shift's
  contribution, ``128 * sum(w)`` per output channel, is a constant subtracted in the kernel's epilogue
  (convolution borders are padded with 128, the shifted zero, so the correction holds everywhere);
- the kernel is the shared shape of :mod:`explorer.tvm.passes.dot_kernels`: weights packed as
  ``[N/16, K/4, 16, 4]`` or ``[OC/16, KH, KW, IC/4, 16, 4]``, output channels innermost in blocks of 16,
  convolution inputs read from a padded channels-last copy.

Depthwise and grouped convolutions (no reduction over 16x4 blocks), and kernels with so few channels
that whole blocks would do more than :data:`~explorer.tvm.passes.dot_kernels.MAX_PADDED_WORK` times
their work, keep the s8 x s8 kernels.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.script import tirx as T

from explorer.tvm.passes import dot_kernels
from explorer.tvm.passes.dot_kernels import DotInstruction, DotRewriter, llvm_target_has
from explorer.tvm.passes.rewriting import rewritten

#: TVM's name of the VPDPBUSD tensor intrinsic (its implementation replaced: :func:`register_vnni_intrinsic`).
VNNI_INTRIN = "dot_16x4_vnni"
#: The u8 value of an s8 zero once shifted.
SHIFT = 128
GROUP = 4
#: The instruction as the shared kernels of :mod:`explorer.tvm.passes.dot_kernels` use it.
VNNI = DotInstruction("vnni", VNNI_INTRIN, GROUP, operand="uint8", weight="int8", accumulator="int32", pad=SHIFT)


def has_vnni(target: tvm.target.Target) -> bool:
    """Whether an llvm target has ``avx512vnni`` (the 512-bit VPDPBUSD that the intrinsic emits)."""
    return llvm_target_has(target, "avx512vnni")


@T.prim_func(s_tir=True)
def _dot_16x4_desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _dot_16x4_vpdpbusd(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"), a, B.vload([0, 0], dtype="int8x64"), dtype="int32x16")


def register_vnni_intrinsic() -> str:
    """Make :data:`VNNI_INTRIN` emit a call this LLVM accepts, and return its name.

    TVM registers ``dot_16x4_vnni`` in ``tvm.s_tir.tensor_intrin.x86`` with the operands passed as
    ``<16 x i32>``; the LLVM of the pinned wheel (22) declares ``llvm.x86.avx512.vpdpbusd.512`` on
    ``<64 x i8>`` operands and rejects that call, so every kernel tensorized with it, ours and
    MetaSchedule's (whose x86 rules tensorize with it on VNNI targets), would fail to build. This loads
    TVM's ``x86.py`` alone (the whole ``tvm.s_tir.tensor_intrin`` package takes about 20 s, for its
    CUDA intrinsics; registered under its package name, it is not run again when the package is
    imported) and replaces the implementation under the same name."""
    global _overridden
    if not _overridden:
        name = "tvm.s_tir.tensor_intrin.x86"
        if name not in sys.modules:
            from tvm import s_tir

            path = Path(s_tir.__file__).parent / "tensor_intrin" / "x86.py"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        from tvm import s_tir

        s_tir.TensorIntrin.register(VNNI_INTRIN, _dot_16x4_desc, _dot_16x4_vpdpbusd, override=True)
        _overridden = True
    return VNNI_INTRIN


_overridden = False


def pack_matmul_weight(w: np.ndarray) -> np.ndarray:
    """``[K, N]`` int8 -> ``[N/16, K/4, 16, 4]`` (zero-padded): ``P[no, ko, ni, ki] = W[4ko+ki, 16no+ni]``."""
    return dot_kernels.pack_matmul_weight(w, GROUP)


def pack_conv_weight(w_oihw: np.ndarray) -> np.ndarray:
    """``[OC, IC, KH, KW]`` int8 -> ``[OC/16, KH, KW, IC/4, 16, 4]`` (zero-padded)."""
    return dot_kernels.pack_conv_weight(w_oihw, GROUP)


def shift_correction(w: np.ndarray, out_axis: int) -> np.ndarray:
    """``128 * sum(w)`` over everything but the output-channel axis, as int32."""
    others = tuple(i for i in range(w.ndim) if i != out_axis % w.ndim)
    return (SHIFT * w.astype(np.int64).sum(axis=others)).astype(np.int32)


def padded_work(outputs: int, reduction: int) -> float:
    """The MACs of a kernel with ``outputs`` channels and ``reduction`` channels, padded to whole
    16 x 4 blocks, over its real MACs."""
    return dot_kernels.padded_work(outputs, reduction, GROUP)


class _VnniOperands:
    """s8 x s8 kernels into int32 with a constant weight, for :class:`~explorer.tvm.passes.dot_kernels.DotRewriter`."""

    instruction = VNNI
    packs_activations = False  # the int8 precision quantizes matmuls with a constant weight only

    def takes(self, call, data, weight) -> bool:
        return weight.ty.dtype == "int8" and data.ty.dtype == "int8" and str(call.ty.dtype) == "int32"

    def operand(self, mutator, data) -> relax.Var:
        """``data + 128`` as u8. Where ``data`` is this project's quantization (a float cast to int8),
        the shift is added before that cast instead, so the kernel still casts each element once."""
        bound = mutator.lookup_binding(data) if isinstance(data, relax.Var) else None
        emit = mutator.builder_.emit
        if (isinstance(bound, relax.Call) and isinstance(bound.op, tvm.ir.Op) and bound.op.name == "relax.astype"
                and bound.args[0].ty.dtype == "float32"):
            shifted = emit(relax.op.add(bound.args[0], relax.const(float(SHIFT), "float32")))
        else:
            wide = emit(relax.op.astype(data, "int16"))
            shifted = emit(relax.op.add(wide, relax.const(SHIFT, "int16")))
        return emit(relax.op.astype(shifted, "uint8"))

    def weight_bits(self, w: np.ndarray) -> np.ndarray:
        return w

    def finish(self, w: np.ndarray | None, out_axis: int):
        return [shift_correction(w, out_axis)], lambda corr: (lambda acc, c: acc - corr[c])


def vnni_int8_kernels() -> tvm.transform.Pass:
    """The Relax pass of the module docstring."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.VnniInt8Kernels")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewritten(DotRewriter(mod, _VnniOperands()), mod)

    return apply
