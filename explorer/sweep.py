"""Sweeps: every (model, strategy, target) variant compiled, analysed, checked, timed and scored.

One lowering serves several targets: the CPU and analysis-only targets share the generic TIR (the
workload is target-neutral), the GPU has its own (DLight-scheduled). A sweep runs in phases:

1. **prepare**: load and validate every model, calibrate int8, compute onnxruntime's reference outputs;
2. **compile**: every lowering not stored yet, in ``jobs`` isolated worker processes (or on a Ray
   cluster, :mod:`explorer.ray_backend`); each is stored the moment it finishes, in the cache and
   in ``--out``'s results store. Tuned strategies compile one at a time, after the others, since
   MetaSchedule measures candidates on the machine's cores;
3. **time**: every CPU build that runs here, one at a time, with nothing else running, with as many
   threads as the target has cores, and onnxruntime with the same threads;
4. **score**: rows, rankings and reports, recomputed from the stored lowerings on every run, so a
   rerun after an edit of a target file or of the cost model compiles nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import pandas as pd

from cost_models.targets import TargetSpec, load_target

from . import lowerings
from .cache import tvm_version
from .calibration import Calibration, calibrate
from .deploy import library_path, timing_threads
from .errors import ExplorerError
from .host import resolve_mcpu
from .loading import PreparedModel, prepare
from .records import Failure, Lowering, LoweringRequest, Measurement, Status, StatusKind, TimingRequest
from .reference import Reference, reference, timed_onnxruntime
from .results import VARIANT_COLUMNS, base_row, failed_row, rank, tuning_tables, variant_row
from .strategies import Strategy, parse_strategies
from .tuning_records import records_digest, records_dir
from .workers import default_jobs

#: Timed repeats per CPU variant (after a warm-up), each the mean over at least 0.2 s; also for onnxruntime.
TIMED_RUNS = 5

#: Tables a tuned variant adds besides its kernels (see :func:`explorer.results.tuning_tables`).
TUNING_TABLES = ("schedules", "candidates")

#: The phases a sweep's wall time is split into.
PHASES = ("prepare", "compile", "time", "score")


@dataclasses.dataclass
class SweepResult:
    """What a sweep produced: one row per variant and one row per kernel call."""

    variants: pd.DataFrame
    kernels: pd.DataFrame
    rankings: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    schedules: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # tuned kernels' choices
    candidates: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # every scored tuning candidate
    compiled: int = 0   # lowerings compiled by this sweep
    cached: int = 0     # lowerings read from the store or the cache
    phases_s: dict[str, float] = dataclasses.field(default_factory=dict)  # wall seconds per phase
    worker_s: dict[str, float] = dataclasses.field(default_factory=dict)  # compile / analyse / run seconds


def lowering_of(target: TargetSpec) -> str:
    """Which lowering a target's workload comes from: ``cuda`` or ``generic``."""
    return "cuda" if target.tvm == "cuda" else "generic"


def scoring_target(group: list[TargetSpec]) -> TargetSpec:
    """The target a lowering is built for, whose figures its tuned energy and EDP picks use: the
    group's llvm target where there is one, else its first."""
    return next((t for t in group if t.tvm == "llvm"), group[0])


@dataclasses.dataclass
class _Plan:
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


class _Clock:
    def __init__(self):
        self.phases_s = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases_s[phase] += time.perf_counter() - start


def _plan(model: PreparedModel, strategy: Strategy, lowering: str, group: list[TargetSpec], build: bool,
          check: bool, calibration: Calibration | None, tuning_records, mcpu: str, progress: bool) -> _Plan:
    cuda = lowering == "cuda"
    builds = build and any(t.tvm in ("llvm", "cuda") for t in group)
    runs = builds and check and not cuda and any(t.tvm == "llvm" and t.runs_here for t in group)
    req = LoweringRequest(
        str(model.path), model.sha256, strategy, lowering, mcpu="" if cuda else mcpu,
        arch=next((t.arch for t in group if t.tvm == "cuda"), "") or ("sm_90" if cuda else ""), build=builds,
        act_scales=calibration.scales if calibration else None,
        tuning_records=str(tuning_records) if tuning_records else None, scoring=scoring_target(group),
        export=str(library_path(model, strategy, mcpu)) if runs else "", progress=progress)
    plan = _Plan(model, strategy, group, req, calibration.key if calibration else "")
    if strategy.tuned and not cuda:
        plan.records = records_digest(records_dir({"kind": "llvm", "mcpu": mcpu}, req.tuning_records))
    plan.key = lowerings.lowering_key(req, plan.calibration, plan.records)
    return plan


