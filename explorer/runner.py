"""Running lowerings in an isolated worker process, so a crash inside TVM costs one variant."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .records import Failure, Lowering, LoweringRequest, Status, StatusKind

CRASHED = Status(StatusKind.CRASHED, "the TVM worker process crashed (a segfault inside TVM); see the worker's stderr")


def _lower(req: LoweringRequest) -> Lowering | Failure:
    from .tvm.worker import lower_variant

    return lower_variant(req)


def _warm_up() -> None:
    from .tvm.worker import warm_up

    warm_up()


class Runner:
    """Runs lowerings in a persistent spawned worker (TVM is not fork-safe), restarting it after a
    crash; ``isolate=False`` runs them in this process (tests, debugging)."""

    def __init__(self, isolate: bool = True):
        self.isolate = isolate
        self.pool: ProcessPoolExecutor | None = None

    def __call__(self, req: LoweringRequest) -> Lowering | Failure:
        if not self.isolate:
            return _lower(req)
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up)
        try:
            return self.pool.submit(_lower, req).result()
        except BrokenProcessPool:
            self.pool = None
            return Failure(CRASHED)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None
