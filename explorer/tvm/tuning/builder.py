"""A MetaSchedule builder whose worker processes outlive a batch.

TVM's ``LocalBuilder.build`` starts a new ``PopenPoolExecutor`` for every batch of candidates (a
workaround for a memory leak in long-lived workers), so every batch pays for starting its workers and
importing TVM in them: about as long as building the batch on two cores. :class:`PersistentBuilder`
keeps its pool and replaces it every :data:`RECYCLE_BATCHES` batches, which bounds the leak. What a
worker does per candidate (``_worker_func``: build, export) is TVM's own, but it builds with the
explorer's TIR pipeline (:func:`build_candidate`), so a candidate is timed as the variant will be built.
"""

from __future__ import annotations

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

#: Batches a pool builds before it is replaced by a fresh one.
RECYCLE_BATCHES = 16


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    """Build one scheduled candidate as TVM's ``default_build`` does, with the explorer's TIR pipeline
    (:mod:`explorer.tvm.tir_pipeline`) in place of TVM's."""
    import tvm.s_tir.tensor_intrin  # noqa: F401  (registers the intrinsics a tensorized candidate uses)
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from explorer.tvm import tir_pipeline

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target, pipeline=tir_pipeline.register())


@derived_object
class PersistentBuilder(PyBuilder):
    """TVM's ``LocalBuilder`` (its export, :func:`build_candidate` to build) with a pool kept across
    batches (see the module docstring)."""

    def __init__(self, max_workers: int, timeout_sec: float = 600.0) -> None:
        super().__init__()
        self.max_workers = max_workers
        self.timeout_sec = timeout_sec
        self._pool = None
        self._batches = 0

    def _fresh_pool(self) -> PopenPoolExecutor:
        if self._pool is None or self._batches >= RECYCLE_BATCHES:
            self.close()
            self._pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec)
            self._batches = 0
        self._batches += 1
        return self._pool

    def build(self, build_inputs) -> list:
        results = []
        jobs = [(build_candidate, None, b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
        for res in self._fresh_pool().map_with_error_catching(lambda x: _worker_func(*x), jobs):
            if res.status == StatusKind.COMPLETE:
                results.append(BuilderResult(res.value, None))
            elif res.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"PersistentBuilder: timeout, killed after {self.timeout_sec} s"))
            else:
                results.append(BuilderResult(None, f"PersistentBuilder: an exception occurred\n{res.value}"))
        return results

    def close(self) -> None:
        """Stop the worker processes (a later batch starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
