"""Sweeps: every (model, strategy, target) variant compiled, analysed, checked and scored.

One lowering serves several targets: the CPU and analysis-only targets share the generic TIR (the
workload is target-neutral), the GPU has its own (DLight-scheduled). A lowering is compiled once, in
a worker process (:mod:`explorer.runner`), and cached at once (:mod:`explorer.lowerings`); every
score, ranking and report is recomputed from the cached lowerings on every run, so a rerun after an
edit of a target file or of the cost model compiles nothing and shows the new numbers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from cost_models.targets import TargetSpec, load_target

from . import lowerings
from .cache import tvm_version
from .calibration import calibrate
from .errors import ExplorerError
from .host import resolve_mcpu
from .loading import PreparedModel, prepare
from .records import Failure, Lowering, LoweringRequest, Status, StatusKind
from .reference import reference
from .results import VARIANT_COLUMNS, base_row, failed_row, rank, tuning_tables, variant_row
from .runner import Runner
from .strategies import Strategy, parse_strategies
from .tuning_records import records_digest, records_dir

#: Timed repeats per CPU variant (after a warm-up), each the mean over at least 0.2 s; also for onnxruntime.
TIMED_RUNS = 5

#: Tables a tuned variant adds besides its kernels (see :func:`explorer.results.tuning_tables`).
TUNING_TABLES = ("schedules", "candidates")


@dataclasses.dataclass
class SweepResult:
    """What a sweep produced: one row per variant and one row per kernel call."""

    variants: pd.DataFrame
    kernels: pd.DataFrame
    rankings: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    schedules: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # tuned kernels' choices
    candidates: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # every scored tuning candidate
    compiled: int = 0   # lowerings compiled by this sweep
    cached: int = 0     # lowerings read from the cache


def lowering_of(target: TargetSpec) -> str:
    """Which lowering a target's workload comes from: ``cuda`` or ``generic``."""
    return "cuda" if target.tvm == "cuda" else "generic"


def scoring_target(group: list[TargetSpec]) -> TargetSpec:
    """The target a lowering is built for, whose figures its tuned energy and EDP picks use: the
    group's llvm target where there is one, else its first."""
    return next((t for t in group if t.tvm == "llvm"), group[0])


def _request(model: PreparedModel, strategy: Strategy, lowering: str, group: list[TargetSpec], build: bool,
             inputs, calibration, tuning_records, mcpu: str, progress: bool) -> LoweringRequest:
    cuda = lowering == "cuda"
    return LoweringRequest(
        str(model.path), model.sha256, strategy, lowering, mcpu="" if cuda else mcpu,
        arch=next((t.arch for t in group if t.tvm == "cuda"), "") or ("sm_90" if cuda else ""),
        build=build and any(t.tvm in ("llvm", "cuda") for t in group),
        inputs=tuple(inputs) if inputs is not None and any(t.tvm == "llvm" and t.runs_here for t in group) else None,
        timed_runs=TIMED_RUNS, act_scales=calibration.scales if calibration else None,
        tuning_records=str(tuning_records) if tuning_records else None, scoring=scoring_target(group),
        progress=progress)


def _lowered(req: LoweringRequest, calibration: str, runner: Runner) -> tuple[Lowering | Failure, bool]:
    """The lowering of ``req`` from the cache, or compiled now and cached; and whether it was compiled."""
    digest = ""
    tuned = req.strategy.tuned and req.lowering == "generic"
    if tuned:
        digest = records_digest(records_dir({"kind": "llvm", "mcpu": req.mcpu}, req.tuning_records))
    key = lowerings.lowering_key(req, calibration, digest)
    cached = lowerings.get(key)
    if cached is not None:
        return cached, False
    result = runner(req)
    if isinstance(result, Lowering):  # failures are retried on the next run
        lowerings.put(key, result)
        if tuned and result.tuning is not None and result.tuning.records_digest != digest:
            # tuning extended the records: the same request finds this lowering under their new digest
            lowerings.put(lowerings.lowering_key(req, calibration, result.tuning.records_digest), result)
    return result, True


