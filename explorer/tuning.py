"""MetaSchedule tuning with reusable records and an energy-aware choice of schedule (TVM-specific).

A tuned strategy (``tuning="metaschedule:N[:pick]"``) extracts one tuning task per distinct kernel of
the fused graph, gives each kernel ``N // kernels`` measured candidates on this CPU (counting those
its records database already holds), and then applies one measured schedule per kernel:

- ``latency`` (default): the fastest measured candidate (MetaSchedule's own choice);
- ``energy``: the measured candidate with the least energy on the cost model's ``cpu`` target, its
  dynamic energy read from the candidate's lowered TIR and its static energy from its *measured*
  latency;
- ``edp``: the least energy x measured latency.

Records live in a MetaSchedule JSON database per target (``cache_dir()/tuning/<target>`` unless a
directory is given): a candidate measured once is never measured again, by any later sweep or
build; a larger budget only adds the missing trials; an interrupted tuning run keeps every batch it
measured. Beside the database, ``budgets.json`` says which budget each kernel was tuned to and
``candidates.jsonl`` caches every candidate's analysed workload, so scoring them again is cheap.
MetaSchedule cannot measure GPU candidates without a GPU, so only CPU variants are tuned here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import sys
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


def _records_by_kernel(db) -> dict[str, list]:
    """Every record in ``db`` (failed builds and runs included) grouped by kernel (structural hash)."""
    groups: dict[str, list] = {}
    for rec in db.get_all_tuning_records():
        groups.setdefault(str(tvm_ffi.structural_hash(rec.workload.mod)), []).append(rec)
    return groups


def kernel_tasks(mod: tvm.IRModule, target: dict) -> list:
    """MetaSchedule's tuning tasks for the kernels of ``mod`` (unscheduled TIR) on ``target``."""
    return ms.relax_integration.extract_tasks(mod, _tune_target(target))


class _Ledger:
    """``budgets.json`` in a records directory: per kernel (structural hash), the per-kernel trial
    budget already tuned to. A kernel whose search space ran out before its budget still counts as
    done, so it is not tuned again for nothing."""

    def __init__(self, work_dir: Path):
        self.path = work_dir / "budgets.json"
        self.done = json.loads(self.path.read_text()) if self.path.exists() else {}

    @staticmethod
    def key(task) -> str:
        return str(tvm_ffi.structural_hash(task.dispatched[0]))

    def get(self, task) -> int:
        return int(self.done.get(self.key(task), 0))

    def mark(self, tasks, budget: int) -> None:
        for t in tasks:
            self.done[self.key(t)] = max(budget, self.get(t))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=0, sort_keys=True))
        tmp.replace(self.path)


@dataclasses.dataclass
class TuneStats:
    """What one tuning call did."""

    tasks: int
    tuned: int     # tasks tuned now
    reused: int    # tasks whose records already met the budget
    trials: int    # candidates measured now


def _quiet_metaschedule_console() -> None:
    """Keep MetaSchedule's console output to warnings (the progress bar shows progress; its full log
    still goes to ``work_dir/logs``). Its console level is its logger's level when tuning starts, and
    its logging config re-lists that logger's handlers by name, so a handler attached by anyone else
    (pytest's log capture, for one) would make it fail: those are detached."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    logger.setLevel(logging.WARNING)
    for handler in list(logger.handlers):
        if handler.get_name() not in (f"{logger.name}.console", f"{logger.name}.file"):
            logger.removeHandler(handler)


class _StopOnInterrupt:
    """While active, the first Ctrl-C asks tuning to stop after the batch being measured (MetaSchedule
    ignores Python's KeyboardInterrupt inside its loop); a second one stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.SIG_DFL)
        print("\nexplorer: stopping after the batch being measured (Ctrl-C again to stop now)", file=sys.stderr)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as before
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        return False


def per_kernel_budget(trials: int, kernels: int) -> int:
    """Trials each kernel gets from a model-wide budget of ``trials``."""
    return max(1, trials // max(kernels, 1))


def tune(tasks: list, trials: int, work_dir: Path, progress: bool = True) -> TuneStats:
    """Tune every kernel of ``tasks`` (:func:`kernel_tasks`) to ``trials // kernels`` measured candidates,
    counting the candidates ``work_dir``'s database already holds: a kernel is never measured twice
    for the same budget, and a larger budget only adds the missing trials."""
    from tqdm.auto import tqdm

    db = _database(work_dir)
    ledger = _Ledger(work_dir)
    per_kernel = per_kernel_budget(trials, len(tasks))
    measured = {key: len(recs) for key, recs in _records_by_kernel(db).items()}
    short: dict[int, list] = {}  # missing trials -> the kernels missing that many
    for t in tasks:
        have = max(ledger.get(t), measured.get(_Ledger.key(t), 0))
        if have < per_kernel:
            short.setdefault(per_kernel - have, []).append(t)
    todo = [t for group in short.values() for t in group]
    stats = TuneStats(len(tasks), len(todo), len(tasks) - len(todo), 0)
    if not todo:
        return stats
    bar = tqdm(total=sum(n * len(g) for n, g in short.items()), disable=not progress, unit="trial",
               desc=f"tuning {len(todo)} kernels")

    stop = _StopOnInterrupt()

    @derived_object
    class _Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            stats.trials += len(measure_candidates)
            bar.set_postfix_str(task_scheduler.tasks_[task_id].ctx.task_name[:40])
            bar.update(len(measure_candidates))
            if stop.requested:  # this batch is in the database already (AddToDatabase runs first)
                for i, task in enumerate(task_scheduler.tasks_):
                    if not task.is_terminated:
                        task_scheduler.terminate_task(i)

    try:
        for missing, group in sorted(short.items(), reverse=True):
            _quiet_metaschedule_console()
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                group, work_dir=str(work_dir), seed=0, num_threads=os.cpu_count() or 1)
            with stop:
                ms.tune.tune_tasks(
                    tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                    max_trials_global=missing * len(group), max_trials_per_task=missing,
                    num_trials_per_iter=min(TRIALS_PER_BATCH, missing),
                    builder=ms.builder.LocalBuilder(max_workers=os.cpu_count() or 1, timeout_sec=600),
                    runner=ms.runner.LocalRunner(timeout_sec=600, evaluator_config=ms.runner.EvaluatorConfig(
                        number=3, repeat=1, min_repeat_ms=0, enable_cpu_cache_flush=False)),
                    database=db, cost_model=_cost_model(), task_scheduler="round-robin",
                    measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_Progress()])
            if stop.requested:
                raise KeyboardInterrupt  # raised here: MetaSchedule swallows exceptions from its callbacks
            ledger.mark(group, per_kernel)  # only once the group finished: an interrupted run resumes
        bar.total = bar.n  # kernels whose search space ran out measured fewer than their budget
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


