"""Target descriptions: hardware figures as cited data.

A target is one TOML file in ``cost_models/targets/`` (or any path a user gives). Every number that
enters the energy model is a *figure*: a table with ``value``, a plausible ``low``/``high`` range (both required) and
the ``source`` it comes from (paper, table, process node), plus an optional ``note`` saying how it was
scaled. A file that lacks a field gets a :class:`TargetError` naming the file and the field.

Schema (see ``cpu.toml`` for a complete, commented example)::

    name = "cpu"
    description = "..."
    [compile]                # how the explorer compiles for this target (data only; no tvm here)
    tvm = "llvm"             # "llvm", "cuda" or "none" (analysed from the lowered TIR, not built)
    arch = ""                # e.g. "sm_90" for cuda; empty for the host CPU
    runs_here = true         # whether built variants run on the explorer's machine
    cores = 2                # optional: cores the target has, and the threads its builds and onnxruntime
                             # are timed with (default: every core of the machine that times them)
    [static_power_w]         # a figure
    [[compute]]              # one table per dtype the compute units support natively
    dtype = "float32"
    peak_ops_per_s = {value=..., low=..., high=..., source="..."}   # multiply-adds count as 2 ops
    energy_pj = { mac = {figure}, add = {figure}, ... }              # per operation, by kind
    [[memory]]               # outermost (DRAM) first, innermost last
    name = "dram"
    capacity_bytes = 1.0e11
    bandwidth_bytes_per_s = {figure}
    energy_pj_per_byte = {figure}
    serves = ["global"]      # optional: which accesses this level serves ("global", "shared", "local");
                             # an access kind no level lists is charged at the innermost level
    per_unit = false         # optional: true for a memory private to each compute unit (a GPU SM's
                             # L1); capacity_bytes is then one unit's

Levels from DRAM inward to the one that serves ``global`` accesses act as caches of each other: the
energy model sends each of them the bytes a cache of the next level's capacity lets through (see
:mod:`cost_models.energy`). Levels inside it hold only explicit buffers (GPU shared memory, registers).
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Mapping

TARGETS_DIR = Path(__file__).resolve().parent / "targets"

#: Operation kinds a workload counts (see cost_models.workload).
OP_KINDS = ("mac", "add", "mul", "div", "cmp", "special", "select", "cast")

#: Kinds of on-chip access a workload distinguishes: loads/stores of kernel arguments and scratch
#: ("global"), of GPU shared memory ("shared") and of register/local buffers ("local").
ACCESS_KINDS = ("global", "shared", "local")


class TargetError(ValueError):
    """A target file is missing, malformed or names an unknown target."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """One cited hardware figure with its plausible range."""

    value: float
    low: float
    high: float
    source: str
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ComputeUnit:
    """Compute capability for one dtype: peak rate and energy per operation kind."""

    dtype: str
    peak_ops_per_s: Figure
    energy_pj: tuple[tuple[str, Figure], ...]  # (op kind, figure), sorted by kind

    def energy_of(self, kind: str) -> Figure:
        """The energy figure for an operation kind on this unit."""
        for name, fig in self.energy_pj:
            if name == kind:
                return fig
        raise KeyError(kind)


@dataclasses.dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: Figure
    energy_pj_per_byte: Figure
    serves: tuple[str, ...] = ()  # access kinds charged here: "global", "shared", "local"
    per_unit: bool = False  # one such memory per compute unit (an SM's L1); capacity is one unit's


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A hardware target: how to compile for it and what its operations and bytes cost."""

    name: str
    description: str
    tvm: str
    arch: str
    runs_here: bool
    static_power_w: Figure
    compute: tuple[ComputeUnit, ...]
    memory: tuple[MemoryLevel, ...]  # outermost first
    path: str = dataclasses.field(default="", compare=False)
    cores: int = 0  # cores of the target (0: not said): the threads variants are timed with

    @property
    def dtypes(self) -> tuple[str, ...]:
        """Dtypes the target's compute units support natively."""
        return tuple(c.dtype for c in self.compute)

    @property
    def builds(self) -> bool:
        """Whether the explorer produces a binary for this target (as opposed to analysis only)."""
        return self.tvm != "none"

    def level_for(self, access: str) -> MemoryLevel:
        """The on-chip level that serves loads and stores of kind ``access`` (see ACCESS_KINDS):
        the innermost level listing it in ``serves``, else the innermost level."""
        for level in reversed(self.memory[1:]):
            if access in level.serves:
                return level
        return self.memory[-1]

    def unit_for(self, dtype: str) -> ComputeUnit:
        """The compute unit that executes ``dtype``; unsupported dtypes run on the widest unit."""
        for unit in self.compute:
            if unit.dtype == dtype:
                return unit
        # An operation in a dtype the target lacks (e.g. int64 index math, fp32 on an int8 NPU)
        # is charged to the most expensive unit: the cost of emulating it is at least that.
        return max(self.compute, key=lambda u: u.energy_of("mac").value)

    def figures(self) -> dict[str, Figure]:
        """Every figure in the target, keyed by a dotted path (for uncertainty sampling and reports)."""
        out = {"static_power_w": self.static_power_w}
        for unit in self.compute:
            out[f"compute.{unit.dtype}.peak_ops_per_s"] = unit.peak_ops_per_s
            for kind, fig in unit.energy_pj:
                out[f"compute.{unit.dtype}.energy_pj.{kind}"] = fig
        for level in self.memory:
            out[f"memory.{level.name}.bandwidth_bytes_per_s"] = level.bandwidth_bytes_per_s
            out[f"memory.{level.name}.energy_pj_per_byte"] = level.energy_pj_per_byte
        return out


