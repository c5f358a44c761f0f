"""Running built variants: in-memory executables, and exported libraries with TVM's runtime only.

A cached CPU build does not need TVM's compiler: when TVM is not yet imported,
:func:`import_runtime_only` imports it with ``TVM_USE_RUNTIME_LIB=1`` (``libtvm_runtime`` only;
``tvm.relax`` is then unavailable), and the library runs on ``tvm.runtime.vm.VirtualMachine``.
This module imports tvm only inside its functions, so importing it costs nothing.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np


def import_runtime_only():
    """Import TVM with its runtime library only (``TVM_USE_RUNTIME_LIB=1``) if it is not imported yet.

    The variable is read once, when ``tvm`` is first imported; it is restored afterwards so that
    processes started later (e.g. sweep workers) still get the compiler. Returns the ``tvm`` module
    (possibly a full one imported earlier)."""
    if "tvm" not in sys.modules:
        saved = os.environ.get("TVM_USE_RUNTIME_LIB")
        os.environ["TVM_USE_RUNTIME_LIB"] = "1"
        try:
            import tvm  # noqa: F401
        finally:
            if saved is None:
                os.environ.pop("TVM_USE_RUNTIME_LIB", None)
            else:
                os.environ["TVM_USE_RUNTIME_LIB"] = saved
    import tvm

    return tvm


def runtime_threads(threads: int) -> int:
    """Ask for ``threads`` TVM runtime threads (``TVM_NUM_THREADS``, read when TVM is first imported);
    return the number the runtime will use."""
    if "tvm" not in sys.modules:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    tvm = import_runtime_only()
    return int(tvm.runtime.num_threads())


def load_vm(library: Path):
    """Load an exported library and return ``(tvm, VirtualMachine on the CPU)``; works runtime-only."""
    tvm = import_runtime_only()
    from tvm.runtime.vm import VirtualMachine

    return tvm, VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())


def library_outputs(library: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of ``main`` of an exported library on ``inputs`` (in the model's input order)."""
    tvm, machine = load_vm(library)
    out = machine["main"](*[tvm.runtime.tensor(x) for x in inputs])
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


def time_library(library: Path, inputs: list[np.ndarray], repeat: int) -> list[float]:
    """Run ``main`` of an exported library ``repeat`` times on ``inputs``; seconds per run.

    The inputs are copied to TVM tensors once, before timing; there is no warm-up run, so the first
    time includes first-touch costs (the median is robust to it)."""
    tvm, machine = load_vm(library)
    args = [tvm.runtime.tensor(x) for x in inputs]
    main = machine["main"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        main(*args)
        times.append(time.perf_counter() - start)
    return times


def inferences_per_repeat(machine, args: list, min_repeat_s: float) -> int:
    """How many inferences last ``min_repeat_s``, from the fastest of three warm ones. TVM's own
    ``min_repeat_ms`` finds the count by trial inside the first repeat and overshoots it by up to the
    golden ratio when a trial falls short: every repeat of a 9 ms build then ran for 330 ms, not 200."""
    import tvm

    warm = machine.time_evaluator("main", tvm.cpu(), number=1, repeat=3)(*args).results
    return max(1, math.ceil(min_repeat_s / max(min(warm), 1e-6)))


def kernel_calls_s(machine, args: list, runs: int) -> list[tuple[str, float]]:
    """``(kernel, median seconds)`` of every kernel call of one inference, in call order, over ``runs``
    inferences timed call by call with ``vm.set_instrument`` (which the VM calls around every packed
    call: its builtins, allocations and shape checks among them, are left out)."""
    inferences: list[list[tuple[str, float]]] = []
    started: dict[str, float] = {}

    def instrument(_func, name, before_run, _ret, *_args):
        name = str(name)
        if not name.startswith("vm."):
            if before_run:
                started[name] = time.perf_counter()
            else:
                inferences[-1].append((name, time.perf_counter() - started.pop(name)))
        return 0  # run the call as usual

    machine.set_instrument(instrument)
    for _ in range(runs):
        inferences.append([])
        machine["main"](*args)
    first = inferences[0]
    return [(name, float(np.median([run[i][1] for run in inferences]))) for i, (name, _) in enumerate(first)]


def measure(req):
    """Run ``req.library`` (an :class:`explorer.core.variant.TimingRequest`) once on its inputs, for the
    outputs, then time it: TVM's time evaluator after that run, ``req.timed_runs`` repeats, each the
    mean of as many inferences as last ``req.min_repeat_s``; then each kernel call, over
    ``req.timed_runs`` more inferences (:func:`kernel_calls_s`)."""
    from explorer.core.variant import Measurement

    tvm, machine = load_vm(Path(req.library))
    args = [tvm.runtime.tensor(x) for x in req.inputs]
    start = time.perf_counter()
    out = machine["main"](*args)
    check_run_s = time.perf_counter() - start
    outputs = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
    number = inferences_per_repeat(machine, args, req.min_repeat_s)
    result = machine.time_evaluator("main", tvm.cpu(), number=number, repeat=req.timed_runs)(*args)
    return Measurement(outputs, check_run_s, [float(x) for x in result.results], int(tvm.runtime.num_threads()),
                       socket.gethostname(), kernel_calls_s(machine, args, req.timed_runs))


def run_executable(executable, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run a built CPU variant once; return its outputs as numpy arrays."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]
