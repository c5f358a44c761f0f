"""Compilation strategies as data.

A strategy is a frozen, hashable record of one choice on each of four axes. Strategies are registered
by name, the way ``tvm.relax.pipeline`` registers pipelines: a name -> value map with an error listing
the known names.
"""

from __future__ import annotations

import dataclasses

FUSION = ("none", "tvm")
LAYOUT = ("native", "nhwc")
PRECISION = ("fp32", "fp16", "bf16", "int8")
TUNING = ("none",)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One way of compiling a model.

    ``fusion``: ``none`` (one kernel per operator) or ``tvm`` (FuseOps + FuseTIR, with the fused
    intermediates inlined by the schedule). ``layout``: ``native`` (as imported, NCHW for ONNX) or
    ``nhwc`` (ConvertLayout of conv2d to NHWC/OHWI). ``precision``: ``fp32``; ``fp16`` (TVM's
    ToMixedPrecision: conv2d/matmul in float16 accumulating in float32); ``bf16`` (the same casts in
    bfloat16, by this project's pass, since TVM's only knows float16); ``int8`` (this project's
    post-training quantization: int8 weights per output channel, int8 activations per tensor from
    calibration, int32 accumulation). ``tuning``: ``none``.
    """

    name: str
    fusion: str = "none"
    layout: str = "native"
    precision: str = "fp32"
    tuning: str = "none"

    def __post_init__(self) -> None:
        for axis, allowed in (("fusion", FUSION), ("layout", LAYOUT), ("precision", PRECISION),
                              ("tuning", TUNING)):
            value = getattr(self, axis)
            if value not in allowed:
                raise ValueError(f"strategy {self.name!r}: {axis}={value!r} is not one of {list(allowed)}")

    def axes(self) -> dict[str, str]:
        """The four axis values, for tables."""
        return {"fusion": self.fusion, "layout": self.layout, "precision": self.precision,
                "tuning": self.tuning}

    @property
    def key(self) -> str:
        """A stable identifier of the choices (not the name), for cache keys."""
        return f"fusion={self.fusion},layout={self.layout},precision={self.precision},tuning={self.tuning}"


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Register a strategy under its name; re-registering a name is an error."""
    if strategy.name in _REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
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


def list_strategies() -> list[Strategy]:
    """All registered strategies, in registration order."""
    return list(_REGISTRY.values())


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known strategies: {', '.join(_REGISTRY)}") from None


def parse_strategies(spec: str | list[str] | None) -> list[Strategy]:
    """Strategies from a comma-separated list of names, a list of names, or ``all``."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list_strategies()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if "all" in names:
        return list_strategies()
    return [get_strategy(n) for n in dict.fromkeys(names)]
