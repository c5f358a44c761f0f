"""How long a kernel runs on a CPU target, from the schedule its lowered TIR has.

A roofline at the target's peak assumes every kernel uses every core and every vector lane; a scalar,
single-threaded loop nest runs a hundred times slower than that. This model reads what the schedule
does (the workload's ``schedule`` column, :class:`cost_models.workload.ScheduleKey`) and charges it
to the core the target file describes (``[core]``, :class:`cost_models.spec.CoreSpec`):

- every group of operations is a number of instructions: ``count / lanes``;
- a dtype the core computes in fp32 (``promoted_dtypes``: TVM legalizes bf16 arithmetic to fp32)
  runs each operation at 32-bit lanes with two conversions on the ``alu`` pipes; one it emulates
  operation by operation (``emulated_dtypes``: fp16 on x86 without AVX512-FP16, converted to fp32 and
  rounded back after every operation) costs ``emulated_cycles`` per element instead, but a cast into
  it is one conversion of 32-bit lanes (``vcvtps2ph``) on the ``convert`` pipes; a multiply-add of
  integers narrower than 32 bits that is not a dot product runs widened: two sign extensions and the
  add on the ``alu`` pipes beside the multiply;
- a multiply-add into a wider accumulator (``wmac``: fp16 or bf16 into fp32, int8 into int32) runs at
  the accumulator's width; the widening of its operands is in the schedule as ``widen`` groups (of
  the narrow dtype), once per operand value the register tile loads or broadcasts (the TIR walker
  counts them so), on the core's ``convert`` pipes for 16-bit floats where its file measures them
  (else the ``alu`` pipes), and an integer one adds its add beside the multiply;
- a load or store of a lane count that is not a power of two is one access per power-of-two piece
  (LLVM splits 14 lanes into 8 + 4 + 2, as its code for such loops shows); a ``broadcast`` (one
  element for every lane: a weight of a convolution along its output row) is one load; a ``gather``
  or ``scatter`` (a strided vector, or a register tile read across its rows) is one scalar access and
  one insert or extract on the ``insert`` pipes per lane (``vpinsrb``, ``vinsertps``, ``vpextrb``);
- an instruction occupies ``ceil(lanes x bits / width_bits)`` pipes of its work class for a cycle
  (Zen 4 runs a 512-bit FMA on its two 256-bit pipes, so 8 and 16 fp32 lanes reach the same rate);
  multiplies and divisions narrower than 32 bits run widened to 32 (x86 has no 8- or 16-bit
  multiply but the dot products, which are their own class);
- an accumulation with ``chains`` independent accumulators cannot go faster than ``instructions /
  chains x latency_cycles``: one scalar accumulator runs at the operation's latency, not its throughput;
- the classes run in parallel on their own pipes, but for those the core's ``shared`` groups name,
  which issue on the same pipes (Intel's 512-bit FMAs and vector ALU operations, conversions
  included, all go to ports 0 and 5) and whose cycles add; the slowest, or the front end issuing
  ``dispatch_per_cycle`` instructions, sets the cycles;
- a kernel that accumulates runs in two phases whose cycles add: its reduction (the accumulations,
  with every memory access and operand widening) and then its epilogue (the rest of its arithmetic:
  a bias, an activation, a requantization), which TVM's schedules compute after each tile's
  reduction loop, so the epilogue's pipes do not work beside the reduction's. Removing the
  ``fast_exp`` of yolo-block's SiLU epilogues took 15% off its fp32 build, though the epilogue's
  pipes were far from the reduction's busiest (``benchmarks/kernels_ab.py``, 2026-12-07);
- a group under parallel loops of extent ``p`` runs on ``p / ceil(p / T)`` of the target's ``T``
  cores (the runtime's threads take the iterations in equal chunks);
- a float8 operand widened for a multiply-add (no CPU here converts float8 in hardware: LLVM decodes
  it with integer bit operations) costs ``float8_widen_cycles`` a vector where the core gives it;
- special functions (``exp``, ``tanh``, ``erf``, ...) cost ``special_cycles`` per element (exp's;
  another function's times its ``special_relative`` where the core gives one) on top;
- the private caches (a level marked ``private``, one per core) deliver only the share of their
  bandwidth that the threads a kernel uses own.

The kernel's time is then the largest of that compute time and each memory level's bytes over its
bandwidth, plus ``call_overhead_s`` per call and ``parallel_overhead_s`` where it forks the thread pool.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .spec import CoreSpec, TargetSpec
from .workload import FLOAT_DTYPES, ScheduleKey, dtype_bits, parse_schedule


def work_class(key: ScheduleKey) -> str:
    """The pipes (:data:`cost_models.spec.WORK_CLASSES`) that run a group of operations;
    ``special`` for the functions charged per element."""
    if key.kind in ("dot", "mma"):
        return "dot"
    if key.kind.startswith("special"):  # special-<function>
        return "special"
    if key.kind in ("load", "store", "div"):
        return key.kind
    if key.kind in ("broadcast", "gather"):
        return "load"
    if key.kind == "scatter":
        return "store"
    if key.kind in ("mac", "wmac", "mul"):
        return "fma" if key.dtype in FLOAT_DTYPES else "imul"
    if key.kind == "widen" and key.dtype in ("float16", "bfloat16"):
        return "convert"  # a 16-bit float widened to fp32 (vcvtph2ps; bf16's shift and broadcast)
    return "alu"


def lane_bits(key: ScheduleKey) -> int:
    """Bits one lane of the group occupies in its pipe (a widening writes 32-bit lanes)."""
    bits = dtype_bits(key.dtype)
    return max(bits, 32) if key.kind in ("mac", "wmac", "mul", "div", "widen") else bits


def thread_share(parallel: int, threads: int) -> float:
    """Cores a parallel loop of extent ``parallel`` keeps busy out of ``threads``, on average."""
    parallel, threads = max(parallel, 1), max(threads, 1)
    return parallel / math.ceil(parallel / threads)


@dataclasses.dataclass(frozen=True)
class KernelCycles:
    """What one kernel's schedule asks of a core, before the clock and overheads are applied."""

    cycles: float  # on the busiest pipe class (or the front end), per thread
    special_elements: float  # elements of special functions, per thread, weighted by their cost against exp's
    emulated_elements: float  # elements of arithmetic in emulated dtypes, per thread
    float8_widened: float  # vectors of float8 operands widened (core.float8_widen_cycles each), per thread
    private_share: float  # share of the private levels' bandwidth the kernel's threads reach
    parallel: bool  # whether it forks the thread pool


