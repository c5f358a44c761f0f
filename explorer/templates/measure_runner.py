"""Measure this bundle's variants on this machine: ``python measure_runner.py --device cuda --out results.json``.

``explorer measure`` wrote this file beside ``manifest.json``, the compiled libraries (``libs/``) and a
runtime-only TVM (``python/tvm``: its Python files and ``libtvm_runtime*.so``, no compiler). It needs
Python, numpy and TVM's runtime only: TVM is imported with ``TVM_USE_RUNTIME_LIB=1`` from the bundle,
and apache-tvm-ffi from the bundled wheel for this Python (else the installed package). Nothing of the
explorer, onnx or onnxruntime is needed, nor pynvml or PyTorch: NVML and the CUDA driver are reached
with ctypes.

For every variant (``--variant ID`` picks some; shell patterns work):

1. its arrays: inputs from ``inputs/`` or regenerated from the seed as the explorer samples them;
   weights that were lifted out of the library regenerated with numpy (a zoo weight replayed exactly
   from the zoo's seed, anything else as seeded numbers with the weight's mean and spread);
2. one run (its time, and a summary of the outputs), ``--warmup`` runs;
3. latency: TVM's time evaluator (``--repeat`` repeats of as many inferences as last
   ``--min-repeat-ms``; on CUDA timed with CUDA events by TVM's CUDA timer);
4. per kernel call: ``vm.set_instrument`` around every call of ``--kernel-runs`` inferences (on CUDA
   the device is synchronised before and after each call), the median per call;
5. on CUDA, energy: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``) read around
   ``--energy-windows`` windows of at least ``--energy-window-s`` of back-to-back inferences (TVM's
   time evaluator drives them), and idle power measured the same way with the GPU idle (before the
   first variant, every ``--idle-every`` variants and after the last). Per inference: the total energy
   and the dynamic energy (total minus idle power times the window).

``results.json`` is rewritten after every variant, so what finished is kept if the run is stopped
(``--time-budget-s`` stops starting new variants).

``--ncu`` runs the chosen variants once each between ``cuProfilerStart`` and ``cuProfilerStop``, for
``ncu --profile-from-start off --metrics dram__bytes_read.sum,dram__bytes_write.sum --csv --print-units base
python measure_runner.py --ncu --variant ID``; it writes the order of the variant's kernel calls to
``--out``. ``--parse-ncu CSV --calls JSON`` turns ncu's CSV into bytes per kernel call.

Exit codes: 0 every chosen variant measured; 1 some failed (their entries say why); 2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import fnmatch
import io
import json
import math
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


class BadInput(Exception):
    """Something the caller can fix (one line on stderr, exit 2)."""


# ------------------------------------------------------------------------------------------ environment

def setup_imports(manifest: dict) -> dict:
    """Make the bundle's runtime-only TVM importable, with apache-tvm-ffi from the bundled wheel for this
    Python where there is one (extracted once into ``_site/``), else the installed package. Must run
    before ``tvm`` is imported. Returns where each came from."""
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # read when tvm is first imported
    info = {}
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = [HERE / w for w in manifest.get("wheels", []) if f"-{tag}-" in Path(w).name]
    if wheels:
        site = HERE / "_site" / tag
        if not (site / "tvm_ffi" / "__init__.py").exists():
            try:
                site.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(dir=site.parent, prefix=f".{tag}."))
            except OSError:  # a read-only bundle: extract elsewhere
                site = Path(tempfile.mkdtemp(prefix=f"tvm-ffi-{tag}-"))
                staging = site
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(staging)
            if staging != site:
                try:
                    staging.rename(site)
                except OSError:  # another runner extracted it first
                    site = staging
        sys.path.insert(0, str(site))
        info["tvm_ffi"] = f"bundled wheel {wheels[0].name}"
    else:
        try:
            from importlib.metadata import version

            found = version("apache-tvm-ffi")
        except Exception:
            raise BadInput(f"no apache-tvm-ffi for Python {sys.version_info.major}.{sys.version_info.minor}: the bundle has "
                           f"wheels {manifest.get('wheels') or 'none'}; pip install apache-tvm-ffi=={manifest['tvm_ffi_version']}")
        info["tvm_ffi"] = f"installed apache-tvm-ffi {found}"
        if found != manifest["tvm_ffi_version"]:
            info["tvm_ffi_warning"] = f"the bundle was built with apache-tvm-ffi {manifest['tvm_ffi_version']}"
    sys.path.insert(0, str(HERE / "python"))
    return info


def import_tvm(device: str):
    """Import the bundle's TVM (runtime only); for CUDA also load TVM's CUDA runtime library (the
    runtime-only import does not load device backends)."""
    import tvm

    if not str(Path(tvm.__file__).resolve()).startswith(str((HERE / "python").resolve())):
        raise BadInput(f"imported tvm from {tvm.__file__}, not from the bundle (tvm was imported before the runner)")
    if device == "cuda":
        lib = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
        try:
            tvm.base._LOADED_LIBS["tvm_runtime_cuda"] = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise BadInput(f"cannot load TVM's CUDA runtime ({err}): is there an NVIDIA driver (libcuda.so.1)?") from None
    return tvm


def loaded_libraries() -> list[str]:
    """Shared libraries this process has mapped whose names mention tvm (from /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "tvm" in line and ".so" in line})


