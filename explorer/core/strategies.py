"""Compilation strategies as data.

A strategy is a frozen, hashable record of one choice on each of four axes. Strategies are registered
by name, the way ``tvm.relax.pipeline`` registers pipelines: a name -> value map with an error listing
the known names. Each axis value names a factory of passes in :mod:`explorer.tvm.pipeline`; ``AXES``
lists those names here, where nothing imports TVM, to check a strategy when it is made.
"""

from __future__ import annotations

import dataclasses
import re

from explorer.core.errors import InputError, UnknownName

#: The values of each pass axis: the keys of the factory maps in :mod:`explorer.tvm.pipeline`.
AXES: dict[str, tuple[str, ...]] = {
    "fusion": ("none", "tvm"),
    "layout": ("native", "nhwc"),
    "precision": ("fp32", "fp16", "bf16", "int8", "fp8", "int8w", "int4w", "int8w-fp16", "int4w-fp16",
                  "int8w-bf16", "int4w-bf16", "mxfp4-bf16"),
}
#: The weight-only precisions (see :mod:`explorer.tvm.passes.weight_only`): activations in float32, or in
#: the 16-bit type after the dash (the weight dequantized to it, as MLC-LLM's ``q4f16_1``).
#: The precisions whose activation scales come from calibration.
CALIBRATED = ("int8", "fp8")
WEIGHT_ONLY = ("int8w", "int4w", "int8w-fp16", "int4w-fp16", "int8w-bf16", "int4w-bf16")
#: ``none``, or ``metaschedule:N`` (N trials across the model, latency-best schedules) and
#: ``metaschedule:N:energy`` / ``metaschedule:N:edp`` (the measured candidate with the least
#: modelled energy, or energy x measured latency, per kernel).
TUNING_PATTERN = re.compile(r"^(none|metaschedule:(?P<trials>[1-9]\d*)(:(?P<pick>latency|energy|edp))?)$")
#: ``none``, ``2:4`` (two of every four weights along the reduction axis kept) or ``unstructured:P`` (the
#: P% smallest-magnitude weights of each conv and matmul zeroed): see :mod:`explorer.tvm.passes.pruning`.
SPARSITY_PATTERN = re.compile(r"^(none|2:4|unstructured:(?P<percent>[1-9]\d?))$")


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One way of compiling a model.

    ``fusion``: ``none`` (one kernel per operator) or ``tvm`` (FuseOps + FuseTIR, with the fused
    intermediates inlined by the schedule). ``layout``: ``native`` (as imported, NCHW for ONNX) or
    ``nhwc`` (ConvertLayout of conv2d to NHWC/OHWI). ``precision``: ``fp32``; ``fp16`` (TVM's
    ToMixedPrecision: conv2d/matmul in float16 accumulating in float32); ``bf16`` (the same casts in
    bfloat16, by this project's pass, since TVM's only knows float16); ``int8`` (this project's
    post-training quantization: int8 weights per output channel, int8 activations per tensor from
    calibration, int32 accumulation); ``int8w`` / ``int4w`` (weight-only: every matmul's constant weight
    in symmetric int8 or int4, packed two per byte, with an fp16 scale per 128 rows of the reduction
    axis; activations stay float32, the weight is dequantized inside the matmul kernel when fused;
    see :mod:`explorer.tvm.passes.weight_only`); ``int8w-fp16`` ... ``int4w-bf16`` (the same weights,
    with the activations and matmuls of ``fp16`` or ``bf16``, the weight dequantized to that type: what
    a GPU runs on its tensor cores); ``fp8`` (float8 E4M3 weights per output channel and activations
    scaled per tensor at run time, float32 accumulation: see :mod:`explorer.tvm.passes.precision`);
    ``mxfp4-bf16`` (``bf16``, with a mixture of experts' expert weights in MXFP4, gpt-oss's format: see
    :mod:`explorer.tvm.passes.mxfp4`).
    ``tuning``: ``none`` or ``metaschedule:N[:energy|edp]``
    (see ``TUNING_PATTERN``). ``sparsity``: ``none``, ``2:4`` or ``unstructured:P`` (magnitude pruning of
    conv and matmul weights before import, see :mod:`explorer.tvm.passes.pruning`; the build runs the pruned weights
    dense, and each target is charged what its hardware makes of them, see :mod:`cost_models.sparsity`).
    """

    name: str
    fusion: str = "none"
    layout: str = "native"
    precision: str = "fp32"
    tuning: str = "none"
    sparsity: str = "none"

    def __post_init__(self) -> None:
        for axis, allowed in AXES.items():
            value = getattr(self, axis)
            if value not in allowed:
                raise InputError(f"strategy {self.name!r}: {axis}={value!r} is not one of {list(allowed)}")
        if not TUNING_PATTERN.match(self.tuning):
            raise InputError(f"strategy {self.name!r}: tuning={self.tuning!r} is not 'none', 'metaschedule:N' "
                             "or 'metaschedule:N:energy|edp|latency'")
        if not SPARSITY_PATTERN.match(self.sparsity):
            raise InputError(f"strategy {self.name!r}: sparsity={self.sparsity!r} is not 'none', '2:4' or "
                             "'unstructured:P' (P the percent of weights zeroed, 1-99)")

    @property
    def tuned(self) -> bool:
        """Whether the strategy runs MetaSchedule (expensive: minutes to hours)."""
        return self.tuning != "none"

    @property
    def trials(self) -> int:
        """MetaSchedule trial budget across the model (0 when not tuned)."""
        m = TUNING_PATTERN.match(self.tuning)
        return int(m["trials"]) if m and m["trials"] else 0

    @property
    def pick(self) -> str:
        """Which measured schedule each kernel keeps: ``latency``, ``energy`` or ``edp``."""
        m = TUNING_PATTERN.match(self.tuning)
        return (m["pick"] or "latency") if m and m["trials"] else ""

    @property
    def calibrated(self) -> bool:
        """Whether the precision quantizes activations with scales calibrated on sample inputs
        (``int8``, ``fp8``): the sweep runs the calibration before compiling."""
        return self.precision in CALIBRATED

    @property
    def sparse(self) -> bool:
        """Whether the strategy prunes weights."""
        return self.sparsity != "none"

    def axes(self) -> dict[str, str]:
        """The axis values, for tables."""
        return {"fusion": self.fusion, "layout": self.layout, "precision": self.precision,
                "tuning": self.tuning, "sparsity": self.sparsity}

    @property
    def key(self) -> str:
        """A stable identifier of the choices (not the name), for cache keys (a dense strategy's is what it
        was before the sparsity axis, so its cached lowerings stay valid)."""
        key = f"fusion={self.fusion},layout={self.layout},precision={self.precision},tuning={self.tuning}"
        return key + (f",sparsity={self.sparsity}" if self.sparse else "")


_REGISTRY: dict[str, Strategy] = {}
#: Untuned strategies that ``all`` leaves out all the same: the channels-last bf16 build is the best
#: bf16 build of a CPU with AVX512-BF16, but on every other target it is ``fused-bf16``'s work in another
#: layout, and its three lowerings added 12 s to the quick-start sweep (issue 38's budget is 60 s).
NAMED_ONLY = ("fused-nhwc-bf16",)


def register(strategy: Strategy) -> Strategy:
    """Register a strategy under its name; re-registering a name is an error."""
    if strategy.name in _REGISTRY:
        raise InputError(f"strategy {strategy.name!r} is already registered")
    _REGISTRY[strategy.name] = strategy
    return strategy


register(Strategy("baseline"))
register(Strategy("fused", fusion="tvm"))
register(Strategy("nhwc", layout="nhwc"))
register(Strategy("fused-nhwc", fusion="tvm", layout="nhwc"))
register(Strategy("fused-fp16", fusion="tvm", precision="fp16"))
register(Strategy("fused-bf16", fusion="tvm", precision="bf16"))
register(Strategy("int8", precision="int8"))
register(Strategy("fused-int8", fusion="tvm", precision="int8"))
# channels-last int8: on VNNI the convolutions then read their input without a transposing copy
register(Strategy("fused-nhwc-int8", fusion="tvm", layout="nhwc", precision="int8"))
# channels-last bf16: on AVX512-BF16 the convolutions then read their input without a transposing copy
# (not in ``all``: NAMED_ONLY)
register(Strategy("fused-nhwc-bf16", fusion="tvm", layout="nhwc", precision="bf16"))
# W8A8 in float8 E4M3 with static scales: what Hopper and Blackwell servers run in fp8 (not in ``all``)
register(Strategy("fused-fp8", fusion="tvm", precision="fp8"))
# Weight-only: what decode at small batch, bound by streaming its weights, is built with. Unfused, the
# int4 weights are dequantized by a kernel of their own that writes the float weight back out.
register(Strategy("int4w", precision="int4w"))
register(Strategy("fused-int8w", fusion="tvm", precision="int8w"))
register(Strategy("fused-int4w", fusion="tvm", precision="int4w"))
# ...and with 16-bit activations, the weight dequantized into the tensor-core matmul's operand load
register(Strategy("fused-int8w-fp16", fusion="tvm", precision="int8w-fp16"))
register(Strategy("fused-int4w-fp16", fusion="tvm", precision="int4w-fp16"))
register(Strategy("fused-int8w-bf16", fusion="tvm", precision="int8w-bf16"))
register(Strategy("fused-int4w-bf16", fusion="tvm", precision="int4w-bf16"))
register(Strategy("fused-mxfp4-bf16", fusion="tvm", precision="mxfp4-bf16"))
# Tuned strategies: a budget that tunes ResNet-18 in well under 30 minutes on 2 cores (see README).
# Sparsity: magnitude-pruned weights, built dense, charged as each target's hardware runs them.
register(Strategy("fused-2:4", fusion="tvm", sparsity="2:4"))
register(Strategy("fused-fp16-2:4", fusion="tvm", precision="fp16", sparsity="2:4"))
register(Strategy("fused-int8-2:4", fusion="tvm", precision="int8", sparsity="2:4"))
register(Strategy("fused-unstructured:50", fusion="tvm", sparsity="unstructured:50"))
register(Strategy("fused-tuned", fusion="tvm", tuning="metaschedule:128"))
register(Strategy("fused-tuned-energy", fusion="tvm", tuning="metaschedule:128:energy"))


def list_strategies() -> list[Strategy]:
    """All registered strategies, in registration order."""
    return list(_REGISTRY.values())


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown strategy {name!r}; known strategies: {', '.join(_REGISTRY)}") from None


def parse_strategies(spec: str | list[str | Strategy] | None) -> list[Strategy]:
    """Strategies from a comma-separated list of names, a list of names or :class:`Strategy`
    values (unregistered ones too), or ``all`` (every registered strategy that does not tune:
    tuning costs minutes to hours, so name those; nor the weight-only ones, which change only
    matmul weights and are named for the decoders and MLPs they are for; nor ``fp8``, which GPUs from
    sm_89 run and CPUs emulate an element at a time; nor the sparse ones, which change the model's
    weights and are named where pruning is the question; nor ``mxfp4``, which only a mixture of experts
    has weights for; nor those of :data:`NAMED_ONLY`)."""
    untuned = [s for s in list_strategies()
               if not s.tuned and s.precision not in WEIGHT_ONLY and s.precision not in ("fp8", "mxfp4-bf16") and not s.sparse
               and s.name not in NAMED_ONLY]
    if spec is None or spec == "all" or spec == ["all"]:
        return untuned
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for n in names:
        if isinstance(n, Strategy):
            out.append(n)
        elif n.strip():
            out += untuned if n.strip() == "all" else [get_strategy(n.strip())]
    return list(dict.fromkeys(out))