#: Kinds that run inside a kernel's reduction loop, or wherever it reads and writes memory: they share
#: its phase (:func:`kernel_cycles`); any other operation of a kernel that accumulates runs after it.
SAME_PHASE_KINDS = frozenset({"load", "store", "broadcast", "gather", "scatter", "widen", "dot", "mma"})


def _busiest(by_class: dict[str, float], core: CoreSpec) -> float:
    """Cycles of the busiest pipe class of one phase, classes that issue on the same pipes (the core's
    ``shared`` groups) taking their turns."""
    for group in core.shared:
        total = sum(by_class.get(w, 0.0) for w in group)
        for w in group:
            if w in by_class:
                by_class[w] = total
    return max([*by_class.values(), 0.0])


def kernel_cycles(schedule: str, core: CoreSpec, threads: int) -> KernelCycles:
    """Cycles of one kernel with ``schedule`` (the workload column's text) on ``threads`` cores."""
    groups = parse_schedule(schedule)
    accumulates = any(key.chains or key.kind in ("dot", "mma") for key, _ in groups)
    phases: tuple[dict[str, float], dict[str, float]] = ({}, {})  # the reduction's (and accesses'), the rest's
    issued = special = emulated = float8 = accesses = reach = 0.0
    parallel = False
    alu, insert = core.pipe("alu"), core.pipe("insert")
    for key, count in groups:
        by_class = phases[accumulates and not key.chains and key.kind not in SAME_PHASE_KINDS]
        share = thread_share(key.parallel, threads)
        parallel |= key.parallel > 1
        work = core.runs_on(work_class(key))
        instructions = count / max(key.lanes, 1)
        if key.kind in ("gather", "scatter"):  # one scalar access and one insert or extract per lane
            by_class[work] = by_class.get(work, 0.0) + count / core.pipe(work).count / share
            by_class["insert"] = by_class.get("insert", 0.0) + count / insert.count / share
            issued += count / share
            accesses += count
            reach += count * share / max(threads, 1)
            continue
        if work == "special":
            special += count / share * core.special_weight(key.kind.partition("-")[2])
            continue
        if key.kind == "widen" and key.dtype.startswith("float8") and core.float8_widen_cycles is not None:
            float8 += instructions / share  # decoded by integer bit arithmetic, a measured cost a vector
            continue
        # a widening, or a value rounded into an emulated dtype (vcvtps2ph): one conversion of 32-bit
        # lanes, not arithmetic in the narrow dtype
        conversion = key.kind == "widen" or (key.kind == "cast" and key.dtype in core.emulated_dtypes)
        if conversion and key.kind == "cast":
            work = core.runs_on("convert")
        if key.dtype in core.emulated_dtypes and work not in ("load", "store") and key.kind != "wmac" and not conversion:
            emulated += count / share
            issued += count / share  # about one instruction per element
            continue
        bits = 32 if conversion else lane_bits(key)
        extra = 0  # alu instructions beside each one: conversions, the add of a widened multiply-add
        if key.kind == "wmac":  # the operands' widening is in the schedule, once per value (a ``widen``)
            bits, extra = 32, 1 if work == "imul" else 0  # an integer one's add is separate from its multiply
        elif (key.dtype in core.promoted_dtypes or key.dtype in core.emulated_dtypes) and work not in ("dot", "load", "store") \
                and not conversion:
            bits, extra = 32, 2  # promoted: converted to fp32 and back around the operation
        elif work == "imul" and key.kind == "mac" and dtype_bits(key.dtype) < 32:
            extra = 3  # widened: two sign extensions and the add beside the multiply
        pipe = core.pipe(work)
        if key.kind in ("load", "store"):  # a broadcast is one element loaded, whatever the lanes
            instructions *= bin(max(key.lanes, 1)).count("1")
        slots = math.ceil(max(key.lanes, 1) * bits / pipe.width_bits)
        cycles = instructions * slots / pipe.count
        if key.chains:
            cycles = max(cycles, instructions / key.chains * pipe.latency_cycles)
        by_class[work] = by_class.get(work, 0.0) + cycles / share
        if extra:
            alu_slots = math.ceil(max(key.lanes, 1) * 32 / alu.width_bits)
            by_class["alu"] = by_class.get("alu", 0.0) + instructions * extra * alu_slots / alu.count / share
        issued += instructions * (1 + extra) / share
        if work in ("load", "store"):
            accesses += instructions
            reach += instructions * share / max(threads, 1)
    busiest = max(sum(_busiest(by_class, core) for by_class in phases), issued / core.dispatch_per_cycle)
    return KernelCycles(busiest, special, emulated, float8, reach / accesses if accesses else 1.0, parallel)


