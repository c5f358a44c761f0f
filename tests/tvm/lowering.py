"""The TVM tier's helper: a model compiled in this process, with its workload table."""

from __future__ import annotations


def lower(path, strategy="baseline", lowering="generic", build=False, scales=None):
    """Compile an ONNX file under a registered strategy in this process: ``(prepared model, the
    explorer.tvm.compile.Compiled, its workload table)``."""
    from explorer.core.strategies import get_strategy
    from explorer.model.prepare import prepare
    from explorer.tvm import codegen
    from explorer.tvm.compile import compile_variant
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.tir.walker import analyse_module
    from explorer.workload.table import workload_table

    model = prepare(str(path))
    target = codegen.llvm_target(host_llvm_cpu()) if lowering == "generic" else codegen.cuda_target("sm_90")
    compiled = compile_variant(str(model.path), model.sha256, get_strategy(strategy), lowering, target, build=build,
                               act_scales=scales)
    return model, compiled, workload_table(compiled.calls, analyse_module(compiled.tir))
