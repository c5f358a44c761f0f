"""Kernels for a CPU's dot-product instructions: 16 output lanes, each summing a group of products.

``VPDPBUSD`` (AVX-512 VNNI, :mod:`explorer.tvm.passes.vnni`) sums four u8 x s8 products into each of 16
int32 lanes; ``VDPBF16PS`` (AVX512-BF16, :mod:`explorer.tvm.passes.bf16_dot`) two bf16 products into each
of 16 fp32 lanes. Their kernels share one shape, built here from a :class:`DotInstruction`:

- weights are packed at compile time into the instruction's layout, ``[N/16, K/g, 16, g]`` for a
  matmul and ``[OC/16, KH, KW, IC/g, 16, g]`` for a convolution (``g`` the group; zero-padded to whole
  blocks);
- the accumulator is computed with the output channels innermost in blocks of 16, in a block annotated
  :data:`DOT_BLOCK` with the tensor intrinsic's name (which
  :class:`explorer.tvm.schedules.dot_reduction.DotReduction` tensorizes), and then written in the graph's
  layout through the instruction's own ``finish`` (VNNI subtracts its shift's correction);
- the operands are read in the instruction's storage dtype (``uint8``; ``uint16``, the bits of a bf16):
  a convolution reads a padded channels-last copy of its input (``dot_pad``), where ``g`` consecutive
  input channels are the instruction's group, and a matmul whose input needs padding or
  reinterpreting reads such a copy too;
- a matmul whose right operand is an activation (attention's scores and context), where the instruction
  allows it, packs that operand in the kernel (``dot_pack``, batch dimensions kept), once a call.

:class:`DotRewriter` is the Relax mutator that replaces each ``conv2d``/``matmul`` an instruction takes
with such a kernel (before ``LegalizeOps``); what an instruction takes, and what it does to the
activation, is its :class:`DotOperands`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import numpy as np
import tvm
from tvm import relax, te
from tvm.ir.expr import Constant

#: The annotation of the accumulator block that the default schedule tensorizes: the tensor intrinsic's name.
DOT_BLOCK = "explorer.dot"
#: Output lanes of one instruction (a 512-bit vector of 32-bit accumulators).
LANES = 16
#: A kernel whose channels padded to whole blocks would do more than this many times its MACs keeps
#: the kernel it had (8 output channels padded to 16 would double the work).
MAX_PADDED_WORK = 1.5


@dataclasses.dataclass(frozen=True)
class DotInstruction:
    """One dot-product instruction as its kernels use it."""

    name: str           # its kernels' name prefix (``vnni_conv2d``)
    intrinsic: str      # the tensor intrinsic's registered name
    group: int          # products summed into each lane
    operand: str        # the dtype an activation is read in (its bits, for a float)
    weight: str         # the dtype a packed weight is stored in
    accumulator: str    # the lanes' dtype
    pad: int            # the operand's bits of a zero (VNNI's shifted u8: 128)
    multiplied_as: str = ""  # the dtype the stored bits are reinterpreted as before widening (bf16)
    llvm_ir: str = ""   # LLVM IR that the intrinsic's implementation calls, linked into each kernel

    def widened(self, value: tvm.ir.expr.Expr) -> tvm.ir.expr.Expr:
        """An operand as the accumulator's dtype: its stored bits reinterpreted, then cast."""
        if self.multiplied_as:
            value = tvm.tirx.reinterpret(self.multiplied_as, value)
        return value.astype(self.accumulator)


def llvm_target_has(target: tvm.target.Target, feature: str) -> bool:
    """Whether ``target`` is an llvm target with the CPU ``feature`` an instruction needs."""
    from tvm.target import codegen

    return target.kind.name == "llvm" and bool(codegen.target_has_features(feature, target))


