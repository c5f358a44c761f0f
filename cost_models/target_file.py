"""Target files: hardware figures as cited data, parsed into :class:`cost_models.spec.TargetSpec`.

A target is one TOML file in ``cost_models/targets/`` (or any path a user gives). Every number that
enters the energy model is a *figure*: a table with ``value``, a plausible ``low``/``high`` range (both required) and
the ``source`` it comes from (paper, table, process node), plus an optional ``note`` saying how it was
scaled. A file that lacks a field gets a :class:`TargetError` naming the file and the field.

Schema (see ``cpu-zen4.toml`` for a complete, commented example)::

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
    [kernel_launch_s]        # optional figure, for accelerators without a [core]: the time each kernel adds
                             # to its work, launched as serving engines launch a step (a captured CUDA graph)
    [units]                  # optional, for GPUs: the compute units a kernel's thread blocks spread over,
    count = 132              # for the wave model (cost_models.spec.wave_efficiency): SMs, CUs
    source = "..."
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
    [interconnect]           # optional: the links between devices (absent: one device only; see
                             # cost_models.interconnect), each figure per device
    name = "NVLink 4 through NVSwitch"
    topology = "switch"      # "switch", "mesh" (a link per peer) or "torus"
    domain_devices = 8       # the most devices the links join
    source = "..."
    bandwidth_bytes_per_s = {figure}  # the bus bandwidth (NCCL's busbw) a large all-reduce achieves
    latency_s = {figure}              # one collective's fixed cost (a small all-reduce's time)
    energy_pj_per_byte = {figure}     # per byte sent, SerDes at both ends and any switch between
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
    float8_widen_cycles = {figure}  # optional: cycles per vector of float8 operands a multiply-add widens
                                    # (absent: one operation on the alu pipes)
    dispatch_per_cycle = 6          # instructions a core issues per cycle
    promoted_dtypes = ["bfloat16"]  # optional: computed in fp32, converted at loads and stores
    shared = [["fma", "alu"]]       # optional: work classes that issue on the same pipes (Intel's 512-bit
                                    # FMA and vector ALU on ports 0 and 5): their cycles add
    emulated_dtypes = ["float16"]   # optional: converted to fp32 and back around every operation
    source = "..."                  # where the pipe table comes from
    [[core.pipes]]                  # one table per class of work (see cost_models.latency); "convert"
                                    # is optional (without it, conversions run on the "alu" pipes)
    work = "fma"; count = 2; width_bits = 256; latency_cycles = 4

Levels from DRAM inward to the one that serves ``global`` accesses act as caches of each other: the
energy model sends each of them the bytes a cache of the next level's capacity lets through (see
:mod:`cost_models.energy`). Levels inside it hold only explicit buffers (GPU shared memory, registers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .spec import (
    ACCESS_KINDS,
    COMPILE_KINDS,
    DENSE,
    OP_KINDS,
    OPTIONAL_WORK_CLASSES,
    TOPOLOGIES,
    WORK_CLASSES,
    ComputeUnit,
    ComputeUnits,
    CoreSpec,
    Figure,
    HostMatch,
    Interconnect,
    MemoryLevel,
    Pipe,
    SparsitySupport,
    TargetSpec,
)


class TargetError(ValueError):
    """A target file is missing, malformed or names an unknown target."""


def _req(table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in table:
        raise TargetError(f"{where}.{key} is missing")
    value = table[key]
    if kind is float:
        kind = (int, float)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TargetError(f"{where}.{key} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _table(raw: Any, where: str) -> Mapping[str, Any]:
    """``raw`` where it is a TOML table."""
    if not isinstance(raw, dict):
        raise TargetError(f"{where} must be a table")
    return raw


def _tables(data: Mapping[str, Any], key: str, where: str):
    """``(where, table)`` for each table of the list ``data[key]``."""
    for i, raw in enumerate(_req(data, key, where, list)):
        at = f"{where}.{key}[{i}]"
        yield at, _table(raw, at)


def parse_figure(table: Mapping[str, Any], key: str, where: str) -> Figure:
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
    _table(raw, where)
    pipes = []
    for at, p in _tables(raw, "pipes", where):
        work = _req(p, "work", at, str)
        if work not in WORK_CLASSES:
            raise TargetError(f"{at}.work must be one of {list(WORK_CLASSES)}, got {work!r}")
        pipes.append(Pipe(work, _whole(p, "count", at), _whole(p, "width_bits", at), _whole(p, "latency_cycles", at)))
    missing = sorted(set(WORK_CLASSES) - set(OPTIONAL_WORK_CLASSES) - {p.work for p in pipes})
    if missing:
        raise TargetError(f"{where}.pipes lacks the work classes {missing}")
    source = _req(raw, "source", where, str).strip()
    if not source:
        raise TargetError(f"{where}.source is empty: the pipe table must name where it comes from")
    return CoreSpec(clock_hz=parse_figure(raw, "clock_hz", where), call_overhead_s=parse_figure(raw, "call_overhead_s", where),
                    parallel_overhead_s=parse_figure(raw, "parallel_overhead_s", where),
                    special_cycles=parse_figure(raw, "special_cycles", where),
                    emulated_cycles=parse_figure(raw, "emulated_cycles", where),
                    dispatch_per_cycle=_whole(raw, "dispatch_per_cycle", where), pipes=tuple(pipes), source=source,
                    promoted_dtypes=tuple(str(d) for d in raw.get("promoted_dtypes", ())),
                    emulated_dtypes=tuple(str(d) for d in raw.get("emulated_dtypes", ())),
                    shared=_shared(raw.get("shared", []), where),
                    special_relative=_special_relative(raw.get("special_relative", {}), where),
                    float8_widen_cycles=(parse_figure(raw, "float8_widen_cycles", where)
                                         if "float8_widen_cycles" in raw else None))


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
    _table(raw, where)
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


def _interconnect(raw: Any, where: str) -> Interconnect:
    _table(raw, where)
    topology = _req(raw, "topology", where, str)
    if topology not in TOPOLOGIES:
        raise TargetError(f"{where}.topology must be one of {', '.join(map(repr, TOPOLOGIES))}, got {topology!r}")
    source = _req(raw, "source", where, str).strip()
    if not source:
        raise TargetError(f"{where}.source is empty: say where the links and their topology are documented")
    return Interconnect(name=_req(raw, "name", where, str), topology=topology,
                        domain_devices=_whole(raw, "domain_devices", where),
                        bandwidth_bytes_per_s=parse_figure(raw, "bandwidth_bytes_per_s", where),
                        latency_s=parse_figure(raw, "latency_s", where),
                        energy_pj_per_byte=parse_figure(raw, "energy_pj_per_byte", where),
                        source=source, note=str(raw.get("note", "")))


def _units(raw: Any, where: str) -> ComputeUnits:
    _table(raw, where)
    source = _req(raw, "source", where, str).strip()
    if not source:
        raise TargetError(f"{where}.source is empty: say where the compute units are documented")
    return ComputeUnits(count=_whole(raw, "count", where), source=source)


def _shared(raw: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(raw, list) or not all(isinstance(g, list) and all(w in WORK_CLASSES for w in g) for g in raw):
        raise TargetError(f"{where}.shared must be a list of lists of work classes ({', '.join(WORK_CLASSES)})")
    return tuple(tuple(g) for g in raw)


def parse_host(raw: Any, where: str) -> HostMatch:
    _table(raw, where)
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
    for at, raw in _tables(data, "compute", where):
        energy = _req(raw, "energy_pj", at, dict)
        unknown = sorted(set(energy) - set(OP_KINDS))
        if unknown:
            raise TargetError(f"{at}.energy_pj has unknown operation kinds {unknown}; known: {list(OP_KINDS)}")
        if "mac" not in energy:
            raise TargetError(f"{at}.energy_pj.mac is missing")
        units.append(ComputeUnit(
            dtype=_req(raw, "dtype", at, str),
            peak_ops_per_s=parse_figure(raw, "peak_ops_per_s", at),
            energy_pj=tuple(sorted((k, parse_figure(energy, k, f"{at}.energy_pj")) for k in energy)),
        ))
    if not units:
        raise TargetError(f"{where}.compute must list at least one compute unit")
    levels = []
    for at, raw in _tables(data, "memory", where):
        serves = tuple(raw.get("serves", ()))
        bad = sorted(set(serves) - set(ACCESS_KINDS))
        if bad:
            raise TargetError(f"{at}.serves has unknown access kinds {bad}; known: {list(ACCESS_KINDS)}")
        if float(_req(raw, "capacity_bytes", at, float)) <= 0:
            raise TargetError(f"{at}.capacity_bytes must be positive")
        levels.append(MemoryLevel(
            name=_req(raw, "name", at, str),
            capacity_bytes=float(_req(raw, "capacity_bytes", at, float)),
            bandwidth_bytes_per_s=parse_figure(raw, "bandwidth_bytes_per_s", at),
            energy_pj_per_byte=parse_figure(raw, "energy_pj_per_byte", at),
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
        host=parse_host(data["host"], f"{where}.host") if "host" in data else None,
        sparsity=_sparsity(data["sparsity"], f"{where}.sparsity") if "sparsity" in data else DENSE,
        power_limit_w=parse_figure(data, "power_limit_w", where) if "power_limit_w" in data else None,
        full_load_power_w=parse_figure(data, "full_load_power_w", where) if "full_load_power_w" in data else None,
        kernel_launch_s=parse_figure(data, "kernel_launch_s", where) if "kernel_launch_s" in data else None,
        units=_units(data["units"], f"{where}.units") if "units" in data else None,
        interconnect=_interconnect(data["interconnect"], f"{where}.interconnect") if "interconnect" in data else None,
        name=name,
        description=str(data.get("description", "")),
        tvm=tvm,
        arch=str(compile_.get("arch", "")),
        runs_here=_req(compile_, "runs_here", f"{where}.compile", bool),
        cores=cores,
        static_power_w=parse_figure(data, "static_power_w", where),
        compute=tuple(units),
        memory=tuple(levels),
    )
