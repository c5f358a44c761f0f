"""MetaSchedule tuning with reusable records and an energy-aware choice of schedule (TVM-specific).

A tuned strategy (``tuning="metaschedule:N[:pick]"``) extracts one tuning task per distinct kernel of
the fused graph, tunes on this CPU the tasks its records database does not know yet (``N`` trials
across the model), and then applies one measured schedule per kernel:

- ``latency`` (default): MetaSchedule's own choice, the fastest measured candidate;
- ``energy``: the measured candidate with the least energy on the cost model's ``cpu`` target, its
  dynamic energy read from the candidate's lowered TIR and its static energy from its *measured*
  latency;
- ``edp``: the least energy x measured latency.

Records live in a MetaSchedule JSON database per target (``cache_dir()/tuning/<target>`` unless a
directory is given): a kernel tuned once is never tuned again, by any later sweep or build, and an
interrupted tuning run keeps every batch it measured. MetaSchedule cannot measure GPU candidates
without a GPU, so only CPU variants are tuned here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pandas as pd
import tvm
import tvm_ffi
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import dlight as dl
from tvm.s_tir import meta_schedule as ms

from .errors import ExplorerError

#: Candidates built and measured per MetaSchedule iteration: builder workers re-import TVM for
#: every batch (about 30 s here), so larger batches waste less.
TRIALS_PER_BATCH = 16


def records_dir(target: dict, override: str | os.PathLike | None = None) -> Path:
    """The tuning-records directory for ``target`` (an LLVM target dict), created if missing."""
    from .loading import cache_dir

    if override is not None:
        path = Path(override)
    else:
        tag = hashlib.sha256(str(sorted(target.items())).encode()).hexdigest()[:8]
        path = cache_dir() / "tuning" / f"{target.get('kind')}-{target.get('mcpu', 'generic')}-{tag}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tune_target(target: dict) -> tvm.target.Target:
    import psutil

    return tvm.target.Target({**target, "num-cores": psutil.cpu_count(logical=False) or 1})


def _database(work_dir: Path) -> ms.database.JSONDatabase:
    return ms.database.JSONDatabase(work_dir=str(work_dir))


def _has_records(db, task) -> bool:
    mod = task.dispatched[0]
    return bool(db.has_workload(mod) and db.get_top_k(db.commit_workload(mod), 1))


@dataclasses.dataclass
class TuneStats:
    """What one tuning call did."""

    tasks: int
    tuned: int     # tasks tuned now
    reused: int    # tasks whose records were already in the database
    trials: int    # candidates measured now


def tune(mod: tvm.IRModule, target: dict, trials: int, work_dir: Path, progress: bool = True) -> TuneStats:
    """Tune every kernel of ``mod`` (unscheduled TIR) that ``work_dir``'s database lacks."""
    from tqdm.auto import tqdm

    ttarget = _tune_target(target)
    tasks = ms.relax_integration.extract_tasks(mod, ttarget)
    db = _database(work_dir)
    todo = [t for t in tasks if not _has_records(db, t)]
    stats = TuneStats(len(tasks), len(todo), len(tasks) - len(todo), 0)
    if not todo:
        return stats
    budget = max(trials * len(todo) // max(len(tasks), 1), len(todo))
    bar = tqdm(total=budget, disable=not progress, unit="trial", desc=f"tuning {len(todo)} kernels")

    @derived_object
    class _Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            stats.trials += len(measure_candidates)
            bar.set_postfix_str(task_scheduler.tasks_[task_id].ctx.task_name[:40])
            bar.update(len(measure_candidates))

    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        todo, work_dir=str(work_dir), seed=0, num_threads=os.cpu_count() or 1)
    try:
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir), max_trials_global=budget,
            num_trials_per_iter=max(4, min(TRIALS_PER_BATCH, budget // len(todo))),
            builder=ms.builder.LocalBuilder(max_workers=os.cpu_count() or 1, timeout_sec=600),
            runner=ms.runner.LocalRunner(timeout_sec=600, evaluator_config=ms.runner.EvaluatorConfig(
                number=3, repeat=1, min_repeat_ms=0, enable_cpu_cache_flush=False)),
            database=db, cost_model=_cost_model(), task_scheduler="round-robin",
            measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_Progress()])
    finally:
        bar.close()
    return stats


def _cost_model() -> str:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return "random"  # MetaSchedule's learned model needs xgboost; random still measures every pick
    return "xgb"


def _kernel_name(workload) -> str:
    func = next(iter(workload.mod.functions.values()))
    return str(func.attrs["global_symbol"]) if func.attrs and "global_symbol" in func.attrs else "kernel"


def _candidate_workload(record, target: dict) -> pd.DataFrame:
    """One-row workload table of a measured candidate: its trace replayed and lowered."""
    from . import tir_analysis
    from .tvm_compile import CAPTURE_AFTER, CallSite, Tensor, _CaptureTIR

    sch = tvm.s_tir.Schedule(record.workload.mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    name = _kernel_name(record.workload)
    func = sch.mod["main"].with_attr("global_symbol", name)
    capture = _CaptureTIR()
    with tvm.transform.PassContext(opt_level=3, instruments=[capture]):
        tvm.compile(tvm.IRModule({name: func}), tvm.target.Target(target))
    if capture.mod is None:
        raise RuntimeError(f"{CAPTURE_AFTER} never ran for {name}")
    kernel = tir_analysis.analyse_primfunc(capture.mod[name], name)
    n = len(func.params)
    args = [Tensor(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype), "input" if i < n - 1 else "kernel",
                   storage=i) for i, p in enumerate(func.params)]
    call = CallSite(0, name, args, len(args) - 1, [name], [])
    return tir_analysis.workload_table([call], {name: kernel})


