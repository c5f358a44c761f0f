"""One variant measured: loaded, run once (its outputs), timed end to end and per kernel call, and on
CUDA its energy read over windows of back-to-back inferences."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from .arrays import Arrays, to_device
from .bundle import ROOT
from .nvml import NVML


def kernel_calls_s(vm, args: list, runs: int, dev, sync: bool) -> list[list]:
    """``[kernel, median seconds]`` of every kernel call of one inference, in call order, over ``runs``
    inferences timed call by call with ``vm.set_instrument`` (the VM's builtins left out; on a GPU the
    device is synchronised before and after each call)."""
    inferences: list[list] = []
    started: dict = {}

    def instrument(_func, name, before_run, _ret, *_args):
        name = str(name)
        if not name.startswith("vm."):
            if sync:
                dev.sync()
            if before_run:
                started[name] = time.perf_counter()
            else:
                inferences[-1].append((name, time.perf_counter() - started.pop(name)))
        return 0

    vm.set_instrument(instrument)
    try:
        for _ in range(runs):
            inferences.append([])
            vm["main"](*args)
        if sync:
            dev.sync()
    finally:
        vm.set_instrument(lambda *a: 0)
    first = inferences[0]
    return [[name, statistics.median(run[i][1] for run in inferences if i < len(run))] for i, (name, _) in enumerate(first)]


def call_order(vm, args: list) -> list[str]:
    """The kernels ``main`` calls, in order (one instrumented inference)."""
    names: list[str] = []

    def instrument(_func, name, before_run, _ret, *_args):
        if before_run and not str(name).startswith("vm."):
            names.append(str(name))
        return 0

    vm.set_instrument(instrument)
    try:
        vm["main"](*args)
    finally:
        vm.set_instrument(lambda *a: 0)
    return names


def output_summary(out) -> list[dict]:
    """Shape, dtype and a few statistics of each output (enough to see garbage)."""
    import numpy as np

    outs = [out] if hasattr(out, "numpy") else list(out)
    summary = []
    for o in outs:
        if str(o.dtype) == "bfloat16":
            summary.append({"shape": list(o.shape), "dtype": "bfloat16"})
            continue
        a = o.numpy()
        finite = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        summary.append({"shape": list(a.shape), "dtype": str(a.dtype), "finite_share": float(finite.mean()) if a.size else 1.0,
                        "mean_abs": float(np.abs(a[finite].astype(np.float64)).mean()) if finite.any() else None})
    return summary


def save_outputs(out, path: Path, max_bytes: float = float("inf")) -> None:
    """The first run's outputs as ``output_0``, ``output_1``, ... in an .npz (bfloat16 ones as uint16 bits),
    unless they are larger than ``max_bytes``."""
    import numpy as np

    outs = [out] if hasattr(out, "numpy") else list(out)
    if sum(math.prod(o.shape) * (2 if str(o.dtype) == "bfloat16" else np.dtype(str(o.dtype)).itemsize) for o in outs) > max_bytes:
        return
    arrays = {}
    for i, o in enumerate(outs):
        if str(o.dtype) == "bfloat16":
            o = o._create_view(tuple(o.shape), "uint16")
        arrays[f"output_{i}"] = o.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load_variant(tvm, variant: dict, arrays: Arrays, dev):
    """``(vm, args)`` of a variant on ``dev``."""
    from tvm.runtime.vm import VirtualMachine

    vm = VirtualMachine(tvm.runtime.load_module(str(ROOT / variant["library"])), dev)
    args = [to_device(tvm, arrays.get(a), arrays.specs[a]["dtype"], dev) for a in variant["args"]]
    return vm, args


def measure_variant(tvm, variant: dict, arrays: Arrays, dev, opts, nvml: NVML | None, idle: list) -> dict:
    """Everything the runner measures of one variant (see the module docstring)."""
    cuda = opts.device == "cuda"
    entry = {"id": variant["id"], "model": variant["model"], "strategy": variant["strategy"]}
    start = time.perf_counter()
    vm, args = load_variant(tvm, variant, arrays, dev)
    entry["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = vm["main"](*args)
    dev.sync()
    entry["first_run_s"] = time.perf_counter() - start
    entry["outputs"] = output_summary(out)
    if opts.outputs:
        save_outputs(out, Path(opts.outputs) / f"{variant['id']}.npz", opts.outputs_max_mb * 2**20)
    del out
    for _ in range(opts.warmup):
        vm["main"](*args)
    dev.sync()
    timer = vm.time_evaluator("main", dev, number=1, repeat=opts.repeat, min_repeat_ms=opts.min_repeat_ms)
    runs = [float(x) for x in timer(*args).results]
    entry["latency_runs_s"] = runs
    entry["latency_s"] = statistics.median(runs)
    entry["latency_timer"] = "TVM time evaluator (CUDA events)" if cuda else "TVM time evaluator (CPU clock)"
    entry["kernel_calls_s"] = kernel_calls_s(vm, args, opts.kernel_runs, dev, sync=cuda)
    if nvml is not None:
        # inferences per window from their wall time (host overhead included), probed over ~0.1 s
        probe_n = max(1, math.ceil(0.1 / max(entry["latency_s"], 1e-7)))
        dev.sync()
        t0 = time.perf_counter()
        vm.time_evaluator("main", dev, number=probe_n, repeat=1)(*args)
        dev.sync()
        wall = max((time.perf_counter() - t0) / (probe_n + 1), 1e-7)
        number = max(1, math.ceil(opts.energy_window_s / wall))
        windows = []
        for _ in range(opts.energy_windows):
            evaluator = vm.time_evaluator("main", dev, number=number, repeat=1)
            dev.sync()
            e0, t0 = nvml.energy_j(), time.perf_counter()
            mean = float(evaluator(*args).results[0])
            dev.sync()
            e1, t1 = nvml.energy_j(), time.perf_counter()
            inferences = number + 1  # the evaluator runs one untimed inference first
            windows.append({"inferences": inferences, "window_s": t1 - t0, "energy_j": e1 - e0,
                            "power_w": (e1 - e0) / (t1 - t0), "mean_latency_s": mean, "clocks_mhz": nvml.clocks_mhz(),
                            "temperature_c": nvml.temperature_c()})
        idle_w = statistics.mean(i["power_w"] for i in idle) if idle else None
        per = [w["energy_j"] / w["inferences"] for w in windows]
        entry["energy_windows"] = windows
        entry["energy_j"] = statistics.median(per)
        entry["power_w"] = statistics.median(w["power_w"] for w in windows)
        entry["throughput_latency_s"] = statistics.median(w["window_s"] / w["inferences"] for w in windows)
        if idle_w is not None:
            entry["idle_power_w"] = idle_w
            entry["dynamic_energy_j"] = statistics.median((w["energy_j"] - idle_w * w["window_s"]) / w["inferences"]
                                                          for w in windows)
        entry["energy_source"] = "NVML nvmlDeviceGetTotalEnergyConsumption"
        if any(w["energy_j"] <= 0 for w in windows):
            entry["energy_warning"] = "NVML's energy counter did not advance over a window"
        if min(w["window_s"] for w in windows) < 0.9 * opts.energy_window_s:
            entry["energy_warning"] = "a window was shorter than --energy-window-s"
    entry["status"] = "ok"
    entry["measure_s"] = time.perf_counter() - start
    return entry
