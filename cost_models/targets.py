"""Target descriptions: hardware figures as cited data.

A target is one TOML file in ``cost_models/targets/`` (or any path a user gives). Every number that
enters the energy model is a *figure*: a table with ``value``, a plausible ``low``/``high`` range (both required) and
the ``source`` it comes from (paper, table, process node), plus an optional ``note`` saying how it was
scaled. A file that lacks a field gets a :class:`TargetError` naming the file and the field.

Schema (see ``cpu.toml`` for a complete, commented example)::

    name = "cpu"
    description = "..."
    [compile]                # how the explorer compiles for this target (data only; no tvm here)
    tvm = "llvm"             # "llvm", "cuda", "rocm" or "none" (analysed from the lowered TIR, not built)
    arch = ""                # e.g. "sm_90" for cuda, "gfx942" for rocm; empty for the host CPU
    runs_here = true         # whether built variants run on the explorer's machine
    cores = 2                # optional: cores the target has, and the threads its builds and onnxruntime
                             # are timed with (default: every core of the machine that times them)
    [static_power_w]         # a figure
    [power_limit_w]          # optional figure: the device's power limit (TDP, board power), what a GEMM at
                             # peak and a copy at peak bandwidth must model under (a physical sanity check)
    [full_load_power_w]      # optional figure: a published measurement of the device under a dense GEMM
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
    private = false          # optional: true for a CPU cache each core has its own of (capacity and
                             # bandwidth are still the target's total): a kernel running on fewer
                             # threads than the target has cores reaches only their share of it
    [sparsity]               # optional: the sparse weights the hardware exploits (absent: it runs dense)
    source = "..."           # where the support is documented
    two_four_dtypes = ["float16"]    # MAC dtypes whose kernels run 2:4 weights at half the MACs, the
    two_four_metadata_bits = 2       # weights stored as the kept half plus this many bits per kept value
    two_four_tensorized_only = true  # only multiply-adds on tensor/matrix units run sparse
    unstructured_dtypes = ["int8"]   # MAC dtypes whose zero weights are skipped and not stored, the
    unstructured_index_bits = 4      # kept weights stored with this many bits of index per kept value
    [host]                   # optional: the CPUs this file describes, as /proc/cpuinfo names them
    vendor = "AuthenticAMD"
    family = 25
    models = [17, 160]       # any model of the family when absent
    [core]                   # optional, for CPUs: the latency model reads the kernels' schedules
    clock_hz = {figure}      # the clock the cores run at under load
    call_overhead_s = {figure}      # one kernel call from TVM's Relax VM (packed-function dispatch)
    parallel_overhead_s = {figure}  # a parallel loop's fork/join in TVM's thread pool
    special_cycles = {figure}       # cycles per element of exp (and of the special functions not below)
    special_relative = {erf = 5.6}  # optional: another special function's cycles per element over exp's
    emulated_cycles = {figure}      # cycles per element of arithmetic in an emulated dtype
    dispatch_per_cycle = 6          # instructions a core issues per cycle
    promoted_dtypes = ["bfloat16"]  # optional: computed in fp32, converted at loads and stores
    shared = [["fma", "alu"]]       # optional: work classes that issue on the same pipes (Intel's 512-bit
                                    # FMA and vector ALU on ports 0 and 5): their cycles add
    emulated_dtypes = ["float16"]   # optional: converted to fp32 and back around every operation
    source = "..."                  # where the pipe table comes from
    [[core.pipes]]                  # one table per class of work (see cost_models.latency)
    work = "fma"; count = 2; width_bits = 256; latency_cycles = 4

Levels from DRAM inward to the one that serves ``global`` accesses act as caches of each other: the
energy model sends each of them the bytes a cache of the next level's capacity lets through (see
:mod:`cost_models.energy`). Levels inside it hold only explicit buffers (GPU shared memory, registers).

The name ``cpu`` is an alias: the shipped CPU file whose ``[host]`` describes this machine (read from
``/proc/cpuinfo``), else ``cpu-zen4``, the machine the project specifies (:func:`resolve_name`).
"""
from __future__ import annotations

import dataclasses
import functools
import tomllib
from pathlib import Path
from typing import Any, Mapping