def _blocks(n: int, size: int) -> int:
    return -(-n // size)


def pack_matmul_weight(w: np.ndarray, group: int) -> np.ndarray:
    """``[K, N]`` -> ``[N/16, K/g, 16, g]`` (zero-padded): ``P[no, ko, ni, ki] = W[g*ko+ki, 16no+ni]``."""
    k, n = w.shape
    padded = np.zeros((_blocks(k, group) * group, _blocks(n, LANES) * LANES), w.dtype)
    padded[:k, :n] = w
    return np.ascontiguousarray(padded.reshape(-1, group, padded.shape[1] // LANES, LANES).transpose(2, 0, 3, 1))


def pack_conv_weight(w_oihw: np.ndarray, group: int) -> np.ndarray:
    """``[OC, IC, KH, KW]`` -> ``[OC/16, KH, KW, IC/g, 16, g]`` (zero-padded)."""
    oc, ic, kh, kw = w_oihw.shape
    padded = np.zeros((_blocks(oc, LANES) * LANES, _blocks(ic, group) * group, kh, kw), w_oihw.dtype)
    padded[:oc, :ic] = w_oihw
    blocks = padded.reshape(padded.shape[0] // LANES, LANES, padded.shape[1] // group, group, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 4, 5, 2, 1, 3))


def padded_work(outputs: int, reduction: int, group: int) -> float:
    """The MACs of a kernel with ``outputs`` channels and ``reduction`` channels, padded to whole
    16 x ``group`` blocks, over its real MACs."""
    return _blocks(outputs, LANES) * LANES * _blocks(reduction, group) * group / (outputs * reduction)


Finish = Callable[[tvm.ir.expr.Expr, tvm.ir.expr.Expr], tvm.ir.expr.Expr]


def _as_operand(dot: DotInstruction, value: tvm.ir.expr.Expr) -> tvm.ir.expr.Expr:
    return value if str(value.dtype) == dot.operand else tvm.tirx.reinterpret(dot.operand, value)


def _packed_index(wp, i) -> list:
    """The batch indices into a packed operand ``wp`` (``[*batch, N/16, K/g, 16, g]``) of the accumulator
    element ``i`` (``[*batch, m, no, ni]``), broadcast as ``matmul`` broadcasts."""
    dims = len(wp.shape) - 4
    batch = i[:-3][len(i) - 3 - dims:]
    return [0 if int(extent) == 1 else b for extent, b in zip(wp.shape[:dims], batch)]


def matmul_te(x, wp, dot: DotInstruction, finish: Finish, k: int, n: int):
    """``x @ W`` for ``W`` packed by :func:`pack_matmul_weight` (with batch dimensions in front, where
    :func:`packing_matmul_te` packs it); ``finish(acc, column)`` the output."""
    *batch, m, _ = x.shape
    g = dot.group
    kp = wp.shape[-3] * g
    if kp != k or str(x.dtype) != dot.operand:  # padded K: the weights there are zero, any bits will do
        x = te.compute((*batch, m, kp), lambda *i: te.if_then_else(
            i[-1] < k, _as_operand(dot, x[(*i[:-1], i[-1])]), tvm.tirx.const(dot.pad, dot.operand)), name="dot_pad")
    ko = te.reduce_axis((0, kp // g), name="ko")
    ki = te.reduce_axis((0, g), name="ki")
    acc = te.compute((*batch, m, wp.shape[-4], LANES), lambda *i: te.sum(
        dot.widened(x[(*i[:-2], ko * g + ki)]) * dot.widened(wp[(*_packed_index(wp, i), i[-2], ko, i[-1], ki)]),
        axis=[ko, ki]), name="dot_acc", attrs={DOT_BLOCK: dot.intrinsic})
    return te.compute((*batch, m, n), lambda *i: finish(acc[(*i[:-1], i[-1] // LANES, i[-1] % LANES)], i[-1]),
                      name="dot_out")


def packing_matmul_te(x, w, dot: DotInstruction, finish: Finish, k: int, n: int):
    """``x @ w`` for an activation ``w`` (``[*batch, K, N]``), packed in the kernel as
    :func:`pack_matmul_weight` packs a constant (zero-padded)."""
    g = dot.group
    *batch, _, _ = w.shape

    def packed(*i):
        row, col = i[-3] * g + i[-1], i[-4] * LANES + i[-2]
        return te.if_then_else(tvm.tirx.all(row < k, col < n), _as_operand(dot, w[(*i[:-4], row, col)]),
                               tvm.tirx.const(0, dot.operand))

    wp = te.compute((*batch, _blocks(n, LANES), _blocks(k, g), LANES, g), packed, name="dot_pack")
    return matmul_te(x, wp, dot, finish, k, n)


def conv_te(x, wp, dot: DotInstruction, finish: Finish, layout: str, oc: int, ic: int, strides, padding, dilation):
    """A conv2d (``NCHW`` or ``NHWC``, output in the same layout) with ``W`` packed by
    :func:`pack_conv_weight`; ``finish(acc, channel)`` the output."""
    nchw = layout == "NCHW"
    n, h, w = (x.shape[0], x.shape[2], x.shape[3]) if nchw else (x.shape[0], x.shape[1], x.shape[2])
    ocb, kh, kw, icb, _, g = wp.shape
    top, left, bottom, right = padding
    (sh, sw), (dh, dw) = strides, dilation
    hp, wpad = h + top + bottom, w + left + right
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wpad - (kw - 1) * dw - 1) // sw + 1

    def padded(b, y, z, c):
        inside = tvm.tirx.all(y >= top, y < top + h, z >= left, z < left + w, c < ic)
        value = x[b, c, y - top, z - left] if nchw else x[b, y - top, z - left, c]
        return te.if_then_else(inside, _as_operand(dot, value), tvm.tirx.const(dot.pad, dot.operand))

    if nchw or any(padding) or icb * g != ic or str(x.dtype) != dot.operand:
        src = te.compute((n, hp, wpad, icb * g), padded, name="dot_pad")
    else:
        src = x
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rco = te.reduce_axis((0, icb), name="rco")
    rci = te.reduce_axis((0, g), name="rci")
    acc = te.compute((n, oh, ow, ocb, LANES), lambda b, y, z, co, ci: te.sum(
        dot.widened(src[b, y * sh + ry * dh, z * sw + rx * dw, rco * g + rci])
        * dot.widened(wp[co, ry, rx, rco, ci, rci]), axis=[ry, rx, rco, rci]),
        name="dot_acc", attrs={DOT_BLOCK: dot.intrinsic})
    if nchw:
        return te.compute((n, oc, oh, ow), lambda b, c, y, z: finish(acc[b, y, z, c // LANES, c % LANES], c),
                          name="dot_out")
    return te.compute((n, oh, ow, oc), lambda b, y, z, c: finish(acc[b, y, z, c // LANES, c % LANES], c),
                      name="dot_out")


class DotOperands(Protocol):
    """What one instruction's kernels take from the graph, and how."""

    instruction: DotInstruction

    def takes(self, call: relax.Call, data: relax.Expr, weight: Constant) -> bool:
        """Whether a ``conv2d``/``matmul`` with a constant weight is one for this instruction."""

    def operand(self, mutator: relax.PyExprMutator, data: relax.Expr) -> relax.Expr:
        """The activation as the kernel reads it (emitted through ``mutator``'s builder)."""

    #: Whether a matmul whose right operand is an activation is packed in the kernel.
    packs_activations: bool

    def weight_bits(self, w: np.ndarray) -> np.ndarray:
        """A weight's values as the packed weight stores them."""

    def finish(self, w: np.ndarray | None, out_axis: int) -> tuple[list, Callable[..., Finish]]:
        """The constants the epilogue reads (as numpy arrays) and, given their TE tensors, the
        epilogue ``finish(acc, channel)``; ``w`` is None for a right operand that is an activation."""


@relax.expr_functor.mutator
class DotRewriter(relax.PyExprMutator):
    """Every ``conv2d``/``matmul`` that ``operands`` takes, as a kernel of this module (see the module doc).
    Grouped convolutions, layouts other than NCHW/NHWC with OIHW/HWIO weights, and kernels that whole
    blocks would pad to more than :data:`MAX_PADDED_WORK` times their MACs keep their kernels."""

    def __init__(self, mod: tvm.IRModule, operands: DotOperands):
        super().__init__(mod)
        self.operands = operands

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.matmul", "relax.nn.conv2d"):
            return call
        data, weight = call.args[0], call.args[1]
        if data.ty.shape is None or weight.ty.shape is None or not self.operands.takes(call, data, weight):
            return call
        if not isinstance(weight, Constant):
            return self._packing_matmul(call, data, weight)
        w = weight.value.numpy()
        if call.op.name == "relax.matmul":
            return self._matmul(call, data, w)
        return self._conv(call, data, w)

    def _kernel(self, te_func, name: str, data, packed: np.ndarray, w: np.ndarray, out_axis: int, *args):
        dot = self.operands.instruction
        constants, make_finish = self.operands.finish(w, out_axis)

        def build(x, wp, *tensors_and_args):
            tensors, rest = tensors_and_args[:len(constants)], tensors_and_args[len(constants):]
            return te_func(x, wp, dot, make_finish(*tensors), *rest)

        return self.builder_.call_te(build, self.operands.operand(self, data), relax.const(packed),
                                     *(relax.const(c) for c in constants), *args, primfunc_name_hint=name)

    def _matmul(self, call, data, w):
        dot = self.operands.instruction
        if w.ndim != 2:
            return call
        k, n = w.shape
        if padded_work(n, k, dot.group) > MAX_PADDED_WORK:
            return call
        packed = pack_matmul_weight(self.operands.weight_bits(w), dot.group)
        return self._kernel(matmul_te, f"{dot.name}_matmul", data, packed, w, 1, k, n)

    def _packing_matmul(self, call, data, weight):
        """``data @ weight`` where ``weight`` is computed in the graph (a function's parameter, a
        decoder's weight, would be packed at every call: it keeps its kernel)."""
        dot = self.operands.instruction
        if (call.op.name != "relax.matmul" or not self.operands.packs_activations
                or not isinstance(weight, relax.Var) or self.lookup_binding(weight) is None):
            return call
        shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in weight.ty.shape.values]
        batch = len(data.ty.shape.values) - 2
        if None in shape or len(shape) < 2 or len(shape) - 2 > batch:
            return call
        k, n = shape[-2:]
        if padded_work(n, k, dot.group) > MAX_PADDED_WORK:
            return call
        constants, make_finish = self.operands.finish(None, 1)
        if constants:  # an epilogue that needs the weight's values (VNNI's correction) cannot be had
            return call
        finish = make_finish()
        return self.builder_.call_te(lambda x, w: packing_matmul_te(x, w, dot, finish, k, n),
                                     self.operands.operand(self, data), weight, primfunc_name_hint=f"{dot.name}_matmul")

    def _conv(self, call, data, w):
        dot = self.operands.instruction
        a = call.attrs
        layout, kernel = str(a.data_layout), str(a.kernel_layout)
        out_layout = str(a.out_layout) if a.out_layout else layout
        if (int(a.groups) != 1 or layout not in ("NCHW", "NHWC") or out_layout != layout
                or kernel not in ("OIHW", "HWIO")):
            return call
        oihw = w if kernel == "OIHW" else w.transpose(3, 2, 0, 1)
        oc, ic = oihw.shape[:2]
        if padded_work(oc, ic, dot.group) > MAX_PADDED_WORK:
            return call
        packed = pack_conv_weight(self.operands.weight_bits(oihw), dot.group)
        return self._kernel(conv_te, f"{dot.name}_conv2d", data, packed, oihw, 0, layout, oc, ic,
                            [int(s) for s in a.strides], [int(p) for p in a.padding], [int(d) for d in a.dilation])
