"""What a user says about a model: the name tables give it, its input shapes (``--input-shape``)
and the inputs it freezes to constants (``--input-value``)."""

from __future__ import annotations

import re
from pathlib import Path

from explorer.core.errors import ExplorerError
from explorer.model.phases import Phase

_SHAPE_ARG = re.compile(r"^(?P<name>[^:]+):(?P<dims>\d+(,\d+)*)$")


def parse_input_shapes(args: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:D1,D2,...`` strings into a name -> shape map."""
    shapes: dict[str, tuple[int, ...]] = {}
    for arg in args or []:
        m = _SHAPE_ARG.match(arg.strip())
        if not m:
            raise ExplorerError(f"bad --input-shape {arg!r}: expected NAME:D1,D2,... (e.g. images:1,3,320,320)")
        shapes[m["name"]] = tuple(int(d) for d in m["dims"].split(","))
    return shapes


_VALUE_ARG = re.compile(r"^(?P<name>[^=]+)=(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)$")


def parse_input_values(args: list[str] | None) -> dict[str, float]:
    """Parse ``NAME=VALUE`` strings (``--input-value``) into a name -> value map."""
    values: dict[str, float] = {}
    for arg in args or []:
        m = _VALUE_ARG.match(arg.strip())
        if not m:
            raise ExplorerError(f"bad --input-value {arg!r}: expected NAME=NUMBER (e.g. sr=16000)")
        values[m["name"]] = float(m["value"])
    return values


def instance_name(name: str, phase: Phase | None = None, batch: int | None = None,
                  kv_cache_dtype: str = "auto") -> str:
    """The name tables give a model prepared for ``phase`` at ``batch`` with its cache in
    ``kv_cache_dtype``: ``gpt2@decode128@b8``, ``gpt2@decode128@kv-float16``."""
    kv = f"@kv-{kv_cache_dtype}" if phase and kv_cache_dtype != "auto" else ""
    return name + (phase.suffix if phase else "") + kv + (f"@b{batch}" if batch is not None else "")


def model_name(model: str) -> str:
    """The name a model goes by in tables: a file's stem, or the zoo name."""
    path = Path(model)
    return path.stem if path.suffix == ".onnx" or path.exists() else model
