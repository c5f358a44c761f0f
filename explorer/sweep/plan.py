"""The plan of a sweep: one lowering of one model under one strategy, for a group of targets.

One lowering serves several targets: the CPU and analysis-only targets share the generic TIR (the
workload is target-neutral), the GPU has its own (DLight-scheduled).
"""

from __future__ import annotations

import dataclasses

from cost_models.spec import TargetSpec
from explorer.core.prepared import PreparedModel
from explorer.core.strategies import Strategy
from explorer.core.variant import Failure, Lowering, LoweringRequest, Measurement
from explorer.model.int8_calibration import Calibration
from explorer.store import lowerings
from explorer.store.builds import library_path
from explorer.store.tuning_records import records_digest, records_dir

#: The lowerings of GPU targets (DLight-scheduled TIR for TVM's code generator of that name).
GPU_LOWERINGS = ("cuda", "rocm")


def lowering_of(target: TargetSpec) -> str:
    """Which lowering a target's workload comes from: ``cuda``, ``rocm`` or ``generic``."""
    return target.tvm if target.tvm in GPU_LOWERINGS else "generic"


def scoring_target(group: list[TargetSpec]) -> TargetSpec:
    """The target a lowering is built for, whose figures its tuned energy and EDP picks use: the
    group's llvm target where there is one, else its first."""
    return next((t for t in group if t.tvm == "llvm"), group[0])


@dataclasses.dataclass
class Plan:
    """One lowering of one model under one strategy, serving a group of targets."""

    model: PreparedModel
    strategy: Strategy
    group: list[TargetSpec]
    req: LoweringRequest
    calibration: str
    key: str = ""
    records: str = ""              # the tuning records' digest the key was made with
    result: Lowering | Failure | None = None
    compiled_now: bool = False
    measurements: dict[int, Measurement | Failure] = dataclasses.field(default_factory=dict)  # by threads
    measured_now: list[Measurement] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model.name} / {self.strategy.name} / {','.join(t.name for t in self.group)}"

    @property
    def timed(self) -> list[TargetSpec]:
        """The group's targets whose builds run here."""
        return [t for t in self.group if t.tvm == "llvm" and t.runs_here]


def make_plan(model: PreparedModel, strategy: Strategy, lowering: str, group: list[TargetSpec], build: bool,
          check: bool, calibration: Calibration | None, tuning_records, mcpu: str, progress: bool) -> Plan:
    gpu = lowering in GPU_LOWERINGS
    builds = build and any(t.tvm in ("llvm", *GPU_LOWERINGS) for t in group)
    runs = builds and check and not gpu and any(t.tvm == "llvm" and t.runs_here for t in group)
    req = LoweringRequest(
        str(model.path), model.sha256, strategy, lowering, mcpu="" if gpu else mcpu,
        arch=next((t.arch for t in group if t.tvm == lowering), "") if gpu else "", build=builds,
        act_scales=calibration.scales if calibration else None,
        tuning_records=str(tuning_records) if tuning_records else None, scoring=scoring_target(group),
        export=str(library_path(model, strategy, mcpu, calibration.key if calibration else "")) if runs else "", progress=progress)
    plan = Plan(model, strategy, group, req, calibration.key if calibration else "")
    if strategy.tuned and not gpu:
        plan.records = records_digest(records_dir({"kind": "llvm", "mcpu": mcpu}, req.tuning_records))
    plan.key = lowerings.lowering_key(req, plan.calibration, plan.records)
    return plan


def store_result(plan: Plan, result: Lowering | Failure, stores: lowerings.Stores) -> None:
    plan.result, plan.compiled_now = result, True
    if isinstance(result, Lowering):  # failures are retried on the next run
        stores.put_lowering(plan.key, result)
        if result.tuning is not None and result.tuning.records_digest != plan.records:
            # tuning extended the records: the same request finds this lowering under their new digest
            stores.put_lowering(lowerings.lowering_key(plan.req, plan.calibration, result.tuning.records_digest), result)
