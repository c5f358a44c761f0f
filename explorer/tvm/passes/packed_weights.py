"""Float kernels whose constant weights are packed in blocks of one vector of output channels (CPUs).

A matmul's weight ``[K, N]`` and a channels-last convolution's ``[KH, KW, IC, OC]`` are read one
vector of output channels per reduction step by :class:`explorer.tvm.schedules.tiled_reduction.TiledReduction`:
64 bytes every ``N * 4`` bytes. With ``N`` a multiple of 256 that stride is a multiple of 1 KiB, so a
task's weights fall into a sixteenth of the L2's sets: the 590 KB a task of resnet18's last 3x3
convolutions reads (512 channels) never stays in the 2 MB L2 and streams from DRAM once per output row
(4x slower than its arithmetic). Packed at compile time as ``[N/B, K, B]`` (``[OC/B, KH, KW, IC, B]``)
with ``B`` the lanes of one vector, each block of output channels is one contiguous run that the
prefetchers follow and the whole cache holds, as oneDNN and TVM's x86 ``NCHWc`` kernels pack theirs.

:func:`packed_float_weights` rewrites, before ``LegalizeOps``, every float ``matmul`` with a constant 2-D
weight and every channels-last, ungrouped ``conv2d`` with a constant ``HWIO`` weight into a kernel of
its own (named as the legalized one, so kernel names do not change) that computes the same sums in
the same order over the packed weight; the output keeps the graph's layout.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.ir.expr import Constant

from explorer.tvm.passes.rewriting import rewritten
from explorer.tvm.schedules.common import largest_divisor, vector_lanes

#: Dtypes whose weights are packed (integer kernels have their own layouts: see explorer.tvm.passes.dot_kernels).
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


def vector_block(columns: int, dtype_bits: int, target: tvm.target.Target) -> int:
    """Output channels per packed block: the largest divisor of ``columns`` that fits one vector of
    ``dtype_bits``-bit elements (the vector :class:`~explorer.tvm.schedules.tiled_reduction.TiledReduction` splits
    the output channels by, so that its loads are whole blocks)."""
    return largest_divisor(columns, vector_lanes(target, dtype_bits))


def pack_columns(w: np.ndarray, block: int) -> np.ndarray:
    """``[..., N]`` -> ``[N/block, ..., block]``: ``P[o, ..., b] = W[..., o * block + b]``."""
    *lead, n = w.shape
    blocks = w.reshape(*lead, n // block, block)
    return np.ascontiguousarray(np.moveaxis(blocks, -2, 0))


def _matmul_te(x, wp, out_dtype: str):
    *batch, m, k_extent = x.shape
    blocks, _, block = wp.shape
    k = te.reduce_axis((0, k_extent), name="k")
    return te.compute((*batch, m, blocks * block), lambda *i: te.sum(
        x[(*i[:-1], k)].astype(out_dtype) * wp[i[-1] // block, k, i[-1] % block].astype(out_dtype), axis=k),
        name="T_matmul", tag="matmul")


def _conv_te(x, wp, out_dtype: str, strides, padding, dilation):
    n, h, w, ic = x.shape
    blocks, kh, kw, _, block = wp.shape
    top, left, bottom, right = padding
    (sh, sw), (dh, dw) = strides, dilation
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    src = topi.nn.pad(x, [0, top, left, 0], [0, bottom, right, 0], name="pad_temp") if any(padding) else x
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rc = te.reduce_axis((0, ic), name="rc")
    return te.compute((n, oh, ow, blocks * block), lambda b, y, z, c: te.sum(
        src[b, y * sh + ry * dh, z * sw + rx * dw, rc].astype(out_dtype)
        * wp[c // block, ry, rx, rc, c % block].astype(out_dtype), axis=[ry, rx, rc]),
        name="conv2d_nhwc", tag="conv2d_nhwc")


@relax.expr_functor.mutator
class _Packer(relax.PyExprMutator):
    def __init__(self, mod, target):
        super().__init__(mod)
        self.target = target

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.matmul", "relax.nn.conv2d"):
            return call
        data, weight = call.args[0], call.args[1]
        out_dtype = str(call.ty.dtype)
        if (not isinstance(weight, Constant) or str(weight.ty.dtype) not in FLOAT_DTYPES
                or out_dtype not in FLOAT_DTYPES or data.ty.shape is None):
            return call
        block = vector_block(int(weight.ty.shape.values[-1]), tvm.DataType(out_dtype).bits, self.target)
        if block == 1:
            return call
        if call.op.name == "relax.matmul":
            if weight.ty.ndim != 2 or data.ty.ndim < 2:
                return call
            return self.builder_.call_te(_matmul_te, data, relax.const(pack_columns(weight.value.numpy(), block)),
                                         out_dtype, primfunc_name_hint="matmul")
        a = call.attrs
        out_layout = str(a.out_layout) if a.out_layout else str(a.data_layout)
        if int(a.groups) != 1 or str(a.data_layout) != "NHWC" or str(a.kernel_layout) != "HWIO" or out_layout != "NHWC":
            return call
        return self.builder_.call_te(
            _conv_te, data, relax.const(pack_columns(weight.value.numpy(), block)), out_dtype,
            [int(s) for s in a.strides], [int(p) for p in a.padding], [int(d) for d in a.dilation],
            primfunc_name_hint="conv2d")


@tvm.transform.module_pass(opt_level=0, name="explorer.PackedFloatWeights")
def packed_float_weights(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """The Relax pass of the module docstring, for the target in scope (its vector width)."""
    target = tvm.target.Target.current(allow_none=True)
    if target is None or target.kind.name != "llvm":
        return mod
    return rewritten(_Packer(mod, target), mod)