def _store(plan: _Plan, result: Lowering | Failure, stores: lowerings.Stores) -> None:
    plan.result, plan.compiled_now = result, True
    if isinstance(result, Lowering):  # failures are retried on the next run
        stores.put_lowering(plan.key, result)
        if result.tuning is not None and result.tuning.records_digest != plan.records:
            # tuning extended the records: the same request finds this lowering under their new digest
            stores.put_lowering(lowerings.lowering_key(plan.req, plan.calibration, result.tuning.records_digest), result)


def _compile(plans: list[_Plan], stores: lowerings.Stores, backend, progress) -> None:
    """Compile every plan without a stored lowering, storing each as it finishes; tuned ones last,
    one at a time."""
    todo = [p for p in plans if p.result is None]
    for batch in ([p for p in todo if not p.strategy.tuned], [p for p in todo if p.strategy.tuned]):
        if not batch:
            continue
        runner = backend(tuned=batch[0].strategy.tuned)
        try:
            for i, result in runner.map([p.req for p in batch],
                                        on_start=lambda i, b=batch: progress.started(i, b[i].label)):
                plan = batch[i]
                _store(plan, result, stores)
                if isinstance(result, Lowering):
                    detail = f"compiled in {result.compile_s:.1f} s"
                else:
                    detail = result.status.text
                progress.finished(i, plan.label, len(plan.group), isinstance(result, Failure), detail)
        finally:
            runner.close()


def _time(plans: list[_Plan], references: dict[str, Reference], stores: lowerings.Stores, make_timer,
          progress) -> dict[tuple[str, int], float]:
    """Measure every built CPU variant that runs here and lacks a measurement, one at a time, then
    onnxruntime with the same threads; returns onnxruntime's latency per (model, threads)."""
    wanted: dict[int, list[tuple[_Plan, str]]] = {}
    for plan in plans:
        if not isinstance(plan.result, Lowering) or not plan.req.export or plan.model.name not in references:
            continue
        for threads in sorted({timing_threads(t) for t in plan.timed}):
            key = lowerings.measurement_key(plan.key, threads, TIMED_RUNS)
            found = stores.get_measurement(key)
            if found is not None:
                plan.measurements[threads] = found
            else:
                wanted.setdefault(threads, []).append((plan, key))
    for threads, todo in wanted.items():
        progress.phase(f"timing {len(todo)} CPU build{'s' if len(todo) > 1 else ''} with {threads} threads")
        requests = [TimingRequest(p.req.export, tuple(references[p.model.name].inputs), TIMED_RUNS) for p, _ in todo]
        timer = make_timer(threads)
        try:
            results = dict(timer.map(requests, [p.result.node for p, _ in todo]))
        finally:
            timer.close()
        for i, (plan, key) in enumerate(todo):
            plan.measurements[threads] = results[i]
            if isinstance(results[i], Measurement):
                plan.measured_now.append(results[i])
                stores.put_measurement(key, results[i])
    ort: dict[tuple[str, int], float] = {}
    for plan in plans:
        if plan.measurements:
            for threads in plan.measurements:
                if (plan.model.name, threads) not in ort:
                    ort[(plan.model.name, threads)] = timed_onnxruntime(plan.model, threads, repeat=TIMED_RUNS)
    return ort


class _LocalTimer:
    """Times builds one at a time in one worker process whose TVM runtime has ``threads`` threads
    (``isolate=False``: in this process, with whatever threads its runtime has)."""

    def __init__(self, threads: int, isolate: bool):
        from .workers import WorkerPool

        self.pool = WorkerPool(_time_variant, jobs=1, env={"TVM_NUM_THREADS": str(threads)}) if isolate else None

    def map(self, requests, hosts):
        if self.pool is None:
            return ((i, _time_variant(r)) for i, r in enumerate(requests))
        return self.pool.map(requests)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _needs_run(plan: _Plan, stores: lowerings.Stores) -> bool:
    """Whether a measurement of ``plan`` is still missing."""
    return any(stores.get_measurement(lowerings.measurement_key(plan.key, timing_threads(t), TIMED_RUNS)) is None
               for t in plan.timed)


