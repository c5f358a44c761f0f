"""How the GPU rules spread element-wise work over threads."""

from __future__ import annotations

from tvm import s_tir

#: Threads of a block: at most this many, a divisor of the outputs where one is at least
#: ``MIN_THREADS`` (else this many, the last block partly idle).
THREADS = 128


MIN_THREADS = 32


def bind_elementwise(sch: s_tir.Schedule, block) -> None:
    """One thread per element of ``block``, in blocks of :data:`THREADS`."""
    fused = sch.fuse(*sch.get_loops(block))
    bx, tx = sch.split(fused, factors=[None, THREADS])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
