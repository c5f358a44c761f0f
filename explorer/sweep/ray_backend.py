"""A sweep's compiles and timings on a Ray cluster (optional: ``pip install -e ".[ray]"``).

``explorer sweep ... --backend ray [--address ADDR]`` runs the same sweep as the local workers, with
each lowering a Ray task (one CPU, no retries, isolated in Ray's worker processes) instead of a local
worker: the rows are the local backend's. The prepared model travels through Ray's object store, so
nodes need no copy of it. A crash of the task's process is a ``crashed`` row, a task past
``--variant-timeout`` is cancelled and a ``timed-out`` row.

A CPU variant that is timed is built on some node and later timed on *that* node, by a task that
asks for every CPU of the node (so nothing else runs beside it) with ``TVM_NUM_THREADS`` set. Every
node builds for the LLVM CPU of the machine that runs the sweep (it is part of the cache key), so
the nodes should share that CPU type. onnxruntime is timed on the machine that runs the sweep.

Without ``--address`` (or ``RAY_ADDRESS``) a local Ray instance is started for the sweep.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

from explorer.core.errors import ExplorerError
from explorer.core.variant import Failure, LoweringRequest, Status, StatusKind, TimingRequest
from explorer.store.cache import SOURCE_ROOT
from explorer.sweep.workers import CRASHED


def _ray():
    try:
        import ray
    except ImportError:
        raise ExplorerError("the ray backend needs Ray: pip install -e '.[ray]'") from None
    return ray


def connect(address: str | None = None):
    """Ray, connected to the cluster at ``address`` (default ``$RAY_ADDRESS``, else a new local instance)."""
    ray = _ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(SOURCE_ROOT)}})
        except ConnectionError as err:
            raise ExplorerError(f"could not reach the Ray cluster at {address}: {err}") from None
    return ray


def _model_on_node(req: LoweringRequest | TimingRequest, model: bytes | None):
    """The request with its model file where this node can read it (written from ``model`` if missing)."""
    if model is None or not isinstance(req, LoweringRequest) or Path(req.model_path).exists():
        return req
    from explorer.store.cache import cache_dir, write_atomic

    path = cache_dir() / "prepared" / f"ray-{req.model_sha256}.onnx"
    if not path.exists():
        write_atomic(path, model)
    return dataclasses.replace(req, model_path=str(path))


def _lower_task(req: LoweringRequest, model: bytes):
    from explorer.tvm.worker import lower_variant

    return lower_variant(_model_on_node(req, model))


def _time_task(req: TimingRequest):
    from explorer.tvm.worker import time_variant

    return time_variant(req)


def _ray_failure(err: Exception) -> Failure:
    ray = _ray()
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError, ray.exceptions.LocalRayletDiedError)):
        return Failure(CRASHED)
    return Failure(Status(StatusKind.FAILED, f"the Ray task failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"))


class RayRunner:
    """Compiles requests as Ray tasks; the same ``map`` as :class:`explorer.sweep.workers.WorkerPool`.
    ``exclusive`` tasks (tuned strategies: MetaSchedule measures on the node's cores) take every CPU
    of a node."""

    def __init__(self, address: str | None = None, timeout_s: float | None = None, exclusive: bool = False):
        self.ray = connect(address)
        self.timeout_s = timeout_s
        cpus = max(int(n["Resources"].get("CPU", 1)) for n in self.ray.nodes() if n["Alive"]) if exclusive else 1
        self.task = self.ray.remote(num_cpus=cpus, max_retries=0)(_lower_task)
        self.models: dict[str, object] = {}

    def _model(self, req: LoweringRequest):
        if req.model_sha256 not in self.models:
            self.models[req.model_sha256] = self.ray.put(Path(req.model_path).read_bytes())
        return self.models[req.model_sha256]

    def map(self, requests, on_start=None):
        ray = self.ray
        running = {}
        for i, req in enumerate(requests):
            running[self.task.remote(req, self._model(req))] = (i, time.monotonic())
            if on_start:
                on_start(i)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                i, _ = running.pop(ref)
                try:
                    yield i, ray.get(ref)
                except Exception as err:  # the task's process died, or Ray could not run it
                    yield i, _ray_failure(err)
            if self.timeout_s is not None:
                for ref, (i, started) in list(running.items()):
                    if time.monotonic() - started > self.timeout_s:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        yield i, Failure(Status(StatusKind.TIMED_OUT, f"ran past its time limit of {self.timeout_s:g} s "
                                                                       "(--variant-timeout)"))

    def close(self) -> None:
        """Nothing to release: the tasks are done, and the Ray connection outlives one batch."""


class RayTimer:
    """Times CPU builds on the nodes that built them, one task at a time per node, each task holding
    every CPU of its node, with ``threads`` TVM threads."""

    def __init__(self, address: str | None, threads: int):
        self.ray = connect(address)
        self.threads = threads
        self.nodes = {n["NodeManagerHostname"]: n for n in self.ray.nodes() if n["Alive"]}

    def map(self, requests, hosts):
        """``(index, Measurement | Failure)`` per request, each timed on the node named in ``hosts``."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for i, (req, host) in enumerate(zip(requests, hosts)):
            node = self.nodes.get(host) or self.nodes.get(socket.gethostname()) or next(iter(self.nodes.values()))
            task = self.ray.remote(_time_task).options(
                num_cpus=int(node["Resources"].get("CPU", 1)), max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                runtime_env={"env_vars": {"TVM_NUM_THREADS": str(self.threads),
                                          "PYTHONPATH": str(SOURCE_ROOT)}})
            try:
                yield i, self.ray.get(task.remote(req))  # one at a time: nothing else runs beside a timing
            except Exception as err:
                yield i, _ray_failure(err)

    def close(self) -> None:
        """Nothing to release: each timing task ended with its result."""
