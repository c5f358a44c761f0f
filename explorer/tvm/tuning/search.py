"""MetaSchedule tuning with reusable records and an energy-aware choice of schedule.

A tuned strategy (``tuning="metaschedule:N[:pick]"``) extracts one tuning task per distinct kernel of
the fused graph, gives each kernel ``N // kernels`` measured candidates on this CPU (counting those
its records database already holds), and then applies one measured schedule per kernel
(:mod:`explorer.tvm.tuning.apply`), chosen by :func:`explorer.scoring.picks.choose` on the target being
built (``latency``, ``energy`` or ``edp``).
The first measured candidate of every kernel is its default schedule (:mod:`explorer.tvm.tuning.seeds`):
the search starts from it, and the fastest pick is never slower than the untuned build.

Records live where :mod:`explorer.store.tuning_records` says: a larger budget only adds the missing
trials; an interrupted tuning run keeps every batch it measured. MetaSchedule cannot measure GPU
candidates without a GPU, so only CPU variants are tuned here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from explorer.core.errors import ExplorerError
from explorer.host.cpu import machine_cores
from explorer.tvm.passes.vnni import register_vnni_intrinsic
from explorer.tvm.tuning.candidates import database, records_by_kernel
from explorer.tvm.tuning.ledgers import Budgets
from explorer.tvm.tuning.neighbors import measure_neighbors
from explorer.tvm.tuning.seeds import default_schedules, seed_default_schedules
from explorer.tvm.tuning.spaces import DEFAULT_SPACE, SPACES

#: Candidates built and measured per MetaSchedule iteration: builder workers re-import TVM for
#: every batch (about 30 s here), so larger batches waste less.
TRIALS_PER_BATCH = 16

#: Each candidate's time is the mean of this many single runs, before each of which every argument but
#: the first (a kernel's weights, in a model read once an inference) is flushed from the caches, as a
#: kernel meets them inside the model. Timed warm (repeats of 3 runs), the picks of a 128-trial budget
#: summed to 0.84 (resnet18) and 0.74 (yolo-block) of the default kernels' time and took 0.95-0.99 of
#: the untuned model's; timed so, to 0.97 and 0.98. One repeat on this shared VM also let a slower
#: candidate measure fastest.
MEASURE_REPEATS = 9


def _tune_target(target: dict) -> tvm.target.Target:
    import psutil

    return tvm.target.Target({**target, "num-cores": psutil.cpu_count(logical=False) or 1})


def kernel_tasks(mod: tvm.IRModule, target: dict) -> list:
    """MetaSchedule's tuning tasks for the kernels of ``mod`` (unscheduled TIR) on ``target``."""
    return ms.relax_integration.extract_tasks(mod, _tune_target(target))


@dataclasses.dataclass
class TuneStats:
    """What one tuning call did."""

    tasks: int
    tuned: int     # tasks tuned now
    reused: int    # tasks whose records already met the budget
    trials: int    # candidates measured now
    seconds: float = 0.0  # wall time of the tuning now

    @property
    def trials_per_minute(self) -> float:
        """Candidates measured per minute of tuning (0 when nothing was tuned)."""
        return self.trials / self.seconds * 60 if self.seconds else 0.0


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


def search_strategy(trials: int):
    """The evolutionary search for kernels each tuned to ``trials`` more candidates: a population of
    32 per trial (64 to TVM's default of 512) bred for 1 generation up to 8 trials, 2 up to 32 and
    TVM's 4 above. With TVM's defaults at a few trials per kernel, breeding 512 candidates for 4
    generations (mutation, postprocessing, features for the cost model) took 70% of tuning time
    for resnet18 (``MetaSchedule``'s profiler: 2.4 of 4.4 minutes in mutation alone), and the cost
    model learns little from so few measurements."""
    population = min(512, max(64, 32 * trials))
    generations = 1 if trials <= 8 else 2 if trials <= 32 else 4
    return ms.search_strategy.EvolutionarySearch(population_size=population, genetic_num_iters=generations)


