"""The default schedules as the first measured candidate of every tuned kernel: tuning starts from
them, and a tuned kernel is never slower than the untuned build."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tvm.s_tir import meta_schedule as ms

from explorer.tvm.tuning.ledgers import Budgets, Seeds
from explorer.tvm.tuning.spaces import default_schedule


def trace_digest(trace) -> str:
    """A digest of a schedule's trace, from its JSON form: TVM 0.27 prints a trace that holds a
    ``decompose_padding`` as its address (its printer of that instruction fails), which differed on
    every run and had such kernels' default schedules measured again by every tuning call."""
    return hashlib.sha256(str(trace.as_json()).encode()).hexdigest()[:16]


def measure_and_commit(todo: list, db, builder, runner) -> list[bool]:
    """Build and measure each ``(task, schedule)`` of ``todo`` on this CPU and commit it to ``db`` as a
    tuning record; returns, per entry, whether it built and ran."""
    if not todo:
        return []
    # the task's target carries its cores, as MetaSchedule's own candidates are built for
    built = builder.build([ms.builder.BuilderInput(sch.mod, task.target) for task, sch in todo])
    args = [ms.arg_info.ArgInfo.from_prim_func(task.dispatched[0]["main"]) for task, _ in todo]
    ready = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu", args[i]) for i in ready])
    committed = [False] * len(todo)
    for i, future in zip(ready, futures):
        run = future.result()
        if run.error_msg is not None:
            continue  # a schedule that does not run here
        task, sch = todo[i]
        workload = db.commit_workload(task.dispatched[0])
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run.run_secs, task.target, args[i]))
        committed[i] = True
    return committed


def seed_default_schedules(tasks: list, defaults: dict, work_dir: Path, db, builder, runner) -> int:
    """Measure the default schedule of every kernel of ``tasks`` whose database lacks it and commit it
    as a tuning record, so tuning starts from it: the search's first population draws on the best
    measured records, and the schedule applied is the fastest measured, so a tuned kernel is never
    slower than the untuned build (within measurement noise). ``defaults``: each kernel's default
    schedule by :meth:`Budgets.key` (:func:`default_schedules`). Returns the schedules measured."""
    seeds = Seeds(work_dir)
    todo = []  # (task, schedule, digest of its trace)
    for task in tasks:
        sch = defaults.get(Budgets.key(task))
        if sch is not None:
            digest = trace_digest(sch.trace)
            if seeds.done.get(Budgets.key(task)) != digest:
                todo.append((task, sch, digest))
    committed = measure_and_commit([(task, sch) for task, sch, _ in todo], db, builder, runner)
    seeded = {Budgets.key(task): digest for (task, _, digest), ok in zip(todo, committed) if ok}
    seeds.add(seeded)
    return len(seeded)


def default_schedules(tasks: list) -> dict:
    """Each kernel's default schedule on its task's target, by :meth:`Budgets.key` (kernels no rule
    takes are left out)."""
    found = {}
    for task in tasks:
        sch = default_schedule(task.dispatched[0]["main"], task.target)
        if sch is not None:
            found[Budgets.key(task)] = sch
    return found
