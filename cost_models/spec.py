"""A hardware target as records: its compute units, memory levels, cores and power, each figure cited.

These are what a target file (:mod:`cost_models.target_file`) parses into and what the energy and
latency models read; :mod:`cost_models.targets` finds the files by name.
"""

from __future__ import annotations

import dataclasses
import math

from . import host
from .host import HostCPU

#: Operation kinds a workload counts (see cost_models.workload).
OP_KINDS = ("mac", "add", "mul", "div", "cmp", "special", "select", "cast")

#: Classes of work a core's pipes execute (see :mod:`cost_models.latency`).
WORK_CLASSES = ("fma", "imul", "alu", "div", "dot", "load", "store", "insert", "convert")

#: Work classes a core file may leave out, and the class that then runs them: a core whose file
#: measures no conversion pipes converts on its ``alu`` pipes.
OPTIONAL_WORK_CLASSES = {"convert": "alu"}

#: How a target is compiled: TVM's llvm (CPU), cuda or rocm code generators, or not at all (analysed
#: from the generic lowering's TIR).
COMPILE_KINDS = ("llvm", "cuda", "rocm", "none")

#: How an interconnect joins the devices of one domain: through switches (every device reaches any other at
#: its whole bandwidth: NVLink and NVSwitch), a link to each peer (a full mesh: Infinity Fabric between
#: MI300Xs, where a collective over fewer devices uses fewer links), or a torus of links (TPU ICI).
TOPOLOGIES = ("switch", "mesh", "torus")

#: Kinds of on-chip access a workload distinguishes: loads/stores of kernel arguments and scratch
#: ("global"), of GPU shared memory ("shared") and of register/local buffers ("local").
ACCESS_KINDS = ("global", "shared", "local")


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
    float8_widen_cycles: Figure | None = None  # cycles per vector of float8 widened to fp32 (bit arithmetic)

    def runs_on(self, work: str) -> str:
        """The class whose pipes execute ``work`` on this core (an optional class it lacks falls back)."""
        return work if any(p.work == work for p in self.pipes) else OPTIONAL_WORK_CLASSES.get(work, work)

    def pipe(self, work: str) -> Pipe:
        """The pipes that execute ``work``."""
        return {p.work: p for p in self.pipes}[self.runs_on(work)]

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
class Interconnect:
    """The links between the devices of one scale-up domain, as a tensor-parallel collective uses them
    (see :mod:`cost_models.interconnect`): not a memory level, whose bytes the reuse model would cache."""

    name: str                          # "NVLink 4 through NVSwitch"
    topology: str                      # one of TOPOLOGIES
    domain_devices: int                # the most devices one domain joins (beyond: the network, not modelled)
    bandwidth_bytes_per_s: Figure      # the bus bandwidth a large collective achieves per device over the domain
    latency_s: Figure                  # the fixed cost of one collective (a small message's time)
    energy_pj_per_byte: Figure         # per byte a device sends, over the whole path to its peer
    source: str
    note: str = ""

    def bandwidth_share(self, devices: int) -> float:
        """The share of :attr:`bandwidth_bytes_per_s` a collective over ``devices`` reaches: all of it
        through switches or a torus ring; in a full mesh, the ``devices - 1`` links to its peers of the
        ``domain_devices - 1`` each device has."""
        if self.topology == "mesh" and self.domain_devices > 1:
            return max(devices - 1, 1) / (self.domain_devices - 1)
        return 1.0


@dataclasses.dataclass(frozen=True)
class ComputeUnits:
    """An accelerator's compute units (a GPU's SMs), for the wave model (see :func:`wave_efficiency`)."""

    count: int                 # units on the device (SMs, CUs)
    source: str


def wave_efficiency(units: ComputeUnits, blocks: float) -> float:
    """The share of the units' time a kernel of ``blocks`` thread blocks keeps them busy. Blocks of equal
    work spread over the units, the most loaded unit runs ``ceil(blocks / count)`` of them while the
    average runs ``blocks / count``, and the kernel ends with the last: ``(blocks / count) /
    ceil(blocks / count)`` (NVIDIA, Matrix Multiplication Background User's Guide, 'Wave Quantization';
    a unit is taken to reach its throughput with the blocks it holds). 1 for whole waves, ``blocks /
    count`` for a kernel of fewer blocks than units, 1 where the launch is unknown (``blocks`` 0)."""
    if blocks <= 0:
        return 1.0
    per_unit = blocks / units.count
    return per_unit / math.ceil(per_unit)


@dataclasses.dataclass(frozen=True)
class HostMatch:
    """The CPUs a target file describes, as ``/proc/cpuinfo`` names them."""

    vendor: str
    family: int
    models: tuple[int, ...] = ()  # empty: any model of the family

    def matches(self, cpu: HostCPU) -> bool:
        """Whether ``cpu`` is one of the CPUs this file describes."""
        return (cpu.vendor == self.vendor and cpu.family == self.family
                and (not self.models or cpu.model in self.models))


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
    interconnect: Interconnect | None = None  # the links to other devices (None: one device only)
    kernel_launch_s: Figure | None = None  # an accelerator's time per kernel launch beyond its work (None: none)
    units: ComputeUnits | None = None  # an accelerator's compute units, for the wave model (None: not modelled)
    file: str = dataclasses.field(default="", compare=False)  # the file's name (``cpu`` loads ``cpu-zen5`` here)

    @property
    def describes_host(self) -> bool:
        """Whether this target describes the CPU this process runs on (then its builds' measured
        times are the target's own)."""
        return self.runs_here and self.host is not None and self.host.matches(host.host_cpu())

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
        if self.interconnect is not None:
            for name in ("bandwidth_bytes_per_s", "latency_s", "energy_pj_per_byte"):
                out[f"interconnect.{name}"] = getattr(self.interconnect, name)
        if self.kernel_launch_s is not None:
            out["kernel_launch_s"] = self.kernel_launch_s
        if self.core is not None:
            for name in ("clock_hz", "call_overhead_s", "parallel_overhead_s", "special_cycles", "emulated_cycles"):
                out[f"core.{name}"] = getattr(self.core, name)
            if self.core.float8_widen_cycles is not None:
                out["core.float8_widen_cycles"] = self.core.float8_widen_cycles
        return out
