"""Kernels written whole, for computations no schedule of the legalized operators makes: fused
attention (:mod:`explorer.tvm.kernels.attention`)."""
