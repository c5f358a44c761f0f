"""Sweeps: every (model, strategy, target) variant compiled, analysed, checked, timed and scored.

A sweep plans one lowering per model, strategy and group of targets (:mod:`explorer.sweep.plan`) and runs
in phases:

1. **prepare**: load and validate every model, calibrate int8, compute onnxruntime's reference outputs;
2. **compile**: every lowering not stored yet, in ``jobs`` isolated worker processes (or on a Ray
   cluster; :mod:`explorer.sweep.backends`); each is stored the moment it finishes, in the cache and
   in ``--out``'s results store. Tuned strategies compile one at a time, after the others, since
   MetaSchedule measures candidates on the machine's cores;
3. **time** (:mod:`explorer.sweep.timing`): every CPU build that runs here, one at a time, with nothing else running, with as many
   threads as the target has cores, and onnxruntime with the same threads;
4. **score**: rows, rankings and reports, recomputed from the stored lowerings on every run, so a
   rerun after an edit of a target file or of the cost model compiles nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

from cost_models.interconnect import devices_error
from cost_models.spec import TargetSpec
from cost_models.targets import load_target
from explorer.core.errors import ExplorerError, one_line
from explorer.core.prepared import PreparedModel
from explorer.core.strategies import parse_strategies
from explorer.core.units import fmt_bytes
from explorer.core.variant import Lowering, Measurement, Status, StatusKind
from explorer.host.cpu import timing_threads
from explorer.model.arguments import instance_name
from explorer.model.arguments import model_name as model_name_of
from explorer.model.int8_calibration import calibrate, calibration_feeds
from explorer.model.phases import Phase, parse_phases
from explorer.model.prepare import prepare
from explorer.scoring.rows import VARIANT_COLUMNS, base_row, failed_row, rank, throughput, tuning_tables, variant_row
from explorer.store import lowerings
from explorer.store.cache import touch, tvm_version
from explorer.store.eviction import enforce_cap, using_cache
from explorer.sweep.backends import backend as compile_backend
from explorer.sweep.backends import compile_missing
from explorer.sweep.ort_int8 import int8_latency
from explorer.sweep.plan import Plan, lowering_of, make_plan
from explorer.sweep.reference import Reference, reference
from explorer.sweep.timing import TIMED_RUNS, needs_run, time_builds
from explorer.sweep.workers import default_jobs, default_worker_memory
from explorer.tvm.compiler_facts import resolve_mcpu
from explorer.workload.reuse import RowLoad
from explorer.workload.table import with_row_load
from models import split_tensor_parallel

#: Tables a tuned variant adds besides its kernels (see :func:`explorer.scoring.rows.tuning_tables`).
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
    worker_s: dict[str, float] = dataclasses.field(default_factory=dict)  # compile / analyse / codegen / run seconds


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


def _time_onnxruntime_int8(plans: list[Plan], references: dict[str, Reference], calibration, bar) -> dict:
    """onnxruntime's own int8 build (static QDQ on the int8 pass's calibration inputs) timed with the
    threads of every measured int8 variant: ``{(model, calibration key, threads): seconds}`` (None where
    onnxruntime's quantizer makes a model its runtime refuses: gpt2's quantized embedding table)."""
    out: dict[tuple[str, str, int], float | None] = {}
    feeds: dict[str, list] = {}  # per model: the calibration inputs (seeded samples are drawn once)
    for plan in plans:
        if plan.strategy.precision != "int8" or not plan.measurements:
            continue
        for threads in plan.measurements:
            key = (plan.model.name, plan.calibration, threads)
            if key not in out:
                bar.phase(f"{plan.model.name}: timing onnxruntime's int8 build with {threads} threads")
                if plan.model.name not in feeds:
                    feeds[plan.model.name] = calibration_feeds(plan.model, calibration)[0]
                try:
                    out[key] = int8_latency(plan.model, feeds[plan.model.name], plan.calibration,
                                            references[plan.model.name], threads, repeat=TIMED_RUNS)
                except Exception as err:  # a comparison that cannot be made leaves the column empty, never the sweep
                    out[key] = None
                    bar.phase(f"{plan.model.name}: onnxruntime's int8 build does not run ({one_line(err)}): "
                              "onnxruntime_int8_latency_s left empty")
    return out


def _score(prepared: dict, plans: list[Plan], strats: list, specs: list[TargetSpec],
           references: dict[str, Reference], ort: dict[tuple[str, int], float], ort_int8: dict,
           row_load: RowLoad | None = None):
    """Every variant's row and kernels, and the tuning tables, from the stored lowerings and measurements
    (a mixture's routed kernels re-counted under a measured ``row_load`` where one is given)."""
    rows, kernel_frames = [], []
    tuning_frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TUNING_TABLES}
    by_model: dict[str, list[Plan]] = {}
    for plan in plans:
        by_model.setdefault(plan.model.name, []).append(plan)
    for model_name, model in prepared.items():
        if isinstance(model, ExplorerError):
            for s in strats:
                for t in specs:
                    rows.append(failed_row(base_row(model_name, s, t.name),
                                           Status(StatusKind.FAILED, str(model))))
            continue
        ref = references.get(model.name)
        for plan in by_model.get(model.name, []):
            for name, table in tuning_tables(plan.result, plan.req.scoring, model.name, plan.strategy.name).items():
                tuning_frames[name].append(table)
            for t in plan.group:
                row = base_row(model.name, plan.strategy, t.name)
                row.update(model_hash=model.key, tvm_version=tvm_version(), phase=model.phase or None, batch=model.batch,
                           kv_cache_bytes=model.kv_cache_bytes if model.phase else None,
                           kv_cache_dtype=model.kv_cache_dtype or None)
                threads = timing_threads(t)
                measurement = plan.measurements.get(threads) if t.tvm == "llvm" and t.runs_here else None
                if isinstance(measurement, Measurement):
                    row.update(onnxruntime_latency_s=ort.get((model.name, threads)), onnxruntime_threads=threads,
                               onnxruntime_int8_latency_s=ort_int8.get((model.name, plan.calibration, threads)))
                result = plan.result
                if row_load is not None and isinstance(result, Lowering):
                    result = dataclasses.replace(result, workload=with_row_load(result.workload, row_load))
                row, kern = variant_row(row, result, t, ref.outputs if ref else None, measurement)
                row.update(throughput(row, model.batch, model.tokens))
                rows.append(row)
                kernel_frames.append(kern)
    return rows, kernel_frames, tuning_frames