def _req(table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in table:
        raise TargetError(f"{where}.{key} is missing")
    value = table[key]
    if kind is float:
        kind = (int, float)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TargetError(f"{where}.{key} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _figure(table: Mapping[str, Any], key: str, where: str) -> Figure:
    raw = _req(table, key, where, dict)
    at = f"{where}.{key}"
    value = float(_req(raw, "value", at, float))
    low = float(_req(raw, "low", at, float))
    high = float(_req(raw, "high", at, float))
    source = _req(raw, "source", at, str).strip()
    if not source:
        raise TargetError(f"{at}.source is empty: every figure must name where it comes from")
    if not (0 <= low <= value <= high):
        raise TargetError(f"{at}: need 0 <= low <= value <= high, got {low}, {value}, {high}")
    return Figure(value, low, high, source, str(raw.get("note", "")))


def parse_target(data: Mapping[str, Any], where: str) -> TargetSpec:
    """Build a :class:`TargetSpec` from parsed TOML, naming the offending field on error."""
    name = _req(data, "name", where, str)
    compile_ = _req(data, "compile", where, dict)
    tvm = _req(compile_, "tvm", f"{where}.compile", str)
    if tvm not in ("llvm", "cuda", "none"):
        raise TargetError(f"{where}.compile.tvm must be 'llvm', 'cuda' or 'none', got {tvm!r}")
    units = []
    for i, raw in enumerate(_req(data, "compute", where, list)):
        at = f"{where}.compute[{i}]"
        if not isinstance(raw, dict):
            raise TargetError(f"{at} must be a table")
        energy = _req(raw, "energy_pj", at, dict)
        unknown = sorted(set(energy) - set(OP_KINDS))
        if unknown:
            raise TargetError(f"{at}.energy_pj has unknown operation kinds {unknown}; known: {list(OP_KINDS)}")
        if "mac" not in energy:
            raise TargetError(f"{at}.energy_pj.mac is missing")
        units.append(ComputeUnit(
            dtype=_req(raw, "dtype", at, str),
            peak_ops_per_s=_figure(raw, "peak_ops_per_s", at),
            energy_pj=tuple(sorted((k, _figure(energy, k, f"{at}.energy_pj")) for k in energy)),
        ))
    if not units:
        raise TargetError(f"{where}.compute must list at least one compute unit")
    levels = []
    for i, raw in enumerate(_req(data, "memory", where, list)):
        at = f"{where}.memory[{i}]"
        if not isinstance(raw, dict):
            raise TargetError(f"{at} must be a table")
        serves = tuple(raw.get("serves", ()))
        bad = sorted(set(serves) - set(ACCESS_KINDS))
        if bad:
            raise TargetError(f"{at}.serves has unknown access kinds {bad}; known: {list(ACCESS_KINDS)}")
        if float(_req(raw, "capacity_bytes", at, float)) <= 0:
            raise TargetError(f"{at}.capacity_bytes must be positive")
        levels.append(MemoryLevel(
            name=_req(raw, "name", at, str),
            capacity_bytes=float(_req(raw, "capacity_bytes", at, float)),
            bandwidth_bytes_per_s=_figure(raw, "bandwidth_bytes_per_s", at),
            energy_pj_per_byte=_figure(raw, "energy_pj_per_byte", at),
            serves=serves,
            per_unit=_req(raw, "per_unit", at, bool) if "per_unit" in raw else False,
        ))
    if len(levels) < 2:
        raise TargetError(f"{where}.memory must list DRAM and at least one on-chip level")
    if max(lvl.capacity_bytes for lvl in levels) != levels[0].capacity_bytes:
        raise TargetError(f"{where}.memory[0] must be DRAM, the largest level (outermost first)")
    cores = compile_.get("cores", 0)
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 0:
        raise TargetError(f"{where}.compile.cores must be a whole number of cores, got {cores!r}")
    if tvm == "cuda" and not compile_.get("arch"):
        raise TargetError(f"{where}.compile.arch is missing: a cuda target needs one (e.g. 'sm_90')")
    return TargetSpec(
        name=name,
        description=str(data.get("description", "")),
        tvm=tvm,
        arch=str(compile_.get("arch", "")),
        runs_here=_req(compile_, "runs_here", f"{where}.compile", bool),
        cores=cores,
        static_power_w=_figure(data, "static_power_w", where),
        compute=tuple(units),
        memory=tuple(levels),
    )


def list_targets() -> list[str]:
    """Names of the shipped targets."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name_or_path: str | Path) -> TargetSpec:
    """Load a shipped target by name (``cpu``, ``gpu``, ``npu``) or any target file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = TARGETS_DIR / f"{name_or_path}.toml"
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
    return dataclasses.replace(spec, path=str(path))
