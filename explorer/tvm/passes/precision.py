"""Precision passes on the Relax graph (TVM-specific): bfloat16 casts, int8 and float8 quantization.

TVM's ``ToMixedPrecision`` only produces float16; these passes do the rest, on the imported graph
(before ``LegalizeOps``), for every ``conv2d`` and ``matmul``:

- ``bf16``: both operands cast to bfloat16, accumulation in float32 (``out_dtype``); constant
  weights are cast once by ``FoldConstant``.
- ``int8`` (post-training quantization): a call whose weight is a constant gets symmetric
  per-output-channel int8 weights (``scale_w[c] = max|W[c]| / 127``), its data input quantized per
  tensor with the calibrated scale (round, clip to +-127, cast), int8 x int8 accumulated in int32,
  and one multiply by ``scale_x * scale_w`` back to float32. The quantize step is element-wise on
  the producer's output, so ``FuseOps`` puts it in the producing kernel's epilogue (the producer
  writes int8), and the dequantize step into the int8 kernel's epilogue.
- ``fp8`` (W8A8 in float8 E4M3, as the FP8 checkpoints vLLM serves on Hopper and Blackwell: E4M3
  weights with per-channel scales and a static per-tensor ``input_scale``): a call whose weight is a
  constant gets per-output-channel E4M3 weights (``scale_w[c] = max|W[c]| / 448``, 448 being E4M3's
  largest value) and its data input divided by the calibrated scale (``max|x| / 448``), clipped to
  +-448 and cast; E4M3 x E4M3 accumulated in float32 and one multiply by ``scale_x * scale_w`` after.
  A weight parameter (a decoder built from its config) becomes a float8 parameter with its weight and
  input scales as parameters of their own, as the checkpoint stores them. Static scales need no
  reduction over the activation at run time (vLLM's dynamic scaling does one per call).
- Pre-quantized models (``qdq``, applied under every strategy): a ``conv2d``/``matmul`` whose
  operands come from ``dequantize`` (an imported QuantizeLinear/DequantizeLinear model: per-tensor
  data, constant per-channel weights with a zero zero-point) is rewritten the same way with the
  model's own scales, so it too runs int8 x int8 in int32; a data zero-point is subtracted as a
  constant correction (``zp * sum(w)``, folded at compile time).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax import expr_functor

from explorer.core.errors import ExplorerError
from explorer.tvm.passes.rewriting import rewrite_calls, rewritten
from explorer.tvm.passes.weight_params import with_params
from explorer.tvm.relax_ir import name_of

_CONV = "relax.nn.conv2d"
#: float8 E4M3's largest finite value (OCP 8-bit floating point specification, 2023).
FP8_MAX = 448.0
FP8 = "float8_e4m3fn"
_MATMUL = "relax.matmul"


def _const(value: np.ndarray) -> Constant:
    return relax.const(value, str(value.dtype))


def _channel_axis(call: relax.Call) -> tuple[int, int]:
    """(output-channel axis of the weight, output-channel axis of the result)."""
    if call.op.name == _CONV:
        return str(call.attrs.kernel_layout).index("O"), str(call.attrs.out_layout or call.attrs.data_layout).index("C")
    return -1, -1


def _with_operands(call: relax.Call, data, weight, out_dtype: str) -> relax.Expr:
    if call.op.name == _CONV:
        a = call.attrs
        return relax.op.nn.conv2d(data, weight, strides=a.strides, padding=a.padding, dilation=a.dilation,
                                  groups=a.groups, data_layout=a.data_layout, kernel_layout=a.kernel_layout,
                                  out_layout=a.out_layout, out_dtype=out_dtype)
    return relax.op.matmul(data, weight, out_dtype=out_dtype)


def _channel_scales(weight: np.ndarray, axis: int, largest: float) -> np.ndarray:
    """``max|W[c]| / largest`` per index ``c`` of ``axis`` (1 for an all-zero channel), shaped to
    broadcast against ``weight``, in float64."""
    axis = axis % weight.ndim
    others = tuple(i for i in range(weight.ndim) if i != axis)
    peak = np.max(np.abs(weight), axis=others, keepdims=True).astype(np.float64)
    return np.where(peak > 0, peak / largest, 1.0)


def _quantize_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 weights and their float32 scales (one per index of ``axis``)."""
    scale = _channel_scales(weight, axis, 127.0)
    q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
    return q, scale.reshape(-1).astype(np.float32)