# --------------------------------------------------------------------------------------------------- NVML

class NVML:
    """NVIDIA's management library through ctypes (what pynvml wraps): energy counter, power, clocks."""

    def __init__(self, index: int = 0):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self._check(self.lib.nvmlInit_v2(), "nvmlInit")
        self.handle = ctypes.c_void_p()
        self._check(self.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(self.handle)),
                    "nvmlDeviceGetHandleByIndex")

    def _check(self, ret: int, what: str) -> None:
        if ret != 0:
            raise RuntimeError(f"{what} failed with NVML error {ret}")

    def _uint(self, fn: str, *args) -> int | None:
        value = ctypes.c_uint()
        try:
            ret = getattr(self.lib, fn)(self.handle, *args, ctypes.byref(value))
        except AttributeError:
            return None
        return int(value.value) if ret == 0 else None

    def energy_j(self) -> float:
        """The board's total energy since the driver loaded, in joules (a millijoule counter)."""
        value = ctypes.c_ulonglong()
        self._check(self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(value)),
                    "nvmlDeviceGetTotalEnergyConsumption")
        return value.value / 1e3

    def power_w(self) -> float | None:
        mw = self._uint("nvmlDeviceGetPowerUsage")
        return None if mw is None else mw / 1e3

    def clocks_mhz(self) -> dict:
        """Current SM and memory clocks (what a window ran at)."""
        return {"sm": self._uint("nvmlDeviceGetClockInfo", ctypes.c_int(1)),
                "mem": self._uint("nvmlDeviceGetClockInfo", ctypes.c_int(2))}

    def _call(self, fn: str, *args) -> bool:
        try:
            return getattr(self.lib, fn)(*args) == 0
        except AttributeError:  # an older driver's NVML
            return False

    def info(self) -> dict:
        """The GPU, its driver, clocks, power limit, temperature and performance state."""
        name = ctypes.create_string_buffer(96)
        driver = ctypes.create_string_buffer(80)
        cuda, pstate = ctypes.c_int(), ctypes.c_int()
        limit = self._uint("nvmlDeviceGetEnforcedPowerLimit")
        return {
            "name": name.value.decode(errors="replace") if self._call("nvmlDeviceGetName", self.handle, name,
                                                                      ctypes.c_uint(96)) else None,
            "driver": driver.value.decode(errors="replace") if self._call("nvmlSystemGetDriverVersion", driver,
                                                                          ctypes.c_uint(80)) else None,
            "cuda_driver_version": f"{cuda.value // 1000}.{cuda.value % 1000 // 10}"
            if self._call("nvmlSystemGetCudaDriverVersion_v2", ctypes.byref(cuda)) else None,
            "clocks_mhz": self.clocks_mhz(),
            "max_clocks_mhz": {"sm": self._uint("nvmlDeviceGetMaxClockInfo", ctypes.c_int(1)),
                               "mem": self._uint("nvmlDeviceGetMaxClockInfo", ctypes.c_int(2))},
            "application_clocks_mhz": {"sm": self._uint("nvmlDeviceGetApplicationsClock", ctypes.c_int(1)),
                                       "mem": self._uint("nvmlDeviceGetApplicationsClock", ctypes.c_int(2))},
            "power_limit_w": None if limit is None else limit / 1e3,
            "temperature_c": self._uint("nvmlDeviceGetTemperature", ctypes.c_int(0)),
            "pstate": pstate.value if self._call("nvmlDeviceGetPerformanceState", self.handle, ctypes.byref(pstate)) else None,
        }


