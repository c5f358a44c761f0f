"""Tuned schedules applied: each kernel's pick among its measured candidates (by latency, energy or EDP
on the target being built), and the entry points a compile and ``explorer tune`` call."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd
import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from cost_models.spec import TargetSpec
from explorer.core.variant import TuningOutcome
from explorer.scoring import picks as schedules
from explorer.store.tuning_records import records_digest, records_dir
from explorer.tvm.passes.vnni import register_vnni_intrinsic
from explorer.tvm.tuning.candidates import measured_candidates
from explorer.tvm.tuning.search import TuneStats, kernel_tasks, tune
from explorer.tvm.tuning.spaces import DEFAULT_SPACE


def apply(mod: tvm.IRModule, tasks: list, target: dict, work_dir: Path, pick: str, scoring: TargetSpec,
          progress: bool = False) -> tuple[tvm.IRModule, pd.DataFrame]:
    """Schedule ``mod`` (whose kernels are ``tasks``) with the ``pick`` candidate of each kernel from
    ``work_dir``'s records, chosen on the ``scoring`` target; kernels without records get the default
    schedule. Returns the module and the measured candidates (for the tables every run recomputes)."""
    from explorer.tvm.pipeline import cpu_default_schedule

    register_vnni_intrinsic()  # records tensorized with it replay here
    mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)  # DLight rewrites its input in place
    candidates, records = measured_candidates(work_dir, target, tasks, progress)
    choice = schedules.choose(candidates, scoring)
    # every pick, latency too, builds exactly the candidate the choice table names
    database = ms.database.MemoryDatabase()
    for kernel, best in choice.picked.items():
        rec = records[(kernel, best[pick])]
        committed = database.commit_workload(rec.workload.mod)
        database.commit_tuning_record(ms.database.TuningRecord(rec.trace, committed, rec.run_secs, rec.target,
                                                               rec.args_info))
    with tvm.target.Target(target):
        with database:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        mod = cpu_default_schedule()(mod)
    return mod, candidates


@dataclasses.dataclass(frozen=True)
class TuningSetup:
    """How a compile tunes: on which CPU, with which records, scored on which target."""

    target: dict                     # the LLVM target dict being built
    scoring: TargetSpec              # the target whose figures the energy and EDP picks use
    records: str | None = None       # records directory (default: one per CPU in the cache)
    progress: bool = False

    def schedule(self, mod: tvm.IRModule, strategy) -> tuple[tvm.IRModule, TuningOutcome]:
        """Tune ``mod``'s kernels to ``strategy``'s budget and apply its pick."""
        work = records_dir(self.target, self.records)
        tasks = kernel_tasks(mod, self.target)
        stats = tune(tasks, strategy.trials, work, self.progress)
        mod, candidates = apply(mod, tasks, self.target, work, strategy.pick, self.scoring, self.progress)
        return mod, TuningOutcome(stats.tasks, stats.tuned, stats.reused, stats.trials, str(work), candidates,
                                  records_digest(work))


def tune_prepared(model_path: str, sha256: str, strategy, trials: int, records: str | os.PathLike | None = None,
                  progress: bool = True, act_scales: tuple[float, ...] | None = None,
                  builder: str = "persistent", search: str = "sized", space: str = DEFAULT_SPACE) -> TuneStats:
    """Fill the tuning-records database for a prepared model under a tuned ``strategy`` on this CPU,
    to ``trials`` trials across the model, without building (``act_scales``: an int8 strategy's
    calibrated activation scales; ``space``: a design space of
    :data:`explorer.tvm.tuning.spaces.SPACES`)."""
    from explorer.tvm.codegen import llvm_target
    from explorer.tvm.frontend import imported
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.pipeline import PipelineContext, dot_instructions, strategy_passes

    target = llvm_target(host_llvm_cpu())
    with tvm.target.Target(target):
        ctx = PipelineContext(strategy, "generic", act_scales, **dot_instructions("generic", tvm.target.Target(target)))
        mod = strategy_passes(ctx, schedule=False)(imported(model_path, sha256))
    return tune(kernel_tasks(mod, target), trials, records_dir(target, records), progress, builder, search, space)