TARGETS_DIR = Path(__file__).resolve().parent / "targets"

#: Operation kinds a workload counts (see cost_models.workload).
OP_KINDS = ("mac", "add", "mul", "div", "cmp", "special", "select", "cast")

#: What the name ``cpu`` stands for on a machine no shipped CPU file describes.
DEFAULT_CPU = "cpu-zen4"

#: Classes of work a core's pipes execute (see :mod:`cost_models.latency`).
WORK_CLASSES = ("fma", "imul", "alu", "div", "dot", "load", "store", "insert")

#: How a target is compiled: TVM's llvm (CPU), cuda or rocm code generators, or not at all (analysed
#: from the generic lowering's TIR).
COMPILE_KINDS = ("llvm", "cuda", "rocm", "none")

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
        return dict(self.energy_pj)[kind]


@dataclasses.dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: Figure
    energy_pj_per_byte: Figure
    serves: tuple[str, ...] = ()  # access kinds charged here: "global", "shared", "local"
    per_unit: bool = False  # one such memory per compute unit (an SM's L1); capacity is one unit's
    private: bool = False  # one per CPU core: a kernel on fewer threads reaches only their share


@dataclasses.dataclass(frozen=True)
class Pipe:
    """Execution pipes of one class of work in a CPU core (:data:`WORK_CLASSES`)."""

    work: str
    count: int  # pipes per core
    width_bits: int  # bits one pipe processes per cycle; a wider operation occupies several
    latency_cycles: int  # cycles from an operation's inputs to its result (bounds a chain of them)


@dataclasses.dataclass(frozen=True)
class CoreSpec:
    """How fast one core of a CPU target runs a schedule: its clock, pipes and call overheads."""

    clock_hz: Figure
    call_overhead_s: Figure
    parallel_overhead_s: Figure
    special_cycles: Figure
    emulated_cycles: Figure
    dispatch_per_cycle: int
    pipes: tuple[Pipe, ...]
    source: str
    promoted_dtypes: tuple[str, ...] = ()  # computed in fp32, converting at loads and stores
    emulated_dtypes: tuple[str, ...] = ()  # converted to fp32 and back around every operation
    shared: tuple[tuple[str, ...], ...] = ()  # work classes that issue on the same pipes: their cycles add
    special_relative: tuple[tuple[str, float], ...] = ()  # (function, its cycles per element over exp's)

    def pipe(self, work: str) -> Pipe:
        """The pipes that execute ``work``."""
        return {p.work: p for p in self.pipes}[work]

    def special_weight(self, function: str) -> float:
        """A special function's cycles per element over ``special_cycles`` (1 where none is given)."""
        return dict(self.special_relative).get(function, 1.0)


@dataclasses.dataclass(frozen=True)
class SparsitySupport:
    """What a target's hardware makes of sparse weights (see :mod:`cost_models.sparsity`): the MAC
    dtypes whose kernels run 2:4 structured weights at half the MACs, and those whose zero weights are
    skipped, with the metadata each stores per kept weight. A dtype in neither list runs dense."""

    source: str
    note: str = ""
    two_four_dtypes: tuple[str, ...] = ()
    two_four_metadata_bits: int = 2
    two_four_tensorized_only: bool = False  # the sparse units are the tensor/matrix units: SIMT MACs run dense
    unstructured_dtypes: tuple[str, ...] = ()
    unstructured_index_bits: int = 0


DENSE = SparsitySupport(source="no [sparsity] table: the hardware runs sparse weights dense")


@dataclasses.dataclass(frozen=True)
class HostMatch:
    """The CPUs a target file describes, as ``/proc/cpuinfo`` names them."""

    vendor: str
    family: int
    models: tuple[int, ...] = ()  # empty: any model of the family

    def matches(self, cpu: "HostCPU") -> bool:
        """Whether ``cpu`` is one of the CPUs this file describes."""
        return (cpu.vendor == self.vendor and cpu.family == self.family
                and (not self.models or cpu.model in self.models))


@dataclasses.dataclass(frozen=True)
class HostCPU:
    """This machine's CPU identity from ``/proc/cpuinfo`` (empty off Linux)."""

    vendor: str = ""
    family: int = -1
    model: int = -1
    model_name: str = ""


