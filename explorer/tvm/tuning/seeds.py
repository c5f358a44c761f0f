"""The default schedules as the first measured candidate of every tuned kernel: tuning starts from
them, and a tuned kernel is never slower than the untuned build."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tvm.s_tir import meta_schedule as ms

from explorer.tvm.tuning.ledgers import Budgets, Seeds


def default_schedule(task):
    """The schedule :func:`explorer.tvm.pipeline.cpu_default_schedule` gives a task's kernel (its first
    rule that takes it, on the task's target), or ``None`` when no rule does."""
    from explorer.tvm.pipeline import cpu_default_rules

    func = task.dispatched[0]["main"]
    for rule in cpu_default_rules():
        sch = rule.apply(func, task.target, False)
        if sch is not None:
            return sch[0] if isinstance(sch, list) else sch
    return None


def seed_default_schedules(tasks: list, work_dir: Path, db, builder, runner) -> int:
    """Measure the default schedule of every kernel of ``tasks`` whose database lacks it and commit it
    as a tuning record, so tuning starts from it: the search's first population draws on the best
    measured records, and the schedule applied is the fastest measured, so a tuned kernel is never
    slower than the untuned build (within measurement noise). Returns the schedules measured."""
    seeds = Seeds(work_dir)
    todo = []  # (task, schedule, digest of its trace)
    for task in tasks:
        sch = default_schedule(task)
        if sch is not None:
            digest = hashlib.sha256(str(sch.trace).encode()).hexdigest()[:16]
            if seeds.done.get(Budgets.key(task)) != digest:
                todo.append((task, sch, digest))
    if not todo:
        return 0
    # the task's target carries its cores, as MetaSchedule's own candidates are built for
    built = builder.build([ms.builder.BuilderInput(sch.mod, task.target) for task, sch, _ in todo])
    args = [ms.arg_info.ArgInfo.from_prim_func(task.dispatched[0]["main"]) for task, _, _ in todo]
    ready = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu", args[i]) for i in ready])
    seeded = {}
    for i, future in zip(ready, futures):
        run = future.result()
        if run.error_msg is not None:
            continue  # a default schedule that does not run here: tuning starts without it
        task, sch, digest = todo[i]
        workload = db.commit_workload(task.dispatched[0])
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run.run_secs, task.target, args[i]))
        seeded[Budgets.key(task)] = digest
    seeds.add(seeded)
    return len(seeded)
