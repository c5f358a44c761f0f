"""The explorer's one TVM boundary: the only code that imports tvm in the compiler process.

``frontend`` imports ONNX into Relax; ``pipeline`` maps each strategy axis to its passes;
``precision`` holds the bf16/int8 passes; ``compile`` runs them, lowers and builds; ``tir`` walks the
lowered TIR; ``tuning`` drives MetaSchedule; ``codegen`` names targets and compiles CUDA with nvcc;
``runtime`` runs built variants (with TVM's runtime library only, where that is enough); ``worker``
is the entry point a sweep's worker process calls. Everything they return is a plain record
(:mod:`explorer.core.variant`, :mod:`explorer.workload.table`).

This ``__init__`` imports nothing, so naming a submodule costs only what that submodule imports.
"""
