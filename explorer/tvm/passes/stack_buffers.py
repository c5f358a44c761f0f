"""A CPU kernel's small buffers on the stack, where LLVM keeps them in registers.

TVM 0.27's ``LowerTVMBuiltin`` leaves a CPU allocation on the stack only when its scope is ``global``
and it is under 1 KiB (``kMaxStackAlloca``); every ``local`` buffer, and every ``global`` one of 1 KiB or
more, becomes a call to ``TVMBackendAllocWorkspace`` and one to ``TVMBackendFreeWorkspace``. The register
tiles of the default schedules are such buffers, allocated once per parallel task: the ``local`` tile of
:class:`explorer.tvm.schedules.tiled_reduction.TiledReduction` (24 fp32 vectors, 1.5 KiB) and the
``global`` one of :class:`explorer.tvm.schedules.dot_reduction.DotReduction` (8 rows x 2 blocks of 16
int32, exactly 1 KiB). Each task of mobilenetv2's 1x1 convolution from 16 to 96 channels at 112x112 called
the allocator, cleared its 24 accumulators with ``memset``, loaded them into registers, stored them back
after the reduction and loaded them again for the epilogue: the kernel took 392 us where the same loops
with the tile on the stack take 245 us (onnxruntime: 264 us).

:func:`stack_local_buffers` marks each buffer a kernel allocates of a constant size up to
:data:`MAX_STACK_BYTES` with ``LowerTVMBuiltin``'s own opt-out annotation, so the LLVM code generator gives
it an ``alloca`` and LLVM's scalar replacement promotes the tile to registers. It runs on host code only
(the ``finalize_host`` passes of :mod:`explorer.tvm.tir_pipeline`): a GPU kernel's ``local`` buffers are
already registers.
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import tirx

#: The largest buffer put on the stack. A register tile is at most 24 AVX-512 vectors (1.5 KiB:
#: :data:`explorer.tvm.schedules.tiling.TILE_REGISTERS`); a larger buffer that a schedule failed to
#: compact (a whole tensor in ``local`` scope) stays on TVM's workspace heap, off the threads' stacks.
MAX_STACK_BYTES = 4096

#: ``LowerTVMBuiltin``'s annotation (``tirx::transform::kDisableLowerTVMBuiltin``) that keeps an
#: allocation as it is, which the LLVM code generator emits as an ``alloca``.
KEEP_ON_STACK = "disable_lower_builtin"


#: The scopes of CPU buffers that can live on the stack (``shared`` and the rest are GPU memories).
STACK_SCOPES = ("local", "global")


def stack_bytes(buffer) -> int | None:
    """The bytes of a ``local`` or ``global`` buffer of constant shape, or ``None`` for any other buffer."""
    if buffer.scope() not in STACK_SCOPES or not all(isinstance(extent, tirx.IntImm) for extent in buffer.shape):
        return None
    return math.prod(int(extent) for extent in buffer.shape) * buffer.dtype.bits * buffer.dtype.lanes // 8


def _on_stack(alloc, _mutator):
    size = stack_bytes(alloc.buffer)
    if size is None or size > MAX_STACK_BYTES or KEEP_ON_STACK in alloc.annotations:
        return alloc
    return tirx.AllocBuffer(alloc.buffer, {**alloc.annotations, KEEP_ON_STACK: tirx.IntImm("int32", 1)})


@tvm.transform.module_pass(opt_level=0, name="explorer.StackLocalBuffers")
def stack_local_buffers(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Every buffer of at most :data:`MAX_STACK_BYTES` that ``mod``'s PrimFuncs allocate marked to stay
    an ``alloca`` (see the module doc)."""
    out = mod.clone()
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            out[gv] = func.with_body(tvm_ffi.structural_mutate(func.body, [((tirx.AllocBuffer,), _on_stack)]))
    return out