def idle_power(nvml: NVML, window_s: float, settle_s: float) -> dict:
    """Board power with the GPU idle, from the energy counter over ``window_s`` (after ``settle_s``)."""
    time.sleep(settle_s)
    e0, t0 = nvml.energy_j(), time.perf_counter()
    time.sleep(window_s)
    e1, t1 = nvml.energy_j(), time.perf_counter()
    return {"power_w": (e1 - e0) / (t1 - t0), "window_s": t1 - t0, "energy_j": e1 - e0, "at": time.time(),
            "temperature_c": nvml._uint("nvmlDeviceGetTemperature", ctypes.c_int(0)), "clocks_mhz": nvml.clocks_mhz()}


# ------------------------------------------------------------------------------------------------- arrays

def sample_inputs(inputs: list[dict], seed: int):
    """The explorer's seeded inputs (``PreparedModel.sample_inputs``): standard normal floats, integers
    in ``[0, high)``, filled ones (masks) constant."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        shape = tuple(spec["shape"])
        if spec.get("fill") is not None:
            out[spec["name"]] = np.full(shape, spec["fill"]).astype(spec["dtype"])
        elif spec["dtype"].startswith("float"):
            out[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"])
        else:
            out[spec["name"]] = rng.integers(0, spec["high"], shape).astype(spec["dtype"])
    return out


def replay_draws(seed: int, draws: list):
    """The zoo's weight draws from its seed, in order (as ``models._graph.GraphBuilder`` draws them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for kind, shape, a, b in draws:
        if kind == "normal":
            yield (rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(a)).astype(np.float32)
        else:
            yield rng.uniform(a, b, size=tuple(shape)).astype(np.float32)


def transform(array, how: str):
    """A zoo draw as a strategy's passes left it: ``identity``, ``transpose``, ``float16`` or both, then
    perhaps ``pack<B>`` (blocks of ``B`` output columns, the CPU's packed weights)."""
    import numpy as np

    for step in how.split(","):
        if step == "transpose":
            array = array.T
        elif step == "float16":
            array = array.astype(np.float16)
        elif step.startswith("pack"):
            block = int(step[4:])
            *lead, n = array.shape
            array = np.moveaxis(array.reshape(*lead, n // block, block), -2, 0)
    return np.ascontiguousarray(array)


class Arrays:
    """The manifest's arrays, made once each (numpy; ``bfloat16`` as its bits in uint16)."""

    def __init__(self, manifest: dict):
        self.manifest = manifest
        self.specs = manifest["arrays"]
        self.cache: dict = {}
        self.draws: dict = {}
        self.samples: dict = {}

    def get(self, aid: str):
        if aid not in self.cache:
            self.cache[aid] = self._make(self.specs[aid])
        return self.cache[aid]

    def forget(self, keep: set) -> None:
        for aid in list(self.cache):
            if aid not in keep:
                del self.cache[aid]
        self.draws.clear()

    def _make(self, spec: dict):
        import numpy as np

        kind = spec["kind"]
        if kind == "file":
            return np.load(HERE / spec["file"], allow_pickle=False)
        if kind == "sample":
            key = (json.dumps(spec["inputs"]), spec["seed"])
            if key not in self.samples:
                self.samples = {key: sample_inputs(spec["inputs"], spec["seed"])}
            return self.samples[key][spec["name"]]
        if kind == "zoo":
            model = spec["zoo"]
            if model not in self.draws:
                zoo = self.manifest["zoo"][model]
                self.draws = {model: list(replay_draws(zoo["seed"], zoo["draws"]))}
            return transform(self.draws[model][spec["draw"]], spec["transform"])
        if kind == "synthetic":
            rng = np.random.default_rng(int(spec["sha256"][:12], 16))
            shape, dtype = tuple(spec["shape"]), spec["dtype"]
            if "mean" in spec:
                values = rng.standard_normal(shape, dtype=np.float32) * np.float32(spec["std"]) + np.float32(spec["mean"])
                if dtype == "bfloat16":
                    return (values.view(np.uint32) >> 16).astype(np.uint16)
                return values.astype(dtype)
            return rng.integers(spec["low"], spec["high"] + 1, shape).astype(dtype)
        raise BadInput(f"unknown array kind {kind!r} in the manifest")


def to_device(tvm, array, dtype: str, dev):
    """A TVM tensor of ``array`` on ``dev`` (bfloat16 from its uint16 bits)."""
    if dtype == "bfloat16" and str(array.dtype) == "uint16":
        return tvm.runtime.tensor(array, device=dev)._create_view(tuple(array.shape), "bfloat16")
    return tvm.runtime.tensor(array, device=dev)


# ------------------------------------------------------------------------------------------------ running

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

    vm = VirtualMachine(tvm.runtime.load_module(str(HERE / variant["library"])), dev)
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
                            "temperature_c": nvml._uint("nvmlDeviceGetTemperature", ctypes.c_int(0))})
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