def _check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".explorer-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ExplorerError(f"cannot write to --out {out}: {err.strerror or err}") from None


def run_sweep(models: list[str], targets: list[str] | None = None, strategies: str | list[str] | None = "all",
              out: str | Path | None = None, input_shapes: dict | None = None, check: bool = True,
              build: bool = True, progress: bool = True, isolate: bool = True, seed: int = 0,
              max_accuracy_loss: float | None = None, calibration: str | Path | None = None,
              tuning_records: str | Path | None = None, jobs: int | None = None,
              variant_timeout: float | None = None, backend: str = "local", address: str | None = None,
              strict: bool = False, max_tensor_bytes: int | None = None,
              input_values: dict[str, float] | None = None, inputs: str | Path | None = None,
              tables: bool = True, phases: list[Phase] | str | None = None,
              batches: list[int] | None = None, kv_cache_dtype: str = "auto",
              row_load: RowLoad | None = None, worker_memory: int | None = None) -> SweepResult:
    """Compile every model under every strategy for every target; return variant and kernel tables.

    ``targets`` are names of shipped targets or paths of target files (default ``["cpu"]``).
    ``check`` runs each CPU build once on a seeded input, compares it with onnxruntime and times both.
    ``build=False`` analyses without generating code (faster; nothing is run).
    ``max_accuracy_loss`` (percent relative output error, see :mod:`explorer.scoring.accuracy`) fills
    ``meets_accuracy`` for every variant that ran. ``calibration`` is a directory of ``.npy``
    inputs for int8 strategies (default: seeded random inputs; see :mod:`explorer.model.int8_calibration`).
    ``tuning_records`` is the MetaSchedule records directory tuned strategies read and extend
    (default: one per CPU in the cache; see :mod:`explorer.store.tuning_records`).
    ``jobs`` worker processes compile at once (default: what the cores and memory allow), each
    variant within ``variant_timeout`` seconds (default: no limit). ``backend="ray"`` compiles on
    the Ray cluster at ``address`` instead (see :mod:`explorer.sweep.ray_backend`).
    ``out`` keeps every finished variant in ``out/results.sqlite`` and writes the tables and report
    (with ``tables=False`` it only reads and extends the store, leaving the tables as they are).
    ``strict`` stops at the first variant that fails (:class:`~explorer.core.errors.SweepStopped`);
    ``max_tensor_bytes`` limits the size of every tensor a model declares (see :mod:`explorer.model.validation`);
    ``input_values`` freezes inputs to constants (an ``If`` on a sample rate then keeps one branch).
    ``inputs`` is a directory of real ``.npy`` inputs: the first sample is the check input every CPU
    variant and onnxruntime run on, and (without ``calibration``) all of them calibrate int8.
    ``phases`` (``prefill:P``, ``decode:L``: :mod:`explorer.model.phases`) sweeps each decoder once per phase;
    ``batches`` sweeps every model at each batch (the symbolic first dimension of its inputs);
    ``kv_cache_dtype`` keeps a decoder's cache in ``float16`` or ``float32`` between steps (``auto``:
    the model's own; see :func:`explorer.model.phases.with_kv_cache_dtype`). ``row_load`` is a mixture's
    measured expert load (:mod:`explorer.workload.expert_load`): its routed kernels' traffic is counted
    under it when scored, instead of under uniform routing (nothing is compiled again). ``worker_memory``
    is each compile worker's memory budget in bytes (default: nine tenths of the available memory over the
    jobs; :func:`explorer.sweep.workers.default_worker_memory`): a variant that outgrows it is a
    ``failed: out of memory`` row.
    """
    from explorer.sweep.progress import Progress

    clock = _Clock()
    specs = [load_target(t) for t in (targets or ["cpu"])]
    for devices in {split_tensor_parallel(str(m))[1] for m in models}:
        for why in filter(None, (devices_error(t, devices) for t in specs)):
            raise ExplorerError(why)
    strats = parse_strategies(strategies)
    jobs = jobs or default_jobs()
    make_runner, make_timer = compile_backend(backend, jobs, variant_timeout, isolate, address,
                                              worker_memory or default_worker_memory(jobs))
    groups: dict[str, list[TargetSpec]] = {}
    for t in specs:
        groups.setdefault(lowering_of(t), []).append(t)
    store = None
    if out:
        from explorer.store.results_db import SQLiteStore

        _check_writable(Path(out))
        store = SQLiteStore(Path(out) / "results.sqlite")
    stores = lowerings.Stores(store, lowerings.CACHE)
    phase_list = parse_phases(phases) if isinstance(phases, str) else list(phases or [])
    instances = [(m, ph, b) for m in models for ph in (phase_list or [None]) for b in (batches or [None])]
    bar = Progress(len(instances) * len(strats) * len(specs), enabled=progress)
    in_use = contextlib.ExitStack()
    in_use.enter_context(using_cache())  # a prune never removes what this sweep uses
    # local compile workers import TVM while the models are prepared (a sweep with nothing to compile
    # stops them unused, before the timing)
    early = make_runner(tuned=False) if backend == "local" else None
    if early is not None:
        in_use.callback(early.close)
        if hasattr(early, "start"):
            early.start()
    try:
        with clock("prepare"):
            prepared: dict[str, PreparedModel | ExplorerError] = {}
            for model_name, phase, batch in instances:  # validate every model before any work starts
                label = instance_name(model_name_of(model_name), phase, batch, kv_cache_dtype)
                try:
                    prepared[label] = prepare(model_name, input_shapes, max_tensor_bytes, input_values, phase, batch,
                                              kv_cache_dtype)
                except ExplorerError as err:
                    if len(instances) == 1:
                        raise
                    prepared[label] = err
            mcpu = resolve_mcpu() if "generic" in groups else ""
            plans: list[Plan] = []
            references: dict[str, Reference] = {}
            for model_name, model in prepared.items():
                if isinstance(model, ExplorerError):
                    continue
                cal = None
                if any(s.calibrated for s in strats):
                    bar.phase(f"{model.name}: calibrating activation scales")
                    cal = calibrate(model, calibration or inputs)
                if build and check and any(t.tvm == "llvm" and t.runs_here for t in specs):
                    references[model.name] = reference(model, seed, inputs)
                for strategy in strats:
                    for lowering, group in groups.items():
                        plans.append(make_plan(model, strategy, lowering, group, build, check,
                                           cal if strategy.calibrated else None, tuning_records, mcpu,
                                           progress))
            for plan in plans:
                plan.result = stores.get_lowering(plan.key)
                if (plan.result is not None and plan.req.export and backend == "local"
                        and not Path(plan.req.export).exists()
                        and needs_run(plan, stores, references.get(plan.model.name))):
                    plan.result = None  # the library it is to be timed from is gone: build it again
                if plan.result is not None:
                    bar.finished(None, plan.label, len(plan.group), False, "stored")
                if plan.req.export and Path(plan.req.export).exists():
                    touch(Path(plan.req.export), Path(plan.req.export).with_suffix(".json"))
        with clock("compile"):
            compile_missing(plans, stores, lambda tuned: early if early is not None and not tuned else make_runner(tuned),
                            bar, strict)
            if early is not None:
                early.close()  # nothing may run beside the timing
        with clock("time"):
            ort = time_builds(plans, references, stores, make_timer, bar)
            ort_int8 = _time_onnxruntime_int8(plans, references, calibration or inputs, bar)
        evicted = enforce_cap()
        if evicted is not None and evicted.removed:
            print(f"cache over its cap: evicted the {len(evicted.removed)} least recently used entries "
                  f"({fmt_bytes(evicted.removed_bytes)}); see `explorer cache info`", file=sys.stderr)
    finally:
        in_use.close()
        bar.close()
        if store is not None:
            store.close()
    with clock("score"):
        rows, kernel_frames, tuning_frames = _score(prepared, plans, strats, specs, references, ort, ort_int8, row_load)
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
        if out and tables:
            from explorer.reports.writer import write_results

            write_results(Path(out), variants, kernels, rankings, schedules, candidates)
    now = [p.result for p in plans if p.compiled_now and isinstance(p.result, Lowering)]
    worker_s = {"compile": sum(r.compile_s for r in now), "analyse": sum(r.analyse_s for r in now),
                "codegen": sum(r.codegen_s for r in now),
                "run": sum(m.check_run_s for p in plans for m in p.measured_now)}
    return SweepResult(variants, kernels, rankings, schedules, candidates,
                       compiled=sum(p.compiled_now for p in plans), cached=sum(not p.compiled_now for p in plans),
                       phases_s=clock.phases_s, worker_s=worker_s)


def sweep(models: str | list[str], **kwargs) -> pd.DataFrame:
    """Run a sweep (see :func:`run_sweep`) and return one row per variant as a DataFrame."""
    return run_sweep([models] if isinstance(models, str) else list(models), **kwargs).variants