def _time_variant(req: TimingRequest):
    from .tvm.worker import time_variant

    return time_variant(req)


def _lower_variant(req: LoweringRequest):
    from .tvm.worker import lower_variant

    return lower_variant(req)


class _InProcess:
    """Compiles in this process (``isolate=False``: tests, debugging)."""

    def map(self, requests, on_start=None):
        for i, req in enumerate(requests):
            if on_start:
                on_start(i)
            yield i, _lower_variant(req)

    def close(self) -> None:
        pass


def _backend(name: str, jobs: int, timeout_s: float | None, isolate: bool, address: str | None):
    """Factories of compile runners for one batch (``tuned``: one at a time) and of timers."""
    if name == "ray":
        from .ray_backend import RayRunner, RayTimer

        return (lambda tuned: RayRunner(address, timeout_s, exclusive=tuned)), (lambda threads: RayTimer(address, threads))
    if name != "local":
        raise ExplorerError(f"unknown backend {name!r}; known: local, ray")
    timer = lambda threads: _LocalTimer(threads, isolate)  # noqa: E731
    if not isolate:
        return (lambda tuned: _InProcess()), timer
    from .workers import WorkerPool

    return (lambda tuned: WorkerPool(_lower_variant, jobs=1 if tuned else jobs, timeout_s=timeout_s)), timer