@functools.lru_cache(maxsize=1)
def host_cpu() -> HostCPU:
    """The CPU this process runs on (read once; :class:`HostCPU` of ``/proc/cpuinfo``'s first CPU)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return HostCPU()
    fields = {}
    for line in path.read_text().split("\n\n")[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    try:
        return HostCPU(fields.get("vendor_id", ""), int(fields.get("cpu family", -1)), int(fields.get("model", -1)),
                       fields.get("model name", ""))
    except ValueError:
        return HostCPU(fields.get("vendor_id", ""), model_name=fields.get("model name", ""))


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
    core: CoreSpec | None = None  # CPU targets: what the latency model reads schedules with
    host: HostMatch | None = None  # the CPUs this file describes (None: none that runs the explorer)
    sparsity: SparsitySupport = DENSE  # what the hardware exploits of sparse weights
    power_limit_w: Figure | None = None  # the device's power limit (TDP or board power)
    full_load_power_w: Figure | None = None  # a published measurement of it under a dense GEMM
    file: str = dataclasses.field(default="", compare=False)  # the file's name (``cpu`` loads ``cpu-zen5`` here)

    @property
    def describes_host(self) -> bool:
        """Whether this target describes the CPU this process runs on (then its builds' measured
        times are the target's own)."""
        return self.runs_here and self.host is not None and self.host.matches(host_cpu())

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
        if self.core is not None:
            for name in ("clock_hz", "call_overhead_s", "parallel_overhead_s", "special_cycles", "emulated_cycles"):
                out[f"core.{name}"] = getattr(self.core, name)
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


def _whole(table: Mapping[str, Any], key: str, where: str) -> int:
    value = _req(table, key, where, int)
    if value <= 0:
        raise TargetError(f"{where}.{key} must be a positive whole number, got {value!r}")
    return value


def _core(raw: Any, where: str) -> CoreSpec:
    if not isinstance(raw, dict):
        raise TargetError(f"{where} must be a table")
    pipes = []
    for i, p in enumerate(_req(raw, "pipes", where, list)):
        at = f"{where}.pipes[{i}]"
        if not isinstance(p, dict):
            raise TargetError(f"{at} must be a table")
        work = _req(p, "work", at, str)
        if work not in WORK_CLASSES:
            raise TargetError(f"{at}.work must be one of {list(WORK_CLASSES)}, got {work!r}")
        pipes.append(Pipe(work, _whole(p, "count", at), _whole(p, "width_bits", at), _whole(p, "latency_cycles", at)))
    missing = sorted(set(WORK_CLASSES) - {p.work for p in pipes})
    if missing:
        raise TargetError(f"{where}.pipes lacks the work classes {missing}")
    source = _req(raw, "source", where, str).strip()
    if not source:
        raise TargetError(f"{where}.source is empty: the pipe table must name where it comes from")
    return CoreSpec(clock_hz=_figure(raw, "clock_hz", where), call_overhead_s=_figure(raw, "call_overhead_s", where),
                    parallel_overhead_s=_figure(raw, "parallel_overhead_s", where),
                    special_cycles=_figure(raw, "special_cycles", where),
                    emulated_cycles=_figure(raw, "emulated_cycles", where),
                    dispatch_per_cycle=_whole(raw, "dispatch_per_cycle", where), pipes=tuple(pipes), source=source,
                    promoted_dtypes=tuple(str(d) for d in raw.get("promoted_dtypes", ())),
                    emulated_dtypes=tuple(str(d) for d in raw.get("emulated_dtypes", ())),
                    shared=_shared(raw.get("shared", []), where),
                    special_relative=_special_relative(raw.get("special_relative", {}), where))


def _special_relative(raw: Any, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(raw, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                            for v in raw.values()):
        raise TargetError(f"{where}.special_relative must be a table of function names to positive numbers")
    return tuple(sorted((str(k), float(v)) for k, v in raw.items()))


def _dtypes(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise TargetError(f"{where}.{key} must be a list of dtype names")
    return tuple(value)


def _sparsity(raw: Any, where: str) -> SparsitySupport:
    if not isinstance(raw, dict):
        raise TargetError(f"{where} must be a table")
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(SparsitySupport)})
    if unknown:
        raise TargetError(f"{where} has unknown fields {unknown}")
    source = _req(raw, "source", where, str).strip()
    if not source:
        raise TargetError(f"{where}.source is empty: say where the hardware's sparsity support is documented")
    bits = {k: _req(raw, k, where, int) for k in ("two_four_metadata_bits", "unstructured_index_bits") if k in raw}
    if any(b < 0 for b in bits.values()):
        raise TargetError(f"{where}: metadata bits must not be negative")
    if "two_four_tensorized_only" in raw:
        bits["two_four_tensorized_only"] = _req(raw, "two_four_tensorized_only", where, bool)
    return SparsitySupport(source=source, note=str(raw.get("note", "")),
                           two_four_dtypes=_dtypes(raw, "two_four_dtypes", where),
                           unstructured_dtypes=_dtypes(raw, "unstructured_dtypes", where), **bits)


def _shared(raw: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(raw, list) or not all(isinstance(g, list) and all(w in WORK_CLASSES for w in g) for g in raw):
        raise TargetError(f"{where}.shared must be a list of lists of work classes ({', '.join(WORK_CLASSES)})")
    return tuple(tuple(g) for g in raw)


def _host(raw: Any, where: str) -> HostMatch:
    if not isinstance(raw, dict):
        raise TargetError(f"{where} must be a table")
    models = raw.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, int) for m in models):
        raise TargetError(f"{where}.models must be a list of model numbers")
    return HostMatch(_req(raw, "vendor", where, str), _req(raw, "family", where, int), tuple(models))


