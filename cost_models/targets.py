"""The shipped targets, found by name: one TOML file each in ``cost_models/targets/``.

The name ``cpu`` is an alias: the shipped CPU file whose ``[host]`` describes this machine (read from
``/proc/cpuinfo``, :mod:`cost_models.host`), else ``cpu-zen4``, the machine the project specifies
(:func:`resolve_name`). Any other path ending in ``.toml`` is read as a target file
(:mod:`cost_models.target_file` says what it holds).
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from . import host
from .spec import TargetSpec
from .target_file import TargetError, parse_host, parse_target

TARGETS_DIR = Path(__file__).resolve().parent / "targets"

#: What the name ``cpu`` stands for on a machine no shipped CPU file describes.
DEFAULT_CPU = "cpu-zen4"


def list_targets() -> list[str]:
    """Names of the shipped targets, ``cpu`` (the alias of the host's CPU file) first among them."""
    return sorted(["cpu", *(p.stem for p in TARGETS_DIR.glob("*.toml"))])


def resolve_name(name: str) -> str:
    """The shipped file a target name stands for: ``cpu`` is the CPU file whose ``[host]`` describes
    this machine, else :data:`DEFAULT_CPU`; every other name is its own file."""
    if name != "cpu":
        return name
    for path in sorted(TARGETS_DIR.glob("cpu-*.toml")):
        raw = tomllib.loads(path.read_text()).get("host")
        if isinstance(raw, dict) and parse_host(raw, path.name).matches(host.host_cpu()):
            return path.stem
    return DEFAULT_CPU


def load_target(name_or_path: str | Path) -> TargetSpec:
    """Load a shipped target by name (``cpu``, ``cpu-zen4``, ``gpu``, ...) or any target file by path.
    ``cpu`` loads the file of this host's CPU (:func:`resolve_name`) under the name ``cpu``."""
    path = Path(name_or_path)
    alias = ""
    if path.suffix != ".toml":
        alias = str(name_or_path)
        path = TARGETS_DIR / f"{resolve_name(alias)}.toml"
        if not path.exists():
            raise TargetError(f"unknown target {str(name_or_path)!r}; known targets: {', '.join(list_targets())} "
                              "(or give the path of a .toml target file)")
    if not path.exists():
        raise TargetError(f"target file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise TargetError(f"{path.name}: not valid TOML: {err}") from None
    spec = parse_target(data, path.name)
    if alias and alias != spec.name:
        spec = dataclasses.replace(spec, name=alias)
    return dataclasses.replace(spec, path=str(path), file=path.stem)