def _candidate_workload(record, target: dict) -> dict:
    """Workload row of a measured candidate: its trace replayed, lowered to the point the explorer
    analyses every build at, and analysed."""
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
    return tir_analysis.workload_table([call], {name: kernel}).iloc[0].to_dict()


class _CandidateCache:
    """``candidates.jsonl`` in a records directory: the workload row of every candidate scored so
    far, keyed by kernel, trace, target and the analysis code, so each candidate is lowered once."""

    def __init__(self, work_dir: Path, target: dict):
        from .deploy import source_fingerprint

        self.path = work_dir / "candidates.jsonl"
        self.salt = f"{sorted(target.items())}|{source_fingerprint(('explorer/tir_analysis.py', 'explorer/reuse.py'))}"
        self.rows: dict[str, dict | None] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run
                self.rows[entry["key"]] = entry["row"]

    def key(self, kernel_hash: str, record) -> str:
        trace = json.dumps(record.trace.as_json(remove_postproc=False), default=str)
        return hashlib.sha256(f"{kernel_hash}|{trace}|{self.salt}".encode()).hexdigest()[:24]

    def get(self, key: str, compute) -> dict | None:
        """The cached row, or ``compute()``'s (None where the candidate cannot be lowered again)."""
        if key in self.rows:
            return self.rows[key]
        try:
            row = compute()
        except Exception:  # a candidate TVM cannot lower again is simply not a choice
            row = None
        self.rows[key] = row
        with self.path.open("a") as f:
            f.write(json.dumps({"key": key, "row": row}, default=_plain) + "\n")
        return row


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def break_even_static_w(latency_s: list[float], dynamic_j: list[float]) -> float:
    """The static power (W) below which some slower candidate, saving more dynamic energy than the
    static power costs over its extra time, beats the fastest candidate on energy; NaN when no slower
    candidate has less dynamic energy (the fastest is the energy-best at any static power)."""
    fast = min(range(len(latency_s)), key=latency_s.__getitem__)
    return max(((dynamic_j[fast] - d) / (t - latency_s[fast]) for t, d in zip(latency_s, dynamic_j)
                if t > latency_s[fast] and d < dynamic_j[fast]), default=float("nan"))


#: Per kernel, which candidate each pick keeps.
PICKS = ("latency", "energy", "edp")


@dataclasses.dataclass
class Choice:
    """Every scored candidate of the tuned kernels and, per kernel, the one each pick keeps."""

    records: dict            # kernel hash -> {pick: TuningRecord}
    table: pd.DataFrame      # one row per kernel: the latency-, energy- and EDP-best candidates
    candidates: pd.DataFrame  # one row per scored candidate