def choose(work_dir: Path, target: dict, mod: tvm.IRModule | None = None,
           energy_target: str = "cpu") -> tuple[list, pd.DataFrame]:
    """Every measured candidate in the database for the kernels of ``mod`` (all, if None), scored:
    returns the records grouped per kernel and a table with, per kernel, the latency-, energy- and
    EDP-best candidate."""
    from cost_models import energy
    from cost_models.targets import load_target

    spec = load_target(energy_target)
    db = _database(work_dir)
    names = []
    if mod is not None:
        names = [(t.dispatched[0], t.task_name) for t in ms.relax_integration.extract_tasks(mod, _tune_target(target))]

    def name_of(workload) -> str | None:
        if mod is None:
            return _kernel_name(workload)
        return next((n for m, n in names if tvm_ffi.structural_equal(m, workload.mod)), None)
    groups: list[tuple[object, list]] = []
    for rec in db.get_all_tuning_records():
        if not rec.run_secs or any(float(x) >= 1e9 for x in rec.run_secs):
            continue  # failed to build or run
        for wl, recs in groups:
            if wl.same_as(rec.workload) or tvm_ffi.structural_equal(wl.mod, rec.workload.mod):
                recs.append(rec)
                break
        else:
            groups.append((rec.workload, [rec]))
    rows = []
    scored_groups = []
    for wl, recs in groups:
        kernel = name_of(wl)
        if kernel is None:
            continue  # records of a kernel this module does not have
        scored = []
        for i, rec in enumerate(recs):
            latency = sum(float(x) for x in rec.run_secs) / len(rec.run_secs)
            try:
                s = energy.score(_candidate_workload(rec, target), spec).iloc[0]
            except Exception:  # a candidate TVM cannot lower again is simply not a choice
                continue
            dynamic = float(s.energy_compute_j + s.energy_memory_j)
            e = dynamic + spec.static_power_w.value * latency
            scored.append((rec, latency, e, float(s.dram_bytes)))
        if not scored:
            continue
        best = {pick: min(scored, key=key) for pick, key in (
            ("latency", lambda c: c[1]), ("energy", lambda c: c[2]), ("edp", lambda c: c[1] * c[2]))}
        scored_groups.append((wl, best))
        rows.append({"kernel": kernel, "candidates": len(scored),
                     "latency_best_s": best["latency"][1], "latency_best_energy_j": best["latency"][2],
                     "latency_best_dram_bytes": best["latency"][3],
                     "energy_best_s": best["energy"][1], "energy_best_energy_j": best["energy"][2],
                     "energy_best_dram_bytes": best["energy"][3],
                     "edp_best_s": best["edp"][1], "edp_best_energy_j": best["edp"][2],
                     "differ": best["energy"][0] is not best["latency"][0]})
    return scored_groups, pd.DataFrame(rows)


def apply(mod: tvm.IRModule, target: dict, work_dir: Path, pick: str) -> tuple[tvm.IRModule, pd.DataFrame]:
    """Schedule ``mod`` with the ``pick`` candidate of each kernel from ``work_dir``'s records; the
    kernels without records get the default schedule. Returns the module and the choice table."""
    from .tvm_compile import InlineElementwise

    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)  # DLight rewrites its input in place
    if pick == "latency":
        database = _database(work_dir)
        choices = pd.DataFrame()
    else:
        groups, choices = choose(work_dir, target, mod)
        database = ms.database.MemoryDatabase()
        for wl, best in groups:
            rec = best[pick][0]
            committed = database.commit_workload(wl.mod)
            database.commit_tuning_record(ms.database.TuningRecord(rec.trace, committed, rec.run_secs, rec.target,
                                                                   rec.args_info))
    with tvm.target.Target(target):
        with database:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        mod = dl.ApplyDefaultSchedule(InlineElementwise())(mod)
    return mod, choices


def check_tunable(flavour: str) -> None:
    """Tuning measures candidates on this machine: only CPU (generic) variants can be tuned."""
    if flavour != "generic":
        raise ExplorerError("MetaSchedule needs a GPU to measure CUDA candidates and this machine has none")


def tune_model(model: str, strategy: str = "fused-tuned", trials: int | None = None,
               records: str | os.PathLike | None = None, input_shapes: dict | None = None,
               progress: bool = True) -> TuneStats:
    """Fill the tuning-records database for ``model`` under a tuned ``strategy`` on this CPU,
    without building; later sweeps and builds reuse the records."""
    from .loading import prepare
    from .strategies import get_strategy
    from .tvm_compile import _imported, graph_passes, host_target

    strat = get_strategy(strategy)
    if not strat.tuned:
        raise ExplorerError(f"strategy {strategy!r} does not tune; tuned strategies have tuning='metaschedule:N'")
    prepared = prepare(model, input_shapes)
    target = host_target()
    passes, _ = graph_passes(strat, "generic", target)
    with tvm.target.Target(target):
        mod = passes(_imported(str(prepared.path), prepared.sha256))
    return tune(mod, target, trials or strat.trials, records_dir(target, records), progress)
