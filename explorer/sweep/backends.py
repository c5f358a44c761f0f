"""Where a sweep's lowerings compile: local isolated workers, this process, or a Ray cluster; and
the compile phase that stores each lowering as it finishes."""

from __future__ import annotations

from explorer.core.errors import ExplorerError, SweepStopped
from explorer.core.variant import Failure, Lowering, LoweringRequest
from explorer.store import lowerings
from explorer.sweep.plan import Plan, store_result
from explorer.sweep.timing import LocalTimer
from explorer.workload.table import tensorized_note


def _lower_variant(req: LoweringRequest):
    from explorer.tvm.worker import lower_variant

    return lower_variant(req)


class _InProcess:
    """Compiles in this process (``isolate=False``: tests, debugging)."""

    def map(self, requests, on_start=None):
        for i, req in enumerate(requests):
            if on_start:
                on_start(i)
            yield i, _lower_variant(req)

    def close(self) -> None:
        """Nothing to release: compiles ran in this process."""


def backend(name: str, jobs: int, timeout_s: float | None, isolate: bool, address: str | None,
            memory_bytes: int | None = None):
    """Factories of compile runners for one batch (``tuned``: one at a time) and of timers; local
    isolated workers each run under a budget of ``memory_bytes`` (None: none)."""
    if name == "ray":
        from explorer.sweep.ray_backend import RayRunner, RayTimer

        return (lambda tuned: RayRunner(address, timeout_s, exclusive=tuned)), (lambda threads: RayTimer(address, threads))
    if name != "local":
        raise ExplorerError(f"unknown backend {name!r}; known: local, ray")
    timer = lambda threads: LocalTimer(threads, isolate)  # noqa: E731
    if not isolate:
        return (lambda tuned: _InProcess()), timer
    from explorer.sweep.workers import WorkerPool

    return (lambda tuned: WorkerPool(_lower_variant, jobs=1 if tuned else jobs, timeout_s=timeout_s,
                                     memory_bytes=memory_bytes)), timer


def compile_missing(plans: list[Plan], stores: lowerings.Stores, backend, progress, strict: bool = False) -> None:
    """Compile every plan without a stored lowering, storing each as it finishes (GPU lowerings
    first); tuned ones last, one at a time. ``strict`` stops at the first failure (:class:`~explorer.core.errors.SweepStopped`)."""
    # GPU lowerings first: with nvcc's compile of their CUDA they take the longest, and started last
    # they would leave the other workers idle at the end
    todo = sorted((p for p in plans if p.result is None), key=lambda p: p.req.lowering == "generic")
    for batch in ([p for p in todo if not p.strategy.tuned], [p for p in todo if p.strategy.tuned]):
        if not batch:
            continue
        runner = backend(tuned=batch[0].strategy.tuned)
        try:
            for i, result in runner.map([p.req for p in batch],
                                        on_start=lambda i, b=batch: progress.started(i, b[i].label)):
                plan = batch[i]
                store_result(plan, result, stores)
                if isinstance(result, Lowering):
                    detail = "; ".join(filter(None, [f"compiled in {result.compile_s:.1f} s",
                                                     tensorized_note(result.workload)]))
                else:
                    detail = result.status.text
                progress.finished(i, plan.label, len(plan.group), isinstance(result, Failure), detail)
                if strict and isinstance(result, Failure):
                    raise SweepStopped(f"{plan.label}: {result.status.text}")
        finally:
            runner.close()
