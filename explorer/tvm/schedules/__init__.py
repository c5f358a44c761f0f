"""Schedule rules in DLight's style, one rule a file, tried in order by ``dl.ApplyDefaultSchedule``
(:func:`explorer.tvm.pipeline.cpu_default_rules` and the GPU list in :mod:`explorer.tvm.pipeline`).

TVM 0.27's DLight CPU rules cover GEMV and row reductions only, so convolutions, matmuls and
element-wise kernels ran as scalar single-threaded loops. The CPU rules here give them the classic
shape: the outer spatial loops fused and spread over the cores, the innermost spatial loop split to
the native vector width and vectorized, a register tile of accumulators kept across the whole
reduction, and fused element-wise epilogues applied to the tile before it is written back.

CPU:

- :mod:`~explorer.tvm.schedules.tiled_reduction`: a kernel whose work is one reduction block (conv2d
  in NCHW or NHWC, depthwise and pointwise convolutions, matmul, dense, batch matmul);
- :mod:`~explorer.tvm.schedules.dot_reduction`: the dot-product kernels of
  :mod:`explorer.tvm.passes.dot_kernels`, tensorized with ``dot_16x4_vnni`` (int8) or
  ``explorer_dpbf16ps_16x2`` (bf16);
- :mod:`~explorer.tvm.schedules.single_row_reduction`: a norm or softmax over one row;
- :mod:`~explorer.tvm.schedules.parallel_elementwise`: a kernel of injective blocks only;
- :mod:`~explorer.tvm.schedules.inline_elementwise`: what no other rule takes.

GPU: :mod:`~explorer.tvm.schedules.decode_gemv` and :mod:`~explorer.tvm.schedules.int8_reduction`,
before DLight's own rules. ``common``, ``tiling`` and ``gpu_threads`` hold what several rules share.

Each rule returns ``None`` (the next rule takes the kernel) for anything it does not recognise, and
for a kernel it cannot schedule: a schedule primitive refusing is not an error.
"""