def choose(work_dir: Path, target: dict, tasks: list | None = None, energy_target: str = "cpu",
           progress: bool = False) -> Choice:
    """Score every measured candidate in the database for the kernels of ``tasks``
    (:func:`kernel_tasks`; all kernels, if None) on the cost model's ``energy_target``: dynamic energy from the candidate's lowered TIR,
    static energy over its measured latency. Returns, per kernel, the latency-, energy- and
    EDP-best candidate and the table of all candidates. ``switch_static_w`` in the per-kernel table is
    the static power below which a slower candidate with less dynamic energy would be the energy-best
    (NaN when no slower candidate has less): above it, racing to idle wins."""
    from tqdm.auto import tqdm

    from cost_models import energy
    from cost_models.targets import load_target

    spec = load_target(energy_target)
    names = {_Ledger.key(t): t.task_name for t in tasks or []}
    groups: dict[str, list] = {}
    for key, recs in _records_by_kernel(_database(work_dir)).items():
        valid = [r for r in recs if r.run_secs and all(float(x) < 1e9 for x in r.run_secs)]  # built and ran
        if tasks is None and valid:
            names[key] = _kernel_name(valid[0].workload)
        if key in names and valid:
            groups[key] = valid
    cache = _CandidateCache(work_dir, target)
    total = sum(len(r) for r in groups.values())
    rows, cand_rows, picked = [], [], {}
    with tqdm(total=total, disable=not progress or not total, unit="candidate", desc="scoring candidates") as bar:
        for key, recs in groups.items():
            scored = []
            for i, rec in enumerate(recs):
                row = cache.get(cache.key(key, rec), lambda rec=rec: _candidate_workload(rec, target))
                bar.update(1)
                if row is None:
                    continue
                s = energy.score(pd.DataFrame([row]), spec).iloc[0]
                latency = sum(float(x) for x in rec.run_secs) / len(rec.run_secs)
                dynamic = float(s.energy_compute_j + s.energy_memory_j)
                static = spec.static_power_w.value * latency
                scored.append((rec, latency, dynamic + static, float(s.dram_bytes), dynamic))
                cand_rows.append({"kernel": names[key], "candidate": i, "measured_latency_s": latency,
                                  "dynamic_energy_j": dynamic, "static_energy_j": static,
                                  "energy_j": dynamic + static, "dram_bytes": float(s.dram_bytes), "_rec": rec})
            if not scored:  # none could be lowered again: every pick falls back to the fastest
                fastest = min(recs, key=lambda r: sum(float(x) for x in r.run_secs))
                picked[key] = {p: fastest for p in PICKS}
                continue
            best = {"latency": min(scored, key=lambda c: c[1]), "energy": min(scored, key=lambda c: c[2]),
                    "edp": min(scored, key=lambda c: c[1] * c[2])}
            picked[key] = {p: b[0] for p, b in best.items()}
            switch = break_even_static_w([c[1] for c in scored], [c[4] for c in scored])
            rows.append({"kernel": names[key], "candidates": len(scored),
                         **{f"{p}_best_s": best[p][1] for p in PICKS},
                         **{f"{p}_best_energy_j": best[p][2] for p in PICKS},
                         **{f"{p}_best_dram_bytes": best[p][3] for p in PICKS},
                         "differ": best["energy"][0] is not best["latency"][0],
                         "switch_static_w": switch, "static_w": spec.static_power_w.value})
    for c in cand_rows:
        rec = c.pop("_rec")
        for p in PICKS:
            c[f"{p}_best"] = any(r[p] is rec for r in picked.values())
    return Choice(picked, pd.DataFrame(rows), pd.DataFrame(cand_rows))


def apply(mod: tvm.IRModule, tasks: list, target: dict, work_dir: Path, pick: str, progress: bool = False
          ) -> tuple[tvm.IRModule, Choice]:
    """Schedule ``mod`` (whose kernels are ``tasks``) with the ``pick`` candidate of each kernel from
    ``work_dir``'s records; the
    kernels without records get the default schedule. Returns the module and the scored choice
    (see :func:`choose`), whatever the pick, so every tuned variant can show where they differ."""
    from .tvm_compile import InlineElementwise

    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)  # DLight rewrites its input in place
    choice = choose(work_dir, target, tasks, progress=progress)
    # every pick, latency too, builds exactly the candidate the choice table names
    database = ms.database.MemoryDatabase()
    for best in choice.records.values():
        rec = best[pick]
        committed = database.commit_workload(rec.workload.mod)
        database.commit_tuning_record(ms.database.TuningRecord(rec.trace, committed, rec.run_secs, rec.target,
                                                               rec.args_info))
    with tvm.target.Target(target):
        with database:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        mod = dl.ApplyDefaultSchedule(InlineElementwise())(mod)
    return mod, choice


def tune_model(model: str, strategy="fused-tuned", trials: int | None = None,
               records: str | os.PathLike | None = None, input_shapes: dict | None = None,
               progress: bool = True) -> TuneStats:
    """Fill the tuning-records database for ``model`` under a tuned ``strategy`` on this CPU,
    without building; later sweeps and builds reuse the records. ``strategy`` is a name or a
    :class:`~explorer.strategies.Strategy`; ``trials`` overrides its budget."""
    from .loading import prepare
    from .strategies import Strategy, get_strategy
    from .tvm_compile import _imported, graph_passes, host_target

    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    if not strat.tuned:
        raise ExplorerError(f"strategy {strat.name!r} does not tune; tuned strategies have tuning='metaschedule:N'")
    prepared = prepare(model, input_shapes)
    target = host_target()
    passes, _ = graph_passes(strat, "generic", target)
    with tvm.target.Target(target):
        mod = passes(_imported(str(prepared.path), prepared.sha256))
    return tune(kernel_tasks(mod, target), trials or strat.trials, records_dir(target, records), progress)
