"""Every warp-scope buffer of a GPU kernel lowered to registers, not only the first.

The tensor-core schedules keep a warp's operand and accumulator fragments in ``warp``-scope buffers
(``[lanes, registers]``); TVM's ``LowerWarpMemory`` turns each into a lane's few registers. In TVM 0.27 it
rewrites only the first warp allocation of a statement sequence: it hands the rest of the sequence to
that buffer's access rewriter and stops, so the next fragments stay ``warp`` buffers, which the CUDA code
generator emits as a per-thread array of the whole warp's fragment (512 halves a thread for a 2-tile
operand, in local memory) and the AMDGPU one refuses ("Can only allocate shared or local memory inside
kernel"). Running the pass again rewrites the next one, so :func:`lower_every_warp_memory` runs it until no
warp allocation is left; :mod:`explorer.tvm.tir_pipeline` runs that in place of TVM's pass.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx


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