def run_sweep(models: list[str], targets: list[str] | None = None, strategies: str | list[str] | None = "all",
              out: str | Path | None = None, input_shapes: dict | None = None, check: bool = True,
              build: bool = True, progress: bool = True, isolate: bool = True, seed: int = 0,
              max_accuracy_loss: float | None = None, calibration: str | Path | None = None,
              tuning_records: str | Path | None = None) -> SweepResult:
    """Compile every model under every strategy for every target; return variant and kernel tables.

    ``targets`` are names of shipped targets or paths of target files (default ``["cpu"]``).
    ``check`` runs each CPU build once on a seeded input and compares it with onnxruntime.
    ``build=False`` analyses without generating code (faster; nothing is run).
    ``max_accuracy_loss`` (percent relative output error, see :mod:`explorer.accuracy`) fills
    ``meets_accuracy`` for every variant that ran. ``calibration`` is a directory of ``.npy``
    inputs for int8 strategies (default: seeded random inputs; see :mod:`explorer.calibration`).
    ``tuning_records`` is the MetaSchedule records directory tuned strategies read and extend
    (default: one per CPU in the cache; see :mod:`explorer.tuning_records`).
    """
    from tqdm.auto import tqdm

    specs = [load_target(t) for t in (targets or ["cpu"])]
    strats = parse_strategies(strategies)
    groups: dict[str, list[TargetSpec]] = {}
    for t in specs:
        groups.setdefault(lowering_of(t), []).append(t)
    prepared: dict[str, PreparedModel | ExplorerError] = {}
    for model_name in models:  # validate every model before any work starts
        try:
            prepared[model_name] = prepare(model_name, input_shapes)
        except ExplorerError as err:
            if len(models) == 1:
                raise
            prepared[model_name] = err
    mcpu = resolve_mcpu() if "generic" in groups else ""
    runner = Runner(isolate)
    rows, kernel_frames = [], []
    counts = {True: 0, False: 0}  # lowerings compiled now / read from the cache
    tuning_frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TUNING_TABLES}
    bar = tqdm(total=len(models) * len(strats) * len(specs), disable=not progress, unit="variant", dynamic_ncols=True)
    try:
        for model_name, model in prepared.items():
            if isinstance(model, ExplorerError):
                for s in strats:
                    for t in specs:
                        rows.append(failed_row(base_row(model_name, s, t.name), Status(StatusKind.FAILED, str(model))))
                        bar.update(1)
                continue
            cal = None
            if any(s.precision == "int8" for s in strats):
                bar.set_description(f"{model.name} calibrating int8")
                cal = calibrate(model, calibration)
            ref = None
            if build and check and any(t.tvm == "llvm" and t.runs_here for t in specs):
                ref = reference(model, seed, TIMED_RUNS)
            for strategy in strats:
                strategy_cal = cal if strategy.precision == "int8" else None
                for lowering, group in groups.items():
                    bar.set_description(f"{model.name} {strategy.name} {'/'.join(t.name for t in group)}")
                    req = _request(model, strategy, lowering, group, build, ref.inputs if ref else None,
                                   strategy_cal, tuning_records, mcpu, progress)
                    result, compiled_now = _lowered(req, strategy_cal.key if strategy_cal else "", runner)
                    counts[compiled_now] += 1
                    for name, table in tuning_tables(result, req.scoring, model.name, strategy.name).items():
                        tuning_frames[name].append(table)
                    for t in group:
                        row = base_row(model.name, strategy, t.name)
                        row.update(model_hash=model.key, tvm_version=tvm_version())
                        if t.tvm == "llvm" and ref is not None:
                            row["onnxruntime_latency_s"] = ref.latency_s
                        row, kern = variant_row(row, result, t, ref.outputs if ref else None)
                        rows.append(row)
                        kernel_frames.append(kern)
                        bar.update(1)
    finally:
        bar.close()
        runner.close()
    variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    if max_accuracy_loss is not None:
        ran = variants["accuracy_loss_pct"].notna()
        variants["meets_accuracy"] = variants["meets_accuracy"].astype(object)
        variants.loc[ran, "meets_accuracy"] = variants.loc[ran, "accuracy_loss_pct"] <= max_accuracy_loss
    frames = [k for k in kernel_frames if len(k)]
    kernels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rankings = rank(variants, kernels, {t.name: t for t in specs}, seed)
    schedules, candidates = (pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in tuning_frames.values())
    if out:
        from .writer import write_results

        write_results(Path(out), variants, kernels, rankings, schedules, candidates)
    return SweepResult(variants, kernels, rankings, schedules, candidates, counts[True], counts[False])


def sweep(models: str | list[str], **kwargs) -> pd.DataFrame:
    """Run a sweep (see :func:`run_sweep`) and return one row per variant as a DataFrame."""
    return run_sweep([models] if isinstance(models, str) else list(models), **kwargs).variants
