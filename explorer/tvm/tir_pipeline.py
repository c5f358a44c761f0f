"""The explorer's TIR pipeline: TVM's ``s_tir`` pipeline with two fixes in its finalization passes.

- host code: small ``local`` buffers stay on the stack (:mod:`explorer.tvm.passes.stack_buffers`), so a CPU
  kernel's register tile is registers, not a workspace allocation per parallel task;
- device code: every ``warp`` buffer is lowered, not only the first of a sequence
  (:mod:`explorer.tvm.passes.warp_memory`).

Every build of the explorer uses it: variants (:mod:`explorer.tvm.compile`) and the candidates tuning
measures (:mod:`explorer.tvm.tuning.builder`), so that a candidate is timed as it will be built.
"""

from __future__ import annotations

import tvm
from tvm import tirx

from explorer.tvm.passes.stack_buffers import stack_local_buffers
from explorer.tvm.passes.warp_memory import lower_every_warp_memory

#: The pipeline's name, for ``tvm.compile(..., tir_pipeline=PIPELINE)`` and ``tvm.tirx.build(..., pipeline=PIPELINE)``.
PIPELINE = "explorer_s_tir"


def _pipeline():
    from tvm.tirx import compilation_pipeline

    default, finalize_host, _ = compilation_pipeline.get_tir_pipeline("s_tir")

    def finalize_host_passes():  # stack_local_buffers must run before LowerTVMBuiltin
        return tvm.transform.Sequential([stack_local_buffers, finalize_host()])

    def finalize_device_passes():  # TVM's, with lower_every_warp_memory for LowerWarpMemory
        return tvm.transform.Sequential([lower_every_warp_memory, tirx.transform.StmtSimplify(),
                                         tirx.transform.LowerIntrin()])

    return default, finalize_host_passes, finalize_device_passes


def register() -> str:
    """Register :data:`PIPELINE` with TVM once (in this process); its name."""
    from tvm.tirx import compilation_pipeline

    if PIPELINE not in compilation_pipeline.PIPELINE_MAP:
        compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline)
    return PIPELINE
