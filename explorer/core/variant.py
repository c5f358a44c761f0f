"""The plain records that cross from the TVM worker to the rest of the explorer.

A worker compiles one variant for one lowering and returns a :class:`Lowering` (or a
:class:`Failure`): the workload table the cost model scores, the call sites the fusion report
reads, the planned storage and what was built. A CPU build that runs here is then timed on its own
(:class:`TimingRequest` -> :class:`Measurement`), with nothing else running.
None of these hold TVM objects, so they pickle between processes and serialise to the cache.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
import pandas as pd


class StatusKind(str, enum.Enum):
    """What happened to a variant, for scripts (the ``status_kind`` column)."""

    OK = "ok"                          # built, and on this machine run and checked
    ANALYSED = "analysed"              # analysed from its lowered TIR; no code generated
    BUILT_NOT_RUN = "built-not-run"    # code generated (CUDA: compiled by nvcc), nothing here runs it
    CODEGEN_FAILED = "codegen-failed"  # analysed; TVM's (or nvcc's) code generation failed
    EMULATED = "emulated"              # scored, but the target has no unit for the strategy's dtype
    MISMATCH = "mismatch"              # ran, and its outputs disagree with onnxruntime
    FAILED = "failed"                  # no numbers: compile or analysis raised
    CRASHED = "crashed"                # no numbers: the worker process died
    TIMED_OUT = "timed-out"            # no numbers: the variant ran past its time limit


#: Kinds whose variants carry no numbers.
FAILURE_KINDS = frozenset({StatusKind.FAILED, StatusKind.CRASHED, StatusKind.TIMED_OUT})

#: Kinds that a note about an unsupported dtype turns into ``EMULATED``.
_SCORED_KINDS = frozenset({StatusKind.OK, StatusKind.ANALYSED, StatusKind.BUILT_NOT_RUN, StatusKind.CODEGEN_FAILED})


@dataclasses.dataclass(frozen=True)
class Status:
    """A variant's status: a kind, the detail a person reads, and notes appended to it.

    ``text`` is the ``status`` column users script against: ``ok`` or ``ok: <detail>`` for every
    variant that produced numbers, ``MISMATCH: <detail>`` for a wrong result and ``failed: <detail>``
    for no result, each followed by ``; <note>`` per note."""

    kind: StatusKind
    detail: str = ""
    notes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The ``status`` column."""
        prefix = "failed" if self.kind in FAILURE_KINDS else "MISMATCH" if self.kind is StatusKind.MISMATCH else "ok"
        head = f"{prefix}: {self.detail}" if self.detail else prefix
        return "; ".join([head, *self.notes])

    @property
    def has_numbers(self) -> bool:
        """Whether the variant was compiled and scored."""
        return self.kind not in FAILURE_KINDS

    def noted(self, note: str) -> "Status":
        """This status with ``note`` appended."""
        return dataclasses.replace(self, notes=(*self.notes, note))

    def emulated(self, note: str) -> "Status":
        """This status with ``note`` appended and, unless it is a mismatch, of kind ``EMULATED``."""
        kind = StatusKind.EMULATED if self.kind in _SCORED_KINDS else self.kind
        return dataclasses.replace(self, kind=kind, notes=(*self.notes, note))


@dataclasses.dataclass(frozen=True)
class KernelCall:
    """One kernel launch of a compiled variant, as the fusion report reads it."""

    index: int
    kernel: str
    members: tuple[str, ...]     # unfused operator kernels this call covers (itself when not fused)
    eliminated: tuple[str, ...]  # intermediates of those members that no longer exist as tensors


@dataclasses.dataclass
class Measurement:
    """A CPU variant run on this machine: its outputs on the check input, and its timings."""

    outputs: list[np.ndarray]
    check_run_s: float
    latency_runs_s: list[float]   # seconds per inference, one per timed repeat
    threads: int = 0              # threads TVM's runtime ran with
    node: str = ""                # the machine that ran it
    # (kernel, median seconds) of every kernel call of one inference, in call order
    kernel_calls_s: list[tuple[str, float]] = dataclasses.field(default_factory=list)


#: Each timed repeat of a CPU build (and of onnxruntime) is the mean of as many inferences as last this
#: long (MetaSchedule's runner measures 100 ms too).
MIN_REPEAT_S = 0.1


@dataclasses.dataclass(frozen=True)
class TimingRequest:
    """Run an exported CPU library once on ``inputs`` (its outputs) and time it."""

    library: str
    inputs: tuple[np.ndarray, ...]
    timed_runs: int = 5
    min_repeat_s: float = MIN_REPEAT_S


@dataclasses.dataclass
class TuningOutcome:
    """What MetaSchedule tuning did for one variant, and every measured candidate it chose from."""

    tasks: int
    tuned: int                 # kernels tuned now
    reused: int                # kernels whose records already met the budget
    trials: int                # candidates measured now
    records: str               # the records directory
    candidates: pd.DataFrame   # one row per measured candidate: kernel, candidate, measured_latency_s
                               # and its workload columns (see cost_models.workload)
    records_digest: str = ""   # the records' content after tuning (part of the lowering's key)


@dataclasses.dataclass
class Lowering:
    """One variant compiled for one lowering (``llvm:<mcpu>`` or ``cuda:<arch>``)."""

    lowering: str
    workload: pd.DataFrame           # one row per kernel call (see cost_models.workload)
    calls: list[KernelCall]
    planned_bytes: int               # storage the static memory planner allocates
    compile_s: float
    built: bool                      # code was generated
    build_error: str = ""            # why code generation failed, where it did
    nvcc_error: str = ""             # why nvcc could not compile the generated CUDA, where it could not
    tuning: TuningOutcome | None = None
    analyse_s: float = 0.0           # reading the lowered TIR into the workload table
    node: str = ""                   # the machine that compiled it
    constant_bytes: int = 0          # the weights (and other constants) as the build stores them
    codegen_s: float = 0.0           # after compile and analysis: nvcc on the CUDA, or the library's export


@dataclasses.dataclass(frozen=True)
class Failure:
    """A variant that produced no numbers."""

    status: Status


@dataclasses.dataclass(frozen=True)
class LoweringRequest:
    """What a worker is asked to compile: one model under one strategy for one lowering."""

    model_path: str
    model_sha256: str
    strategy: object                         # explorer.core.strategies.Strategy
    lowering: str                            # "generic" (llvm for ``mcpu``), "cuda" or "rocm" (for ``arch``)
    mcpu: str = ""
    arch: str = ""
    build: bool = False                      # generate code (for cuda, compiled with nvcc; rocm, linked by ld.lld)
    act_scales: tuple[float, ...] | None = None  # calibrated activation scales (int8)
    tuning_records: str | None = None        # records directory of a tuned strategy
    scoring: object = None                   # cost_models.targets.TargetSpec the energy/EDP picks use
    export: str = ""                         # export the built library to this path (a generic build)
    progress: bool = False

    @property
    def lowering_id(self) -> str:
        """``llvm:<mcpu>``, ``cuda:<arch>`` or ``rocm:<arch>``: what the TIR was lowered for."""
        return f"llvm:{self.mcpu}" if self.lowering == "generic" else f"{self.lowering}:{self.arch}"


def finite(value) -> float | None:
    """``value`` as a float, or None where it is missing or not a finite number (a CSV's empty cell)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
