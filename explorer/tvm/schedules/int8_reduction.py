"""A CUDA schedule rule for int8 convolutions and matmuls, where DLight has none that works.

DLight's ``Matmul`` rule tensorizes int8 with wmma fragments that TVM 0.27 then fails to lower
(``fragment_info_`` check), and its other rules are wrong for such kernels: ``GeneralReduction``
takes a fused convolution as a row reduction (threads split the reduction and meet in shared
memory, the epilogue recomputed for every partial sum) and ``Fallback`` accumulates into global
memory. :class:`Int8Reduction` gives them the classic SIMT shape instead:

- one output element per thread along the innermost spatial loop (coalesced stores, and coalesced
  loads of the operand indexed by it), blocks of :data:`THREADS` threads over the rest;
- each thread also computes a micro-tile of :data:`MICRO_TILE` outputs along the axis the other
  operand's loads do not depend on (a convolution's output channels), so each activation it loads
  (into a register, once per reduction step) feeds that many accumulators;
- the accumulators in registers across the whole reduction, the fused epilogue (dequantization,
  bias, activation, the next layer's quantization) applied once per output when they are written;
- a padding stage of its own, one thread per element.

It takes only kernels whose reduction reads integer operands; float kernels keep DLight's rules.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule

from explorer.tvm.schedules.common import largest_divisor, loop_extent, vars_in
from explorer.tvm.schedules.gpu_threads import MIN_THREADS, THREADS, bind_elementwise
from explorer.tvm.schedules.tiling import reduction_kernel, reuse_axis

#: Outputs per thread along the reuse axis, tried largest first (a divisor of its extent).
MICRO_TILE = (4, 2)


_INTEGER = ("int8", "uint8")


class Int8Reduction(GPUScheduleRule):
    """An int8 (or u8) convolution or matmul kernel with its fused epilogue (see the module doc)."""

    def apply(self, func, target, _):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        kernel = reduction_kernel(sch)
        if kernel is None:
            return None
        red, n_spatial, epilogues, pads = kernel
        if not self.takes(sch.get(red.block_rv)):
            return None
        try:
            self._schedule(sch, red.block_rv, n_spatial, [b.block_rv for b in epilogues])
            for pad in pads:
                bind_elementwise(sch, pad.block_rv)
        except (RuntimeError, ValueError):
            return None
        return sch

    def takes(self, block) -> bool:
        """Whether this rule schedules the kernel whose reduction block is ``block``: integer operands."""
        return any(str(r.source.dtype) in _INTEGER for r in block.reads)

    def _schedule(self, sch, block, n_spatial, epilogues):
        loops = sch.get_loops(block)
        spatial, reduce = list(loops[:n_spatial]), list(loops[n_spatial:])
        if any(loop_extent(sch, loop) is None for loop in spatial):
            raise ValueError("dynamic extent")
        i = reuse_axis(sch, block, n_spatial)
        tile = next((t for t in MICRO_TILE if i is not None and loop_extent(sch, spatial[i]) % t == 0), 1)
        outer, inner = [], []
        for k, loop in enumerate(spatial):
            if k == i and tile > 1:
                io, ii = sch.split(loop, factors=[None, tile])
                outer.append(io)
                inner.append(ii)
            else:
                outer.append(loop)
        shared_operand = None  # the read that every output of the micro-tile uses: loaded once per step
        if inner:
            tile_var = sch.get(block).iter_vars[i].var
            shared_operand = next((k for k, r in enumerate(sch.get(block).reads)
                                   if not any(tile_var in vars_in(rng.min) for rng in r.region)), None)
        sch.reorder(*outer, *reduce, *inner)
        fused = sch.fuse(*outer)
        # threads that divide the outputs leave no idle thread to guard (nor to count)
        threads = largest_divisor(loop_extent(sch, fused), THREADS)
        bx, tx = sch.split(fused, factors=[None, threads if threads >= MIN_THREADS else THREADS])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        acc = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(acc, tx, preserve_unit_loops=True)
        for epilogue in epilogues:
            try:
                sch.reverse_compute_inline(epilogue)
            except RuntimeError:
                sch.reverse_compute_at(epilogue, tx, preserve_unit_loops=True)
        if shared_operand is not None:
            cached = sch.cache_read(block, shared_operand, "local")
            sch.compute_at(cached, reduce[-1], preserve_unit_loops=True)
        sch.decompose_reduction(block, reduce[0])
        for loop in inner:
            sch.unroll(loop)