def per_kernel_budget(trials: int, kernels: int) -> int:
    """Trials each kernel gets from a model-wide budget of ``trials``."""
    return max(1, trials // max(kernels, 1))


def tune(tasks: list, trials: int, work_dir: Path, progress: bool = True, builder: str = "persistent",
         search: str = "sized", space: str = DEFAULT_SPACE) -> TuneStats:
    """Tune every kernel of ``tasks`` (:func:`kernel_tasks`) to ``trials // kernels`` measured candidates,
    counting the candidates ``work_dir``'s database already holds: a kernel is never measured twice
    for the same budget, and a larger budget only adds the missing trials. ``builder``: ``persistent``
    (:class:`explorer.tvm.tuning.builder.PersistentBuilder`, one pool and one runner for every group) or
    ``local`` (TVM's ``LocalBuilder`` and a new runner per group, for comparison); ``search``:
    ``sized`` (:func:`search_strategy`) or ``tvm`` (TVM's default evolutionary search); ``space``: a
    design space of :data:`explorer.tvm.tuning.spaces.SPACES`."""
    if space not in SPACES:
        raise ExplorerError(f"unknown tuning space {space!r}; known: {', '.join(SPACES)}")
    register_vnni_intrinsic()  # before MetaSchedule's x86 rules tensorize with it
    with _measured_threads(machine_cores()):
        return _tune(tasks, trials, work_dir, progress, builder, search, space)


@contextlib.contextmanager
def _measured_threads(threads: int):
    """While active, the runner's worker processes (started now, or again after a timeout) run TVM with
    ``threads`` threads: those the explorer times builds with on this machine
    (:func:`explorer.host.cpu.timing_threads`). TVM's default is half the logical CPUs, one here, and
    a tiling measured fastest on one thread was slower on two (fewer parallel tasks)."""
    before = os.environ.get("TVM_NUM_THREADS")
    os.environ["TVM_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TVM_NUM_THREADS", None)
        else:
            os.environ["TVM_NUM_THREADS"] = before


def _tune(tasks: list, trials: int, work_dir: Path, progress: bool, builder: str, search: str, space: str) -> TuneStats:
    """:func:`tune`, with the runner's threads set."""
    shared = _measurers() if builder == "persistent" else None
    measurers = (lambda: shared) if shared is not None else (lambda: _measurers(local=True))
    stats = TuneStats(len(tasks), 0, len(tasks), 0)
    started = time.perf_counter()
    try:
        db = database(work_dir)
        defaults = default_schedules(tasks)
        stats.trials = seed_default_schedules(tasks, defaults, work_dir, db, *measurers())
        stats.trials += measure_neighbors(tasks, defaults, per_kernel_budget(trials, len(tasks)), work_dir, db,
                                          *measurers())
        _tune_short_kernels(tasks, trials, work_dir, db, measurers, stats, started, progress, search, space)
    finally:
        if shared is not None:
            shared[0].close()
        stats.seconds = time.perf_counter() - started
    return stats


def _tune_short_kernels(tasks: list, trials: int, work_dir: Path, db, measurers, stats: TuneStats, started: float,
                        progress: bool, search: str, space: str) -> None:
    """The search of :func:`tune`: the kernels short of their budget, grouped by how many trials each
    misses, with a builder and runner from ``measurers()``; counts into ``stats`` (timed from ``started``)."""
    from tqdm.auto import tqdm

    ledger = Budgets(work_dir)
    per_kernel = per_kernel_budget(trials, len(tasks))
    measured = {key: len(recs) for key, recs in records_by_kernel(db).items()}
    short: dict[int, list] = {}  # missing trials -> the kernels missing that many
    for t in tasks:
        have = max(ledger.get(t), measured.get(Budgets.key(t), 0))
        if have < per_kernel:
            short.setdefault(per_kernel - have, []).append(t)
    stats.tuned = sum(len(group) for group in short.values())
    stats.reused = len(tasks) - stats.tuned
    if not short:
        return
    bar = tqdm(total=sum(n * len(g) for n, g in short.items()), disable=not progress, unit="trial",
               desc=f"tuning {stats.tuned} kernels")
    stop = _StopOnInterrupt()

    @derived_object
    class _Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            stats.trials += len(measure_candidates)
            per_min = stats.trials / max(time.perf_counter() - started, 1e-9) * 60
            bar.set_postfix_str(f"{per_min:.1f} trials/min, {task_scheduler.tasks_[task_id].ctx.task_name[:40]}")
            bar.update(len(measure_candidates))
            if stop.requested:  # this batch is in the database already (AddToDatabase runs first)
                for i, task in enumerate(task_scheduler.tasks_):
                    if not task.is_terminated:
                        task_scheduler.terminate_task(i)

    try:
        for missing, group in sorted(short.items(), reverse=True):
            _quiet_metaschedule_console()
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                group, work_dir=str(work_dir), seed=0, num_threads=os.cpu_count() or 1, space=SPACES[space](group[0].target),
                strategy=search_strategy(missing) if search == "sized" else "evolutionary")
            builder, runner = measurers()
            with stop:
                ms.tune.tune_tasks(
                    tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                    max_trials_global=missing * len(group), max_trials_per_task=missing,
                    num_trials_per_iter=min(TRIALS_PER_BATCH, missing), builder=builder, runner=runner,
                    database=db, cost_model=_cost_model(), task_scheduler="round-robin",
                    measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_Progress()])
            if stop.requested:
                raise KeyboardInterrupt  # raised here: MetaSchedule swallows exceptions from its callbacks
            ledger.mark(group, per_kernel)  # only once the group finished: an interrupted run resumes
        bar.total = bar.n  # kernels whose search space ran out measured fewer than their budget
    finally:
        bar.close()


def _measurers(local: bool = False) -> tuple:
    """A builder (TVM's ``LocalBuilder`` if ``local``, else one that keeps its pool) and a runner."""
    from explorer.tvm.tuning.builder import PersistentBuilder

    workers = os.cpu_count() or 1
    builder = (ms.builder.LocalBuilder(max_workers=workers, timeout_sec=600) if local
               else PersistentBuilder(max_workers=workers, timeout_sec=600))
    runner = ms.runner.LocalRunner(timeout_sec=600, evaluator_config=ms.runner.EvaluatorConfig(
        number=1, repeat=MEASURE_REPEATS, min_repeat_ms=0, enable_cpu_cache_flush=True))
    return builder, runner


def _cost_model() -> str:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return "random"  # MetaSchedule's learned model needs xgboost; random still measures every pick
    return "xgb"