def run_sweep(models: list[str], targets: list[str] | None = None, strategies: str | list[str] | None = "all",
              out: str | Path | None = None, input_shapes: dict | None = None, check: bool = True,
              build: bool = True, progress: bool = True, isolate: bool = True, seed: int = 0,
              max_accuracy_loss: float | None = None, calibration: str | Path | None = None,
              tuning_records: str | Path | None = None, jobs: int | None = None,
              variant_timeout: float | None = None, backend: str = "local", address: str | None = None
              ) -> SweepResult:
    """Compile every model under every strategy for every target; return variant and kernel tables.

    ``targets`` are names of shipped targets or paths of target files (default ``["cpu"]``).
    ``check`` runs each CPU build once on a seeded input, compares it with onnxruntime and times both.
    ``build=False`` analyses without generating code (faster; nothing is run).
    ``max_accuracy_loss`` (percent relative output error, see :mod:`explorer.accuracy`) fills
    ``meets_accuracy`` for every variant that ran. ``calibration`` is a directory of ``.npy``
    inputs for int8 strategies (default: seeded random inputs; see :mod:`explorer.calibration`).
    ``tuning_records`` is the MetaSchedule records directory tuned strategies read and extend
    (default: one per CPU in the cache; see :mod:`explorer.tuning_records`).
    ``jobs`` worker processes compile at once (default: what the cores and memory allow), each
    variant within ``variant_timeout`` seconds (default: no limit). ``backend="ray"`` compiles on
    the Ray cluster at ``address`` instead (see :mod:`explorer.ray_backend`).
    ``out`` keeps every finished variant in ``out/results.sqlite`` and writes the tables and report.
    """
    from .progress import Progress

    clock = _Clock()
    specs = [load_target(t) for t in (targets or ["cpu"])]
    strats = parse_strategies(strategies)
    make_runner, make_timer = _backend(backend, jobs or default_jobs(), variant_timeout, isolate, address)
    groups: dict[str, list[TargetSpec]] = {}
    for t in specs:
        groups.setdefault(lowering_of(t), []).append(t)
    store = None
    if out:
        from .store import SQLiteStore

        store = SQLiteStore(Path(out) / "results.sqlite")
    stores = lowerings.Stores(store, lowerings.CACHE)
    bar = Progress(len(models) * len(strats) * len(specs), enabled=progress)
    rows, kernel_frames = [], []
    tuning_frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TUNING_TABLES}
    try:
        with clock("prepare"):
            prepared: dict[str, PreparedModel | ExplorerError] = {}
            for model_name in models:  # validate every model before any work starts
                try:
                    prepared[model_name] = prepare(model_name, input_shapes)
                except ExplorerError as err:
                    if len(models) == 1:
                        raise
                    prepared[model_name] = err
            mcpu = resolve_mcpu() if "generic" in groups else ""
            plans: list[_Plan] = []
            references: dict[str, Reference] = {}
            for model_name, model in prepared.items():
                if isinstance(model, ExplorerError):
                    continue
                cal = None
                if any(s.precision == "int8" for s in strats):
                    bar.phase(f"{model.name}: calibrating int8")
                    cal = calibrate(model, calibration)
                if build and check and any(t.tvm == "llvm" and t.runs_here for t in specs):
                    references[model.name] = reference(model, seed)
                for strategy in strats:
                    for lowering, group in groups.items():
                        plans.append(_plan(model, strategy, lowering, group, build, check,
                                           cal if strategy.precision == "int8" else None, tuning_records, mcpu,
                                           progress))
            for plan in plans:
                plan.result = stores.get_lowering(plan.key)
                if (plan.result is not None and plan.req.export and backend == "local"
                        and not Path(plan.req.export).exists() and _needs_run(plan, stores)):
                    plan.result = None  # the library it is to be timed from is gone: build it again
                if plan.result is not None:
                    bar.finished(None, plan.label, len(plan.group), False, "stored")
        with clock("compile"):
            _compile(plans, stores, make_runner, bar)
        with clock("time"):
            ort = _time(plans, references, stores, make_timer, bar)
    finally:
        bar.close()
        if store is not None:
            store.close()
    with clock("score"):
        by_model = {}
        for plan in plans:
            by_model.setdefault(plan.model.name, []).append(plan)
        for model_name, model in prepared.items():
            if isinstance(model, ExplorerError):
                for s in strats:
                    for t in specs:
                        rows.append(failed_row(base_row(model_name, s, t.name), Status(StatusKind.FAILED, str(model))))
                continue
            for plan in by_model.get(model.name, []):
                for name, table in tuning_tables(plan.result, plan.req.scoring, model.name,
                                                 plan.strategy.name).items():
                    tuning_frames[name].append(table)
                for t in plan.group:
                    row = base_row(model.name, plan.strategy, t.name)
                    row.update(model_hash=model.key, tvm_version=tvm_version())
                    threads = timing_threads(t)
                    measurement = plan.measurements.get(threads) if t.tvm == "llvm" and t.runs_here else None
                    if isinstance(measurement, Measurement):
                        row.update(onnxruntime_latency_s=ort.get((model.name, threads)), onnxruntime_threads=threads)
                    ref = references.get(model.name)
                    row, kern = variant_row(row, plan.result, t, ref.outputs if ref else None, measurement)
                    rows.append(row)
                    kernel_frames.append(kern)
        variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
        if max_accuracy_loss is not None:
            ran = variants["accuracy_loss_pct"].notna()
            variants["meets_accuracy"] = variants["meets_accuracy"].astype(object)
            variants.loc[ran, "meets_accuracy"] = variants.loc[ran, "accuracy_loss_pct"] <= max_accuracy_loss
        frames = [k for k in kernel_frames if len(k)]
        kernels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        rankings = rank(variants, kernels, {t.name: t for t in specs}, seed)
        schedules, candidates = (pd.concat(f, ignore_index=True) if f else pd.DataFrame()
                                 for f in tuning_frames.values())
        if out:
            from .writer import write_results

            write_results(Path(out), variants, kernels, rankings, schedules, candidates)
    now = [p.result for p in plans if p.compiled_now and isinstance(p.result, Lowering)]
    worker_s = {"compile": sum(r.compile_s for r in now), "analyse": sum(r.analyse_s for r in now),
                "run": sum(m.check_run_s for p in plans for m in p.measured_now)}
    return SweepResult(variants, kernels, rankings, schedules, candidates,
                       compiled=sum(p.compiled_now for p in plans), cached=sum(not p.compiled_now for p in plans),
                       phases_s=clock.phases_s, worker_s=worker_s)


def sweep(models: str | list[str], **kwargs) -> pd.DataFrame:
    """Run a sweep (see :func:`run_sweep`) and return one row per variant as a DataFrame."""
    return run_sweep([models] if isinstance(models, str) else list(models), **kwargs).variants
