"""The passes a strategy's axes name (:mod:`explorer.tvm.pipeline` maps each axis value to its
factory): precision, weight-only, packed weights, the dot-product kernels (VNNI int8, AVX512-BF16),
pruning and the Relax rewrites the default pipeline runs before legalization.
"""
