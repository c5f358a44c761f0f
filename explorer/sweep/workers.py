"""Local worker processes for a sweep: spawned (TVM is not fork-safe), isolated, under a time limit.

Each of ``jobs`` slots is one spawned process that imports TVM once and then compiles the requests it
is sent, one at a time. A request whose process dies (a segfault inside TVM) or runs past
``timeout_s`` costs that request alone: its result is a :class:`~explorer.core.variant.Failure` of kind
``crashed`` or ``timed-out``, the slot's process is replaced, and the other slots go on.

Each process runs under a memory budget (``memory_bytes``: its address space, ``RLIMIT_AS``), so one
that outgrows the machine fails its request, ``failed: out of memory (N GB)``, instead of drawing the
kernel's OOM killer, which may take the parent or another worker with it.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator

from explorer.core.variant import Failure, Status, StatusKind
from explorer.host.cpu import machine_cores

CRASHED = Status(StatusKind.CRASHED, "the TVM worker process crashed (a segfault inside TVM); see the worker's stderr")

#: Memory a compile worker may need at its peak (TVM, a ResNet-50-sized module and its lowering).
WORKER_BYTES = 3 << 30


#: What an allocation that failed looks like in a request's error (Python's, C++'s, the C library's).
OUT_OF_MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")


def default_worker_memory(jobs: int) -> int:
    """Each of ``jobs`` workers' memory budget when none is given: nine tenths of the machine's available
    memory shared among them, and at least :data:`WORKER_BYTES`."""
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(WORKER_BYTES, int(0.9 * available / max(jobs, 1)))


def out_of_memory(memory_bytes: int) -> Status:
    """The status of a request that ran out of its worker's memory budget."""
    return Status(StatusKind.FAILED, f"out of memory ({memory_bytes / 1e9:.1f} GB, --worker-memory)")


def default_jobs() -> int:
    """Workers this machine can run at once: one per core, as many as its free memory holds."""
    cores = machine_cores()
    try:
        import psutil

        fit = max(1, int(psutil.virtual_memory().available // WORKER_BYTES))
    except ImportError:
        fit = cores
    return max(1, min(cores, fit))


_READY = "ready"


def start_failure(err: Exception) -> Failure:
    """The result of every request to a worker whose start raised ``err`` (an explorer module that fails
    to import): an internal error, named as one, with the exception's last line."""
    detail = str(err).strip().splitlines()[-1] if str(err).strip() else ""
    return Failure(Status(StatusKind.FAILED, f"internal error: the worker could not start: {type(err).__name__}"
                                             + (f": {detail}" if detail else "")))


def _serve(conn, fn: Callable, memory_bytes: int | None = None, warm_up: Callable | None = None) -> None:
    """A slot's process: run ``warm_up`` (default: import TVM's compiler), then ``fn`` on every request
    received, and send back what it returns; under a budget of ``memory_bytes``, a request that runs out
    of it is ``failed: out of memory``."""
    from explorer.host.process import filter_stderr

    if warm_up is None:
        from explorer.tvm.worker import warm_up
    filter_stderr()
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    broken = None
    try:
        warm_up()
    except Exception as err:  # an import that fails: each request says so, not "the worker crashed"
        broken = start_failure(err)
    conn.send((_READY, None))  # the time limit counts from here, not from the process's start
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        try:
            result = broken or fn(job[1])
        except MemoryError:
            result = Failure(out_of_memory(memory_bytes or 0))
        if (memory_bytes and isinstance(result, Failure) and result.status.kind is StatusKind.FAILED
                and any(sign in result.status.detail for sign in OUT_OF_MEMORY_SIGNS)):
            result = Failure(out_of_memory(memory_bytes))
        conn.send((job[0], result))


class _Slot:
    def __init__(self, fn: Callable, env: dict[str, str], memory_bytes: int | None = None,
                 warm_up: Callable | None = None):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, fn, memory_bytes, warm_up), daemon=True)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned process starts with this process's environment
        try:
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.job = None
        self.started = 0.0

    def send(self, job_id, request) -> None:
        self.job = job_id
        self.started = time.monotonic()
        self.conn.send((job_id, request))

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """``jobs`` isolated worker processes running ``fn`` (a picklable, module-level function of one
    request); ``timeout_s`` limits each request (None: no limit); ``env`` is set in the workers'
    environment (e.g. ``TVM_NUM_THREADS``, which TVM's runtime reads once, at start); ``memory_bytes``
    is each worker's memory budget (None: none); ``warm_up`` (picklable) runs once as each worker
    starts (None: import TVM's compiler), and where it raises, every request to that worker fails with
    the error (:func:`start_failure`)."""

    def __init__(self, fn: Callable, jobs: int = 1, timeout_s: float | None = None, env: dict | None = None,
                 memory_bytes: int | None = None, warm_up: Callable | None = None):
        self.fn, self.jobs, self.timeout_s, self.env = fn, max(1, jobs), timeout_s, dict(env or {})
        self.memory_bytes, self.warm_up = memory_bytes, warm_up
        self.slots: list[_Slot] = []

    def start(self) -> None:
        """Start every worker process now, so that they import TVM while this process does other work
        (otherwise each starts with its first request)."""
        while len(self.slots) < self.jobs:
            self.slots.append(_Slot(self.fn, self.env, self.memory_bytes, self.warm_up))

    def map(self, requests: Iterable, on_start: Callable | None = None) -> Iterator[tuple[int, object]]:
        """Run every request; yield ``(index, result)`` as each finishes, in any order. ``on_start``
        is called with the index of each request as a worker takes it."""
        pending = deque(enumerate(requests))
        busy: list[_Slot] = []
        while pending or busy:
            while pending and len(busy) < self.jobs:
                slot = next((s for s in self.slots if s.job is None), None)
                if slot is None:
                    slot = _Slot(self.fn, self.env, self.memory_bytes, self.warm_up)
                    self.slots.append(slot)
                index, req = pending.popleft()
                if on_start:
                    on_start(index)
                slot.send(index, req)
                busy.append(slot)
            limit = None
            if self.timeout_s is not None:
                limit = max(0.0, min(s.started + self.timeout_s for s in busy) - time.monotonic())
            ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=limit))
            for slot in list(busy):
                result = None
                if slot.conn in ready:
                    try:
                        tag, result = slot.conn.recv()
                    except (EOFError, OSError):
                        tag, result = None, Failure(self._crashed())
                    if tag == _READY:
                        slot.started = time.monotonic()
                        continue
                elif slot.process.sentinel in ready:
                    result = Failure(self._crashed())
                elif self.timeout_s is not None and time.monotonic() - slot.started >= self.timeout_s:
                    result = Failure(Status(StatusKind.TIMED_OUT, f"ran past its time limit of {self.timeout_s:g} s "
                                                                   "(--variant-timeout)"))
                if result is None:
                    continue
                busy.remove(slot)
                index, slot.job = slot.job, None
                if isinstance(result, Failure) and result.status.kind in (StatusKind.CRASHED, StatusKind.TIMED_OUT):
                    slot.stop()
                    self.slots.remove(slot)
                yield index, result

    def _crashed(self) -> Status:
        """A dead worker's status: under a memory budget, running out of it is the likelier cause."""
        if not self.memory_bytes:
            return CRASHED
        return Status(StatusKind.CRASHED, f"{CRASHED.detail}, or it ran out of its {self.memory_bytes / 1e9:.1f} GB "
                                          "memory budget (--worker-memory) where TVM's C++ code could not say so")

    def close(self) -> None:
        """Stop every worker process."""
        for slot in self.slots:
            slot.stop()
        self.slots = []
