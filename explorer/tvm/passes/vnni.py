"""int8 kernels for CPUs with VNNI (``VPDPBUSD``: u8 x s8 products summed by fours into s32 lanes).

The tensor intrinsic :data:`VNNI_INTRIN` computes ``C[i] += sum_k A[k] * B[i, k]`` for 16 output
lanes ``i`` and 4 reduction steps ``k``, with ``A`` unsigned and ``B`` signed. The int8 kernels of
:mod:`explorer.tvm.passes.precision` are s8 x s8, so :func:`vnni_int8_kernels` rewrites every int8
``conv2d``/``matmul`` with a constant weight (before ``LegalizeOps``) into a kernel of our own:

- activations are shifted into u8 (``x + 128``, an element-wise step that fusion puts in the
  producer's epilogue, added before the cast where the activation is quantized here) and the shift's contribution, ``128 * sum(w)`` per output channel, is a
  constant subtracted in the kernel (convolution borders are padded with 128, the shifted zero, so
  the correction holds everywhere);
- weights are packed at compile time into the intrinsic's layout, ``[N/16, K/4, 16, 4]`` for a
  matmul and ``[OC/16, KH, KW, IC/4, 16, 4]`` for a convolution (zero-padded to whole blocks);
- the accumulator is computed with the output channels innermost in blocks of 16 (a block annotated
  :data:`VNNI_BLOCK`, which :class:`explorer.tvm.schedules.vnni_reduction.VnniReduction` tensorizes) and then
  written in the graph's layout; convolution inputs are read from a padded channels-last copy
  (``vnni_pad``), where four consecutive input channels are the intrinsic's 4 bytes.

Depthwise and grouped convolutions (no reduction over 16x4 blocks), and kernels with so few channels
that whole blocks would do more than :data:`MAX_PADDED_WORK` times their work, keep the s8 x s8 kernels.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import tvm
from tvm import relax, te
from tvm.ir.expr import Constant
from tvm.script import tirx as T

from explorer.tvm.passes.rewriting import rewritten

#: TVM's name of the VPDPBUSD tensor intrinsic (its implementation replaced: :func:`register_vnni_intrinsic`).
VNNI_INTRIN = "dot_16x4_vnni"
#: The annotation of the accumulator block that the default schedule tensorizes.
VNNI_BLOCK = "explorer.vnni"
#: The u8 value of an s8 zero once shifted.
SHIFT = 128
LANES, GROUP = 16, 4
#: A kernel whose channels padded to whole 16x4 blocks would do more than this many times its MACs
#: keeps the s8 x s8 kernel (8 output channels padded to 16 would double the work).
MAX_PADDED_WORK = 1.5


def has_vnni(target: tvm.target.Target) -> bool:
    """Whether an llvm target has ``avx512vnni`` (the 512-bit VPDPBUSD that the intrinsic emits)."""
    from tvm.target import codegen

    return target.kind.name == "llvm" and bool(codegen.target_has_features("avx512vnni", target))


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


def _blocks(n: int, size: int) -> int:
    return -(-n // size)


def pack_matmul_weight(w: np.ndarray) -> np.ndarray:
    """``[K, N]`` int8 -> ``[N/16, K/4, 16, 4]`` (zero-padded): ``P[no, ko, ni, ki] = W[4ko+ki, 16no+ni]``."""
    k, n = w.shape
    padded = np.zeros((_blocks(k, GROUP) * GROUP, _blocks(n, LANES) * LANES), np.int8)
    padded[:k, :n] = w
    return np.ascontiguousarray(padded.reshape(-1, GROUP, padded.shape[1] // LANES, LANES).transpose(2, 0, 3, 1))


def pack_conv_weight(w_oihw: np.ndarray) -> np.ndarray:
    """``[OC, IC, KH, KW]`` int8 -> ``[OC/16, KH, KW, IC/4, 16, 4]`` (zero-padded)."""
    oc, ic, kh, kw = w_oihw.shape
    padded = np.zeros((_blocks(oc, LANES) * LANES, _blocks(ic, GROUP) * GROUP, kh, kw), np.int8)
    padded[:oc, :ic] = w_oihw
    blocks = padded.reshape(padded.shape[0] // LANES, LANES, padded.shape[1] // GROUP, GROUP, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 4, 5, 2, 1, 3))


def shift_correction(w: np.ndarray, out_axis: int) -> np.ndarray:
    """``128 * sum(w)`` over everything but the output-channel axis, as int32."""
    others = tuple(i for i in range(w.ndim) if i != out_axis % w.ndim)
    return (SHIFT * w.astype(np.int64).sum(axis=others)).astype(np.int32)


def padded_work(outputs: int, reduction: int) -> float:
    """The MACs of a kernel with ``outputs`` channels and ``reduction`` channels, padded to whole
    16 x 4 blocks, over its real MACs."""
    return _blocks(outputs, LANES) * LANES * _blocks(reduction, GROUP) * GROUP / (outputs * reduction)


def _matmul_te(x, wp, corr, k: int, n: int):
    *batch, m, _ = x.shape
    kp = wp.shape[1] * GROUP
    if kp != k:  # padded K: the weights there are zero, any byte will do
        x = te.compute((*batch, m, kp), lambda *i: te.if_then_else(
            i[-1] < k, x[(*i[:-1], i[-1])], tvm.tirx.const(SHIFT, "uint8")), name="vnni_pad")
    ko = te.reduce_axis((0, kp // GROUP), name="ko")
    ki = te.reduce_axis((0, GROUP), name="ki")
    acc = te.compute((*batch, m, wp.shape[0], LANES), lambda *i: te.sum(
        x[(*i[:-2], ko * GROUP + ki)].astype("int32") * wp[i[-2], ko, i[-1], ki].astype("int32"), axis=[ko, ki]),
        name="vnni_acc", attrs={VNNI_BLOCK: 1})
    return te.compute((*batch, m, n), lambda *i: acc[(*i[:-1], i[-1] // LANES, i[-1] % LANES)] - corr[i[-1]],
                      name="vnni_out")


def _conv_te(x, wp, corr, layout: str, oc: int, ic: int, strides, padding, dilation):
    nchw = layout == "NCHW"
    n, h, w = (x.shape[0], x.shape[2], x.shape[3]) if nchw else (x.shape[0], x.shape[1], x.shape[2])
    _, kh, kw, icb, _, _ = wp.shape
    top, left, bottom, right = padding
    (sh, sw), (dh, dw) = strides, dilation
    hp, wpad = h + top + bottom, w + left + right
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wpad - (kw - 1) * dw - 1) // sw + 1

    def padded(b, y, z, c):
        inside = tvm.tirx.all(y >= top, y < top + h, z >= left, z < left + w, c < ic)
        value = x[b, c, y - top, z - left] if nchw else x[b, y - top, z - left, c]
        return te.if_then_else(inside, value, tvm.tirx.const(SHIFT, "uint8"))

    if nchw or any(padding) or icb * GROUP != ic:
        src = te.compute((n, hp, wpad, icb * GROUP), padded, name="vnni_pad")
    else:
        src = x
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rco = te.reduce_axis((0, icb), name="rco")
    rci = te.reduce_axis((0, GROUP), name="rci")
    acc = te.compute((n, oh, ow, wp.shape[0], LANES), lambda b, y, z, co, ci: te.sum(
        src[b, y * sh + ry * dh, z * sw + rx * dw, rco * GROUP + rci].astype("int32")
        * wp[co, ry, rx, rco, ci, rci].astype("int32"), axis=[ry, rx, rco, rci]),
        name="vnni_acc", attrs={VNNI_BLOCK: 1})
    if nchw:
        return te.compute((n, oc, oh, ow), lambda b, c, y, z: acc[b, y, z, c // LANES, c % LANES] - corr[c],
                          name="vnni_out")
    return te.compute((n, oh, ow, oc), lambda b, y, z, c: acc[b, y, z, c // LANES, c % LANES] - corr[c],
                      name="vnni_out")


@relax.expr_functor.mutator
class _VnniRewriter(relax.PyExprMutator):
    def _to_u8(self, data: relax.Expr) -> relax.Var:
        """``data + 128`` as u8. Where ``data`` is this project's quantization (a float cast to int8),
        the shift is added before that cast instead, so the kernel still casts each element once."""
        bound = self.lookup_binding(data) if isinstance(data, relax.Var) else None
        if (isinstance(bound, relax.Call) and isinstance(bound.op, tvm.ir.Op) and bound.op.name == "relax.astype"
                and bound.args[0].ty.dtype == "float32"):
            shifted = self.builder_.emit(relax.op.add(bound.args[0], relax.const(float(SHIFT), "float32")))
        else:
            wide = self.builder_.emit(relax.op.astype(data, "int16"))
            shifted = self.builder_.emit(relax.op.add(wide, relax.const(SHIFT, "int16")))
        return self.builder_.emit(relax.op.astype(shifted, "uint8"))

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.matmul", "relax.nn.conv2d"):
            return call
        data, weight = call.args[0], call.args[1]
        if (not isinstance(weight, Constant) or weight.ty.dtype != "int8" or data.ty.dtype != "int8"
                or str(call.ty.dtype) != "int32" or data.ty.shape is None):
            return call
        w = weight.value.numpy()
        if call.op.name == "relax.matmul":
            return self._matmul(call, data, w)
        return self._conv(call, data, w)

    def _matmul(self, call, data, w):
        if w.ndim != 2:
            return call
        k, n = w.shape
        if padded_work(n, k) > MAX_PADDED_WORK:
            return call
        return self.builder_.call_te(_matmul_te, self._to_u8(data), relax.const(pack_matmul_weight(w)),
                                     relax.const(shift_correction(w, 1)), k, n, primfunc_name_hint="vnni_matmul")

    def _conv(self, call, data, w):
        a = call.attrs
        layout, kernel = str(a.data_layout), str(a.kernel_layout)
        out_layout = str(a.out_layout) if a.out_layout else layout
        if (int(a.groups) != 1 or layout not in ("NCHW", "NHWC") or out_layout != layout
                or kernel not in ("OIHW", "HWIO")):
            return call
        oihw = w if kernel == "OIHW" else w.transpose(3, 2, 0, 1)
        oc, ic = oihw.shape[:2]
        if padded_work(oc, ic) > MAX_PADDED_WORK:
            return call
        padding = [int(p) for p in a.padding]
        return self.builder_.call_te(
            _conv_te, self._to_u8(data), relax.const(pack_conv_weight(oihw)), relax.const(shift_correction(oihw, 0)),
            layout, oc, ic, [int(s) for s in a.strides], padding, [int(d) for d in a.dilation],
            primfunc_name_hint="vnni_conv2d")


def vnni_int8_kernels() -> tvm.transform.Pass:
    """The Relax pass of the module docstring."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.VnniInt8Kernels")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewritten(_VnniRewriter(mod), mod)

    return apply
