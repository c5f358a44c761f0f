"""MXFP4 expert weights, as gpt-oss ships its experts: the OCP Microscaling format's FP4.

OCP "Microscaling Formats (MX) Specification" v1.0 (2023), sections 5.1 and 6.3: a block of 32 values
along the reduction axis shares one E8M0 scale (a power of two, ``2^(s - 127)``, one byte); each value
is an FP4 E2M1 code (one sign bit, two exponent bits, one mantissa bit: the magnitudes 0, 0.5, 1, 1.5,
2, 3, 4 and 6), two codes a byte. A block's scale is ``2^(floor(log2(max |w|)) - 2)`` (2 is E2M1's
largest exponent), and each value the nearest code to ``w / scale``, saturating at 6. 4.25 bits a weight.

gpt-oss's checkpoint keeps each expert's projections ``[E, N, K/32, 16]`` bytes and ``[E, N, K/32]``
scales (``*_blocks``, ``*_scales``: K contiguous); here the same bytes as ``[E, N, K/2]`` and the
scales as ``[E, N, K/32]``. The routed kernel (:func:`routed_mxfp4_kernel`) decodes each code and
scale where it multiplies (no full-precision copy of the weights), as the serving engines' MXFP4 MoE
kernels do; compute is in the activations' precision (bf16 into fp32), not on FP4 units.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

#: Values that share one scale.
BLOCK = 32
#: FP4 E2M1 magnitudes by their three low bits (exponent, mantissa).
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float32)
#: E2M1's largest exponent (6 = 1.5 x 2^2).
EMAX = 2
#: E8M0's bias: a scale byte ``s`` is ``2^(s - 127)``.
SCALE_BIAS = 127


def quantize(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, scales)`` of ``weights`` ``[..., K]`` (K a multiple of :data:`BLOCK`) in MXFP4 along
    its last axis: ``codes`` ``[..., K/2]`` uint8 (element ``2i`` in the low nibble), ``scales``
    ``[..., K/32]`` uint8 (E8M0)."""
    w = np.asarray(weights, np.float32)
    blocks = w.reshape(*w.shape[:-1], -1, BLOCK)
    amax = np.abs(blocks).max(axis=-1)
    exponent = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - EMAX, -SCALE_BIAS)
    exponent = np.clip(exponent, -SCALE_BIAS, SCALE_BIAS)
    scaled = blocks / np.exp2(exponent)[..., None]
    nearest = np.abs(np.abs(scaled)[..., None] - E2M1).argmin(axis=-1)  # saturates at 6
    codes = (nearest | (np.signbit(scaled) & (nearest > 0)) << 3).astype(np.uint8).reshape(w.shape)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed.astype(np.uint8), (exponent + SCALE_BIAS).astype(np.uint8)


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 weights ``[..., K]`` that ``codes`` and ``scales`` (:func:`quantize`) stand for."""
    nibbles = np.stack([codes & 0xF, codes >> 4], axis=-1).reshape(*codes.shape[:-1], -1)
    values = E2M1[nibbles & 7] * np.where(nibbles & 8, -1.0, 1.0)
    factor = np.exp2(scales.astype(np.float32) - SCALE_BIAS)
    return (values.reshape(*values.shape[:-1], -1, BLOCK) * factor[..., None]).reshape(values.shape).astype(np.float32)


#: Every E2M1 code's value (sign bit, then the magnitude's three bits), the kernel's lookup table.
CODE_VALUES = np.concatenate([E2M1, -E2M1]).astype(np.float32)


def _decode(byte, odd, scale, table: te.Tensor, dtype: str):
    """One weight from its packed byte (``odd``: the high nibble) and its block's scale byte: the code's
    value from ``table`` (:data:`CODE_VALUES`) times ``2^(s - 127)``, which is ``s`` as a float's exponent."""
    code = (byte.astype("int32") >> (odd.astype("int32") * 4)) & 15
    factor = tirx.reinterpret("float32", scale.astype("uint32") << 23)
    return (table[code] * factor).astype(dtype)


def routed_mxfp4_kernel(x: te.Tensor, codes: te.Tensor, scales: te.Tensor, index: te.Tensor, table: te.Tensor,
                        out_dtype: str) -> te.Tensor:
    """``out[t, j, 0, n] = sum_r x[t, j or 0, 0, r] * W[index[t, j], n, r]`` with ``W`` MXFP4 (``codes``
    ``[E, N, K/2]``, ``scales`` ``[E, N, K/32]``), decoded where it multiplies through ``table``
    (:data:`CODE_VALUES`, 64 bytes that stay in the nearest cache)."""
    tokens, per_token, _, depth = x.shape
    k = index.shape[1]
    columns = codes.shape[1]
    shared = int(per_token) == 1
    r = te.reduce_axis((0, depth), "r")

    def body(t, j, z, n):
        e = index[t, j]
        w = _decode(codes[e, n, r // 2], r % 2, scales[e, n, r // BLOCK], table, out_dtype)
        return te.sum(x[t, 0 if shared else j, z, r].astype(out_dtype) * w, axis=r)

    return te.compute((tokens, k, 1, columns), body, name="routed_matmul")
