"""The passes a strategy's axes name (:mod:`explorer.tvm.pipeline` maps each axis value to its
factory): precision, weight-only, packed weights, VNNI int8 kernels, pruning and the Relax rewrites
the default pipeline runs before legalization.
"""