def fp8_weight(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float8 E4M3 weights (``weight / scale``, rounded to nearest by ml_dtypes) and their
    float32 scales ``max|W[c]| / 448`` (one per index of ``axis``)."""
    import ml_dtypes

    scale = _channel_scales(weight, axis, FP8_MAX)
    q = np.clip(weight / scale, -FP8_MAX, FP8_MAX).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
    return q, scale.reshape(-1).astype(np.float32)


def quantize_weight(weight: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Public for tests: ``(int8 weights, per-channel scales)`` as the int8 pass computes them."""
    return _quantize_weight(weight, axis)


@expr_functor.mutator
class _PrecisionRewriter(relax.PyExprMutator):
    def __init__(self, mod, precision: str, act_scales: tuple[float, ...] | None, weights: frozenset[str] = frozenset()):
        super().__init__(mod)
        self.precision = precision
        self.act_scales = act_scales
        self.weights = weights  # weight parameters of main (a decoder built from its config)
        self.new_params: list[relax.Var] = []  # an fp8 weight parameter's scales
        self.used = 0
        self.dequantized: dict = {}  # var -> (int8 source, scale array, axis) for imported QDQ models

    def visit_var_binding_(self, binding) -> None:
        value = binding.value
        if (self.precision == "qdq" and isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                and value.op.name == "relax.dequantize" and isinstance(value.args[2], Constant)):
            source = value.args[0]
            if source.ty.dtype in ("int8", "uint8") and isinstance(value.args[1], Constant):
                self.dequantized[binding.var] = (self.visit_expr(source), value.args[1].value.numpy(),
                                                 value.args[2].value.numpy())
        super().visit_var_binding_(binding)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in (_CONV, _MATMUL):
            return call
        if call.op.name == _CONV and str(call.attrs.out_dtype) not in ("", "None", "void", "float32"):
            return call
        if self.precision == "bf16":
            return self._cast(call, "bfloat16")
        if self.precision == "int8":
            return self._int8(call)
        if self.precision == "qdq":
            return self._qdq(call)
        if self.precision == "fp8":
            return self._fp8(call)
        return call

    def _fp8(self, call):
        data, weight = call.args[0], call.args[1]
        w_axis, out_axis = _channel_axis(call)
        parameter = isinstance(weight, relax.Var) and name_of(weight) in self.weights
        if not (isinstance(weight, Constant) or parameter) or weight.ty.dtype != "float32" or data.ty.dtype != "float32":
            return call
        if call.op.name == _MATMUL and len(weight.ty.shape.values) != 2:
            return call
        channels = int(weight.ty.shape.values[w_axis])
        if parameter:  # a checkpoint's float8 weight, its scales and its input's scale (no values here)
            w_scale = relax.Var(f"{name_of(weight)}.weight_scale", relax.TensorType([channels], "float32"))
            x_scale = relax.Var(f"{name_of(weight)}.input_scale", relax.TensorType([], "float32"))
            self.new_params += [w_scale, x_scale]
            wq = relax.op.astype(weight, FP8)  # folded into a float8 weight parameter
        else:
            q, scales = fp8_weight(weight.value.numpy(), w_axis)
            wq, w_scale = relax.const(q, FP8), _const(scales)
            x_scale = relax.const(np.float32(self._next_scale() * 127.0 / FP8_MAX), "float32")
        xq = relax.op.astype(relax.op.clip(relax.op.divide(data, x_scale), -FP8_MAX, FP8_MAX), FP8)
        acc = _with_operands(call, xq, wq, "float32")
        rank = len(call.ty.shape.values)
        shape = [1] * rank
        shape[out_axis % rank] = channels
        return relax.op.multiply(relax.op.multiply(acc, relax.op.reshape(w_scale, shape)), x_scale)

    def _next_scale(self) -> float:
        """The next calibrated activation scale (``max|x| / 127``, in graph order)."""
        if self.act_scales is None or self.used >= len(self.act_scales):
            raise ExplorerError(f"{self.precision} quantization found more conv2d/matmul calls with constant weights "
                                "than the calibration measured; the graph and its ONNX source disagree")
        self.used += 1
        return float(self.act_scales[self.used - 1])

    def _cast(self, call, dtype):
        data, weight = (relax.op.astype(a, dtype) if a.ty.dtype == "float32" else a for a in call.args[:2])
        return _with_operands(call, data, weight, "float32")

    def _qdq(self, call):
        """conv2d/matmul of two dequantized int8 tensors (per-tensor data, constant weights with a
        zero zero-point) -> the int8 op, minus the data zero-point's contribution, rescaled."""
        data, weight = call.args[0], call.args[1]
        if data not in self.dequantized or weight not in self.dequantized:
            return call
        (xq, x_scale, x_zp), (wq, w_scale, w_zp) = self.dequantized[data], self.dequantized[weight]
        if (np.size(x_scale) != 1 or np.any(w_zp) or not isinstance(wq, Constant) or wq.ty.dtype != "int8"
                or np.size(w_scale) not in (1, int(wq.ty.shape.values[_channel_axis(call)[0]]))):
            return call
        acc = _with_operands(call, xq, wq, "int32")
        zp = int(np.reshape(x_zp, -1)[0])
        if zp:  # sum((x - zp) * w) = sum(x * w) - zp * sum(w): the second term is a constant
            ones = np.full([int(d) for d in xq.ty.shape.values], zp, dtype=str(xq.ty.dtype))
            acc = relax.op.subtract(acc, _with_operands(call, _const(ones), wq, "int32"))
        _, out_axis = _channel_axis(call)
        return self._rescaled(call, acc, float(np.reshape(x_scale, -1)[0]), np.reshape(w_scale, -1), out_axis)

    def _int8(self, call):
        data, weight = call.args[0], call.args[1]
        w_axis, out_axis = _channel_axis(call)
        if not isinstance(weight, Constant) or weight.ty.dtype != "float32" or data.ty.dtype != "float32":
            return call
        if call.op.name == _MATMUL and len(weight.ty.shape.values) != 2:
            return call
        x_scale = self._next_scale()
        q, w_scale = _quantize_weight(weight.value.numpy(), w_axis)
        scaled = relax.op.multiply(data, relax.const(np.float32(1.0 / x_scale), "float32"))
        clipped = relax.op.clip(relax.op.round(scaled), -127, 127)
        return self._rescale(call, relax.op.astype(clipped, "int8"), _const(q), x_scale, w_scale, out_axis)

    def _rescale(self, call, xq, wq, x_scale: float, w_scale: np.ndarray, out_axis: int):
        return self._rescaled(call, _with_operands(call, xq, wq, "int32"), x_scale, w_scale, out_axis)

    def _rescaled(self, call, acc, x_scale: float, w_scale: np.ndarray, out_axis: int):
        rank = len(call.ty.shape.values)
        shape = [1] * rank
        shape[out_axis % rank] = w_scale.size
        scale = (w_scale.astype(np.float64) * x_scale).astype(np.float32).reshape(shape)
        return relax.op.multiply(relax.op.astype(acc, "float32"), _const(scale))


def precision_pass(precision: str, act_scales: tuple[float, ...] | None = None,
                   weights: frozenset[str] = frozenset()) -> tvm.transform.Pass:
    """The Relax pass that gives a graph ``precision`` (``bf16``, ``int8``, ``fp8``, or ``qdq`` to run an
    imported pre-quantized model's conv2d/matmul in int8; see the module doc). ``act_scales`` are the
    calibrated activation scales in graph order (int8); ``weights`` the weight parameters of main (fp8)."""

    @tvm.transform.module_pass(opt_level=0, name=f"explorer.Precision[{precision}]")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _PrecisionRewriter(mod, precision, act_scales, weights)
        out = rewritten(rewriter, mod)
        if rewriter.new_params:
            out["main"] = with_params(out["main"], rewriter.new_params)
        if precision in ("int8", "fp8") and act_scales is not None and rewriter.used != len(act_scales):
            raise ExplorerError(f"{precision} quantization matched {rewriter.used} conv2d/matmul calls with constant weights "
                                f"but the calibration measured {len(act_scales)} activations")
        return out

    return apply


def _half_operands(call, _mod):
    a, b = call.args
    if isinstance(a, Constant) or isinstance(b, Constant):
        return None
    if str(a.ty.dtype) != "float32" or str(b.ty.dtype) != "float32":
        return None
    return relax.op.matmul(relax.op.astype(a, "float16"), relax.op.astype(b, "float16"), out_dtype="float32")


@tvm.transform.module_pass(opt_level=0, name="explorer.HalfActivationMatmuls")
def half_activation_matmuls(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Each float32 matmul of two activations (attention's scores and context, which ``int8`` leaves in
    float32: it quantizes matmuls with constant weights) with float16 operands accumulated in float32, as
    GPU int8 deployments run their attention (TensorRT-LLM's SmoothQuant W8A8): on the tensor cores."""
    return rewrite_calls(mod, "relax.matmul", _half_operands)
