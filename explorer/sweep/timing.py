"""The timing phase of a sweep: every CPU build that runs here, one at a time, with nothing else
running, with as many threads as its target has cores; then onnxruntime with the same threads."""

from __future__ import annotations

from explorer.core.variant import Lowering, Measurement, TimingRequest
from explorer.host.cpu import timing_threads
from explorer.store import lowerings
from explorer.sweep.plan import Plan
from explorer.sweep.reference import Reference, timed_onnxruntime

#: Timed repeats per CPU variant (after a warm-up), each the mean over
#: :data:`explorer.core.variant.MIN_REPEAT_S`; also for onnxruntime.
TIMED_RUNS = 5


def time_builds(plans: list[Plan], references: dict[str, Reference], stores: lowerings.Stores, make_timer,
                progress) -> dict[tuple[str, int], float]:
    """Measure every built CPU variant that runs here and lacks a measurement, one at a time, then
    onnxruntime with the same threads; returns onnxruntime's latency per (model, threads)."""
    wanted: dict[int, list[tuple[Plan, str]]] = {}
    for plan in plans:
        if not isinstance(plan.result, Lowering) or not plan.req.export or plan.model.name not in references:
            continue
        for threads in sorted({timing_threads(t) for t in plan.timed}):
            key = lowerings.measurement_key(plan.key, threads, TIMED_RUNS, references[plan.model.name].source)
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
                    ort[(plan.model.name, threads)] = timed_onnxruntime(plan.model, references[plan.model.name],
                                                                         threads, repeat=TIMED_RUNS)
    return ort


class LocalTimer:
    """Times builds one at a time in one worker process whose TVM runtime has ``threads`` threads
    (``isolate=False``: in this process, with whatever threads its runtime has)."""

    def __init__(self, threads: int, isolate: bool):
        from explorer.sweep.workers import WorkerPool

        self.pool = WorkerPool(_time_variant, jobs=1, env={"TVM_NUM_THREADS": str(threads)}) if isolate else None

    def map(self, requests, hosts):
        if self.pool is None:
            return ((i, _time_variant(r)) for i, r in enumerate(requests))
        return self.pool.map(requests)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def needs_run(plan: Plan, stores: lowerings.Stores, ref: Reference | None) -> bool:
    """Whether a measurement of ``plan`` on ``ref``'s check input is still missing."""
    if ref is None:
        return False
    return any(stores.get_measurement(lowerings.measurement_key(plan.key, timing_threads(t), TIMED_RUNS, ref.source))
               is None for t in plan.timed)


def _time_variant(req: TimingRequest):
    from explorer.tvm.worker import time_variant

    return time_variant(req)