@dataclasses.dataclass
class CoreQuantities:
    """Per kernel of a workload: what :func:`kernel_cycles` found, as arrays."""

    cycles: np.ndarray
    special_elements: np.ndarray
    emulated_elements: np.ndarray
    float8_widened: np.ndarray
    private_share: np.ndarray
    parallel: np.ndarray


def core_quantities(schedules: list[str], target: TargetSpec) -> CoreQuantities:
    """:func:`kernel_cycles` of every kernel, on the target's cores (its ``cores``, else 1)."""
    assert target.core is not None
    found = [kernel_cycles(s, target.core, target.cores or 1) for s in schedules]
    return CoreQuantities(*(np.array([getattr(k, f) for k in found], float) for f in
                            ("cycles", "special_elements", "emulated_elements", "float8_widened", "private_share")),
                          np.array([k.parallel for k in found], bool))


def compute_seconds(q: CoreQuantities, figures: dict):
    """Compute time of each kernel at the figures' clock (arrays of figures give samples)."""
    cycles = (q.cycles + q.special_elements * figures["core.special_cycles"]
              + q.emulated_elements * figures["core.emulated_cycles"])
    if "core.float8_widen_cycles" in figures:
        cycles = cycles + q.float8_widened * figures["core.float8_widen_cycles"]
    return cycles / figures["core.clock_hz"]


def overhead_seconds(q: CoreQuantities, figures: dict):
    """Each call's fixed cost: the VM's dispatch, and the thread pool's fork/join where it forks."""
    return figures["core.call_overhead_s"] + q.parallel * figures["core.parallel_overhead_s"]