def parse_target(data: Mapping[str, Any], where: str) -> TargetSpec:
    """Build a :class:`TargetSpec` from parsed TOML, naming the offending field on error."""
    name = _req(data, "name", where, str)
    compile_ = _req(data, "compile", where, dict)
    tvm = _req(compile_, "tvm", f"{where}.compile", str)
    if tvm not in COMPILE_KINDS:
        raise TargetError(f"{where}.compile.tvm must be one of {', '.join(map(repr, COMPILE_KINDS))}, got {tvm!r}")
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
            private=_req(raw, "private", at, bool) if "private" in raw else False,
        ))
    if len(levels) < 2:
        raise TargetError(f"{where}.memory must list DRAM and at least one on-chip level")
    if max(lvl.capacity_bytes for lvl in levels) != levels[0].capacity_bytes:
        raise TargetError(f"{where}.memory[0] must be DRAM, the largest level (outermost first)")
    cores = compile_.get("cores", 0)
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 0:
        raise TargetError(f"{where}.compile.cores must be a whole number of cores, got {cores!r}")
    if tvm in ("cuda", "rocm") and not compile_.get("arch"):
        raise TargetError(f"{where}.compile.arch is missing: a {tvm} target needs one (e.g. 'sm_90', 'gfx942')")
    return TargetSpec(
        core=_core(data["core"], f"{where}.core") if "core" in data else None,
        host=_host(data["host"], f"{where}.host") if "host" in data else None,
        sparsity=_sparsity(data["sparsity"], f"{where}.sparsity") if "sparsity" in data else DENSE,
        power_limit_w=_figure(data, "power_limit_w", where) if "power_limit_w" in data else None,
        full_load_power_w=_figure(data, "full_load_power_w", where) if "full_load_power_w" in data else None,
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
    """Names of the shipped targets, ``cpu`` (the alias of the host's CPU file) first among them."""
    return sorted(["cpu", *(p.stem for p in TARGETS_DIR.glob("*.toml"))])


def resolve_name(name: str) -> str:
    """The shipped file a target name stands for: ``cpu`` is the CPU file whose ``[host]`` describes
    this machine, else :data:`DEFAULT_CPU`; every other name is its own file."""
    if name != "cpu":
        return name
    for path in sorted(TARGETS_DIR.glob("cpu-*.toml")):
        raw = tomllib.loads(path.read_text()).get("host")
        if isinstance(raw, dict) and _host(raw, path.name).matches(host_cpu()):
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
