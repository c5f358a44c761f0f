"""The CUDA schedule of a float depthwise (grouped, one channel a group) convolution.

The tensor-core rule leaves depthwise convolutions to SIMT lanes (one output channel a group would pad to
16), and DLight's ``Matmul`` rule then took them as a batch of matmuls of one column, padding that column
to 16 and the 3 x 3 window to 16 as well: mobilenetv2's fp16 build executed 28x the multiply-adds of its
depthwise layers. :class:`DepthwiseReduction` gives them :class:`Int8Reduction`'s SIMT shape instead (one
output a thread, accumulators in registers, the epilogue once per output), whatever their dtype.
"""

from __future__ import annotations

from tvm import tirx

from explorer.tvm.schedules.common import vars_in
from explorer.tvm.schedules.int8_reduction import Int8Reduction


def is_depthwise(block) -> bool:
    """Whether a reduction block is a depthwise convolution: some output iterator indexes the input, the
    weights and the output alike (the channel of the group), no output iterator indexes the weights and
    the output but not the input (no output channels of a group beyond one), and the input is read
    through a window (an index that is a sum of iterators)."""
    if len(block.reads) != 2 or len(block.writes) != 1:
        return False
    spatial = {iv.var for iv in block.iter_vars if iv.iter_type == tirx.IterVar.DataPar}

    def used(region):
        return set().union(*(vars_in(r.min) for r in region.region)) & spatial

    a, b, c = used(block.reads[0]), used(block.reads[1]), used(block.writes[0])
    windowed = any(len(vars_in(r.min)) > 1 for r in block.reads[0].region)
    return bool(a & b & c) and not ((b & c) - a) and windowed


class DepthwiseReduction(Int8Reduction):
    """A depthwise convolution in any dtype, on SIMT lanes (see the module doc)."""

    def takes(self, block) -> bool:
        return is_depthwise(block)
