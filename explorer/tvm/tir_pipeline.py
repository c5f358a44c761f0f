"""The explorer's TIR pipeline: TVM's ``s_tir`` pipeline with two fixes in its finalization passes and
one in what its vectorizer accepts.

- host code: small ``local`` buffers stay on the stack (:mod:`explorer.tvm.passes.stack_buffers`), so a CPU
  kernel's register tile is registers, not a workspace allocation per parallel task;
- device code: every ``warp`` buffer is lowered, not only the first of a sequence
  (:mod:`explorer.tvm.passes.warp_memory`);
- ``nearbyint`` (how TVM lowers ONNX's ``Round`` and the rounding of every int8 quantization) is
  vectorizable, as ``round``, ``floor`` and ``trunc`` are. TVM 0.27 does not mark it so
  (``TVectorizable``), so ``VectorizeLoop`` left its loops scalar, LLVM's loop vectorizer then made them
  gathers and scatters of 64-bit indices, and a rounding of 128 x 1024 floats took 60-100 us for 6 us
  (:data:`VECTORIZABLE_OPS`).

Every build of the explorer uses it: variants (:mod:`explorer.tvm.compile`) and the candidates tuning
measures (:mod:`explorer.tvm.tuning.builder`), so that a candidate is timed as it will be built.
"""

from __future__ import annotations

import tvm
from tvm import tirx

from explorer.tvm.passes.stack_buffers import stack_local_buffers
from explorer.tvm.passes.warp_memory import lower_every_warp_memory

#: TIR operators that are elementwise and have a vector form on every target (LLVM's ``llvm.nearbyint``
#: intrinsic on vectors), which TVM 0.27 does not mark ``TVectorizable``.
VECTORIZABLE_OPS = ("tirx.nearbyint",)

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
    for name in VECTORIZABLE_OPS:
        if tvm.ir.Op.get(name).get_attr("TVectorizable") is None:
            tvm.ir.register_op_attr(name, "TVectorizable", True)
    return PIPELINE