def pick(manifest: dict, patterns: list[str]) -> list[dict]:
    """The manifest's variants whose ids match any of ``patterns`` (all without patterns)."""
    variants = manifest["variants"]
    if not patterns:
        return list(variants)
    chosen = [v for v in variants if any(fnmatch.fnmatchcase(v["id"], p) for p in patterns)]
    if not chosen:
        raise BadInput(f"no variant matches {', '.join(patterns)} (run --list to see them)")
    return chosen


def ncu_subset(manifest: dict, count: int) -> list[str]:
    """A few variants to profile with Nsight Compute: the microbenchmarks first, then one strategy of
    each model after another (different models and strategies before more of one)."""
    micro = [v["id"] for v in manifest["variants"] if v.get("micro")]
    rest = [v for v in manifest["variants"] if not v.get("micro")]
    by_model: dict = {}
    for v in rest:
        by_model.setdefault(v["model"], []).append(v["id"])
    order = []
    while any(by_model.values()):
        for ids in by_model.values():
            if ids:
                order.append(ids.pop(0))
    return (micro + order)[:count]


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------- ncu

NCU_UNITS = {"byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
             "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
             "": 1.0, "%": 1.0, "cycle": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def parse_ncu_csv(text: str) -> list[dict]:
    """Nsight Compute's ``--csv`` output (one row per kernel launch and metric, with ``==PROF==`` and
    program lines around it) as one dict per launch, in launch order: ``id``, ``kernel`` (the mangled or
    plain name as ncu prints it) and ``metrics`` (name -> value in base units: bytes, seconds)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise BadInput("no ncu CSV table found (its header starts with \"ID\")")
    rows = csv.DictReader(io.StringIO("\n".join(line for line in lines[start:] if line.startswith('"'))))
    launches: dict = {}
    for row in rows:
        try:
            launch_id = int(row["ID"])
        except (KeyError, ValueError):
            continue
        name = row.get("Kernel Name") or row.get("Function Name") or row.get("Name") or ""
        entry = launches.setdefault(launch_id, {"id": launch_id, "kernel": name, "metrics": {}})
        metric, raw = row.get("Metric Name"), (row.get("Metric Value") or "").replace(",", "").strip()
        if not metric:
            continue
        unit = (row.get("Metric Unit") or "").strip().lower()
        try:
            value = float(raw)
        except ValueError:
            continue
        entry["metrics"][metric] = value * NCU_UNITS.get(unit, 1.0)
    return [launches[k] for k in sorted(launches)]


def function_of(kernel: str) -> str:
    """The TVM function a CUDA kernel belongs to: ``fused_add_kernel`` and ``fused_add_kernel_1`` ->
    ``fused_add`` (a demangled signature's arguments dropped)."""
    name = kernel.split("(", 1)[0].strip()
    return re.sub(r"_kernel(_\d+)?$", "", name)


def bytes_per_call(launches: list[dict], calls: list[str]) -> list[dict]:
    """ncu's launches of one inference summed per kernel call of ``calls`` (the call order an
    instrumented inference gave): each launch goes to the next call of its function. Each call:
    ``call``, ``kernel``, ``launches``, ``dram_read_bytes``, ``dram_write_bytes``, ``dram_bytes`` and
    ``gpu_time_s`` (None where ncu had no such metric)."""
    out = [{"call": i, "kernel": name, "launches": 0, "dram_read_bytes": None, "dram_write_bytes": None,
            "gpu_time_s": None} for i, name in enumerate(calls)]
    at = 0
    for launch in launches:
        fn = function_of(launch["kernel"])
        j = at
        while j < len(calls) and calls[j] != fn:
            j += 1
        if j == len(calls):  # not a call of this inference (e.g. an extra launch): look from the start
            j = next((k for k, name in enumerate(calls) if name == fn), None)
            if j is None:
                continue
        at = j
        call = out[j]
        call["launches"] += 1
        for key, metric in (("dram_read_bytes", "dram__bytes_read.sum"), ("dram_write_bytes", "dram__bytes_write.sum"),
                            ("gpu_time_s", "gpu__time_duration.sum")):
            if metric in launch["metrics"]:
                call[key] = (call[key] or 0.0) + launch["metrics"][metric]
        if j + 1 < len(calls) and calls[j + 1] != fn:
            at = j + 1
    for call in out:
        parts = [call["dram_read_bytes"], call["dram_write_bytes"]]
        call["dram_bytes"] = None if all(p is None for p in parts) else sum(p or 0.0 for p in parts)
    return out


def run_ncu_mode(tvm, variants: list[dict], arrays: Arrays, dev, out: Path) -> int:
    """Each variant: warm up, then one inference between cuProfilerStart and cuProfilerStop."""
    cuda_driver = ctypes.CDLL("libcuda.so.1")
    orders = {}
    for variant in variants:
        vm, args = load_variant(tvm, variant, arrays, dev)
        for _ in range(2):
            vm["main"](*args)
        orders[variant["id"]] = call_order(vm, args)
        dev.sync()
        cuda_driver.cuProfilerStart()
        vm["main"](*args)
        dev.sync()
        cuda_driver.cuProfilerStop()
        print(f"profiled {variant['id']}", file=sys.stderr, flush=True)
    write_json(out, {"calls": orders})
    return 0


# ------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure the variants of this explorer bundle (see the docstring).")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="where to run (auto: the device the bundle was built for)")
    ap.add_argument("--variant", action="append", default=[], metavar="ID", help="variant id or pattern (repeatable)")
    ap.add_argument("--out", default=None, metavar="FILE", help="results JSON (default: results.json beside the runner, "
                                                                 "ncu-calls.json with --ncu)")
    ap.add_argument("--list", action="store_true", help="print the variant ids and exit")
    ap.add_argument("--ncu-subset", type=int, metavar="N", help="with --list: only N variants to profile with ncu")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats (default 5)")
    ap.add_argument("--min-repeat-ms", type=int, default=200, help="each repeat runs inferences for at least this long")
    ap.add_argument("--warmup", type=int, default=3, help="untimed inferences before timing (default 3)")
    ap.add_argument("--kernel-runs", type=int, default=5, help="instrumented inferences for per-kernel times (default 5)")
    ap.add_argument("--energy-window-s", type=float, default=1.0, help="seconds of inferences per energy window")
    ap.add_argument("--energy-windows", type=int, default=3, help="energy windows per variant (default 3)")
    ap.add_argument("--idle-every", type=int, default=5, help="measure idle power every N variants (default 5)")
    ap.add_argument("--settle-s", type=float, default=1.0, help="seconds idle before an idle-power window")
    ap.add_argument("--time-budget-s", type=float, default=0, help="start no variant after this many seconds (0: none)")
    ap.add_argument("--threads", type=int, help="CPU: TVM runtime threads")
    ap.add_argument("--outputs", metavar="DIR", help="also save each variant's first outputs as DIR/ID.npz")
    ap.add_argument("--resume", action="store_true", help="keep the variants --out already holds and measure the rest "
                                                           "(one that killed the runner is recorded as failed)")
    ap.add_argument("--outputs-max-mb", type=float, default=4.0, help="with --outputs: skip outputs larger than this")
    ap.add_argument("--ncu", action="store_true", help="one profiled inference per variant (run under ncu)")
    ap.add_argument("--parse-ncu", metavar="CSV", help="print bytes per kernel call from an ncu CSV (needs --calls)")
    ap.add_argument("--calls", metavar="JSON", help="the ncu-calls.json an --ncu run wrote")
    args = ap.parse_args(argv)
    try:
        manifest = json.loads((HERE / "manifest.json").read_text())
        if args.parse_ncu:
            if not args.calls or not args.variant:
                raise BadInput("--parse-ncu needs --calls ncu-calls.json and --variant ID")
            calls = json.loads(Path(args.calls).read_text())["calls"][args.variant[0]]
            print(json.dumps(bytes_per_call(parse_ncu_csv(Path(args.parse_ncu).read_text()), calls), indent=1))
            return 0
        if args.list:
            ids = ncu_subset(manifest, args.ncu_subset) if args.ncu_subset else [v["id"] for v in pick(manifest, args.variant)]
            print("\n".join(ids))
            return 0
        device = manifest.get("device", "cpu") if args.device == "auto" else args.device
        args.device = device
        variants = pick(manifest, args.variant)
        if args.threads:
            os.environ["TVM_NUM_THREADS"] = str(args.threads)
        info = setup_imports(manifest)
        tvm = import_tvm(device)
    except BadInput as err:
        print(f"measure_runner: {err}", file=sys.stderr)
        return 2
    dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
    if device == "cuda" and not dev.exist:
        print("measure_runner: no CUDA device (tvm.cuda(0) does not exist)", file=sys.stderr)
        return 2
    arrays = Arrays(manifest)
    out = Path(args.out) if args.out else HERE / ("ncu-calls.json" if args.ncu else "results.json")
    if args.ncu:
        return run_ncu_mode(tvm, variants, arrays, dev, out)
    nvml, nvml_error = None, None
    if device == "cuda":
        try:
            nvml = NVML(0)
        except (OSError, RuntimeError, AttributeError) as err:
            nvml_error = str(err)
    results = {
        "bundle": {"created": manifest["created"], "target": manifest["target"], "source": manifest.get("source"),
                   "tvm_version": manifest["tvm_version"]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "platform": platform.platform(),
        "python": platform.python_version(), "device": {"kind": device},
        "tvm": {"file": tvm.__file__, "runtime_only": bool(tvm.base._RUNTIME_ONLY),
                "loaded": sorted(map(str, tvm.base._LOADED_LIBS)), "threads": int(tvm.runtime.num_threads()), **info},
        "options": {k: getattr(args, k) for k in ("repeat", "min_repeat_ms", "warmup", "kernel_runs", "energy_window_s",
                                                  "energy_windows", "idle_every", "settle_s")},
        "idle": [], "variants": [],
    }
    if nvml is not None:
        results["device"].update(nvml.info())
    elif device == "cuda":
        results["device"]["nvml_error"] = nvml_error
    if device == "cuda":
        for key, attr in (("cuda_name", "device_name"), ("compute_version", "compute_version")):
            try:
                results["device"][key] = getattr(dev, attr)
            except Exception:  # an attribute this runtime cannot query
                results["device"][key] = None
    if args.resume and out.is_file():  # a runner that crashed (a segfault inside TVM) or was stopped: go on
        try:
            before = json.loads(out.read_text())
        except ValueError:
            before = {}
        results["variants"] = before.get("variants", [])
        results["idle"] = before.get("idle", [])
        crashed = before.get("running")
        done = {e["id"] for e in results["variants"]}
        if crashed and crashed not in done:
            v = next((v for v in variants if v["id"] == crashed), {"model": None, "strategy": None})
            results["variants"].append({"id": crashed, "model": v["model"], "strategy": v["strategy"],
                                        "status": "failed: the runner process died while measuring it"})
            done.add(crashed)
        variants = [v for v in variants if v["id"] not in done]
    started = time.perf_counter()
    failed = 0
    for i, variant in enumerate(variants):
        if args.time_budget_s and time.perf_counter() - started > args.time_budget_s:
            results["stopped"] = f"time budget of {args.time_budget_s:g} s spent before {variant['id']}"
            break
        if nvml is not None and i % max(args.idle_every, 1) == 0:
            results["idle"].append(idle_power(nvml, args.energy_window_s, args.settle_s))
        print(f"[{i + 1}/{len(variants)}] {variant['id']} ...", file=sys.stderr, flush=True)
        results["running"] = variant["id"]
        write_json(out, results)
        try:
            entry = measure_variant(tvm, variant, arrays, dev, args, nvml, results["idle"])
        except Exception as err:  # one failing variant never stops the others
            failed += 1
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
            entry = {"id": variant["id"], "model": variant["model"], "strategy": variant["strategy"],
                     "status": f"failed: {type(err).__name__}: {last}"}
        arrays.forget(set())
        entry["predicted"] = variant.get("predicted")
        results["variants"].append(entry)
        results["running"] = None
        line = entry["status"] if entry["status"] != "ok" else f"{entry['latency_s'] * 1e3:.4g} ms" + (
            f", {entry['energy_j'] * 1e3:.4g} mJ" if "energy_j" in entry else "")
        print(f"    {line}", file=sys.stderr, flush=True)
        results["loaded_libraries"] = loaded_libraries()
        write_json(out, results)
    if nvml is not None:
        results["idle"].append(idle_power(nvml, args.energy_window_s, args.settle_s))
    results["loaded_libraries"] = loaded_libraries()
    results["elapsed_s"] = time.perf_counter() - started
    write_json(out, results)
    print(f"wrote {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
