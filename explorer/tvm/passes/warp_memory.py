"""Every warp-scope buffer of a GPU kernel lowered to registers, not only the first.

The tensor-core schedules keep a warp's operand and accumulator fragments in ``warp``-scope buffers
(``[lanes, registers]``); TVM's ``LowerWarpMemory`` turns each into a lane's few registers. In TVM 0.27 it
rewrites only the first warp allocation of a statement sequence: it hands the rest of the sequence to
that buffer's access rewriter and stops, so the next fragments stay ``warp`` buffers, which the CUDA code
generator emits as a per-thread array of the whole warp's fragment (512 halves a thread for a 2-tile
operand, in local memory) and the AMDGPU one refuses ("Can only allocate shared or local memory inside
kernel"). Running the pass again rewrites the next one, so :data:`PIPELINE` runs it until no warp
allocation is left.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

#: The name of the TIR pipeline with this fix, for ``tvm.compile(..., tir_pipeline=PIPELINE)``.
PIPELINE = "explorer_s_tir"


def warp_allocations(mod: tvm.IRModule) -> int:
    """How many ``warp``-scope buffers the module's functions allocate."""
    found = []

    def alloc(node, visitor):
        if node.buffer.scope() == "warp":
            found.append(node)
        visitor.default_visit(node)

    for func in mod.functions.values():
        if isinstance(func, tirx.PrimFunc):
            tvm_ffi.structural_visit(func.body, [((tirx.AllocBuffer,), alloc)])
    return len(found)


@tvm.transform.module_pass(opt_level=0, name="explorer.LowerEveryWarpMemory")
def lower_every_warp_memory(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """TVM's ``LowerWarpMemory`` until the module allocates no ``warp`` buffer (see the module doc)."""
    left = warp_allocations(mod)
    while left:
        mod = tirx.transform.LowerWarpMemory()(mod)
        now = warp_allocations(mod)
        if now >= left:
            break  # a buffer the pass cannot lower: its own error comes from code generation
        left = now
    return mod


def _finalize_device_passes():
    return tvm.transform.Sequential([lower_every_warp_memory, tirx.transform.StmtSimplify(), tirx.transform.LowerIntrin()])


def _pipeline():
    from tvm.tirx import compilation_pipeline

    default, finalize_host, _ = compilation_pipeline.get_tir_pipeline("s_tir")
    return default, finalize_host, _finalize_device_passes


def register() -> str:
    """Register :data:`PIPELINE` (TVM's default ``s_tir`` pipeline with every warp buffer lowered) once;
    its name."""
    from tvm.tirx import compilation_pipeline

    if PIPELINE not in compilation_pipeline.PIPELINE_MAP:
        compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline)
    return PIPELINE
