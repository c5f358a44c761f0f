"""The workers' entry points: compile and analyse one variant, or time one CPU build; plain records out."""

from __future__ import annotations

import contextlib
import socket
import time

from explorer.core.errors import ExplorerError, one_line
from explorer.core.variant import (
    Failure,
    KernelCall,
    Lowering,
    LoweringRequest,
    Measurement,
    Status,
    StatusKind,
    TimingRequest,
)
from explorer.workload.table import workload_table


def warm_up() -> None:
    """Import TVM's compiler once per worker process (it takes seconds)."""
    import tvm  # noqa: F401

    from explorer.tvm import compile  # noqa: F401


def lower_variant(req: LoweringRequest) -> Lowering | Failure:
    """Compile ``req``'s variant and analyse its lowered TIR (exporting a generic build's library
    where asked). One failing variant never raises: it is a :class:`Failure`."""
    try:
        return _lower(req)
    except ExplorerError as err:
        return Failure(Status(StatusKind.FAILED, str(err)))
    except MemoryError:
        raise  # the worker's memory budget says so (explorer.sweep.workers)
    except Exception as err:  # one failing variant never stops a sweep
        return Failure(Status(StatusKind.FAILED, one_line(err)))


def time_variant(req: TimingRequest) -> Measurement | Failure:
    """Run ``req``'s library once (its outputs) and time it, in this process, with the threads its
    TVM runtime was started with (``TVM_NUM_THREADS``)."""
    from explorer.tvm import runtime

    try:
        return runtime.measure(req)
    except Exception as err:
        return Failure(Status(StatusKind.FAILED, f"running the build failed: {one_line(err)}"))


def _lower(req: LoweringRequest) -> Lowering:
    from explorer.tvm import codegen
    from explorer.tvm.compile import compile_variant
    from explorer.tvm.tir.walker import analyse_module
    from explorer.tvm.tuning.apply import TuningSetup

    start = time.perf_counter()
    cuda = req.lowering == "cuda"
    gpu = req.lowering != "generic"
    target = codegen.gpu_target(req.lowering, req.arch) if gpu else codegen.llvm_target(req.mcpu)
    tuning = None if gpu else TuningSetup(target, req.scoring, req.tuning_records, req.progress)
    args = (req.model_path, req.model_sha256, req.strategy, req.lowering, target)
    build_error = ""
    try:
        with codegen.rocm_toolchain() if req.lowering == "rocm" and req.build else contextlib.nullcontext():
            compiled = compile_variant(*args, build=req.build, act_scales=req.act_scales, tuning=tuning)
    except Exception as err:
        if not (req.build and gpu):
            raise
        # code generation can fail where the lowered TIR is still sound (an int8 tensor-core kernel, a
        # ROCm toolchain missing here): keep the analysis and say why nothing was built
        build_error = one_line(err)
        compiled = compile_variant(*args, build=False, act_scales=req.act_scales)
    compile_s = time.perf_counter() - start
    workload = workload_table(compiled.calls, analyse_module(compiled.tir), compiled.devices)
    analyse_s = time.perf_counter() - start - compile_s
    calls = [KernelCall(c.index, c.kernel, tuple(c.members), tuple(t.name for t in c.eliminated))
             for c in compiled.calls]
    exe = compiled.executable
    codegen_start = time.perf_counter()
    nvcc_error = codegen.nvcc_compile(codegen.cuda_source(exe), req.arch) if cuda and exe is not None else ""
    if req.export and exe is not None and not gpu:
        from pathlib import Path

        codegen.export_library(exe, Path(req.export))
    return Lowering(req.lowering_id, workload, calls, compiled.planned_bytes, compile_s, exe is not None,
                    build_error, nvcc_error, compiled.tuning, analyse_s, socket.gethostname(), compiled.constant_bytes,
                    time.perf_counter() - codegen_start)
