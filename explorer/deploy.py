"""Running a compiled variant on this machine: build it once, cache the library, time inferences.

A CPU variant (an ``llvm`` target that ``runs_here``) is compiled with the generic flavour for
``{"kind": "llvm", "mcpu": CPU}`` and exported as a shared library into the build cache::

    cache_dir()/builds/<key>.so     the Relax VM executable (``export_library``)
    cache_dir()/builds/<key>.json   what the build was made from, and the model's predicted figures

The key covers the prepared model's content, the strategy's choices, ``mcpu``, the installed TVM and
explorer versions and a fingerprint of the explorer's compile code, so nothing is compiled twice and
a changed compiler never reuses an old library. The predicted figures (DRAM bytes, energy, latency)
are stored per target *and* per fingerprint of the cost-model code, so a cached run needs neither
recompilation nor TIR analysis, and an edited cost model or target file never reads stale figures.

A cached run does not need TVM's compiler at all: when TVM is not yet imported, it is imported with
``TVM_USE_RUNTIME_LIB=1`` (runtime library only; ``tvm.relax`` is then unavailable), the library is
loaded with ``tvm.runtime.load_module`` and run by ``tvm.runtime.vm.VirtualMachine``. That keeps the
start-up of a cached run small, which matters under valgrind (benchmarks/cachegrind_check.py).
Nothing before that point (``loading.prepare``, the target files, this module) imports TVM.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from cost_models.targets import TargetSpec, load_target

from . import __version__
from .errors import ExplorerError
from .loading import PreparedModel, cache_dir, prepare
from .strategies import Strategy, get_strategy

#: Bump when the layout of the build cache changes.
BUILD_FORMAT = "1"

_ROOT = Path(__file__).resolve().parent.parent
#: Code that decides what the library contains (part of the build key).
_BUILD_SOURCES = ("explorer/tvm_compile.py", "explorer/strategies.py")
#: Modules that play no part in the predicted figures; every other module of ``explorer`` and
#: ``cost_models`` (the TIR analysis, the cost model and whatever they import) is part of the
#: prediction key, so a new analysis module is covered without being listed.
_NOT_PREDICTING = frozenset({"explorer/cli.py", "explorer/report.py", "explorer/fusion.py", "explorer/deploy.py",
                             "explorer/sweep.py"})


def _predict_sources() -> tuple[str, ...]:
    found = sorted(p.relative_to(_ROOT).as_posix() for d in ("explorer", "cost_models") for p in (_ROOT / d).glob("*.py"))
    return tuple(f for f in found if f not in _NOT_PREDICTING)


# --------------------------------------------------------------------------------------------------
# Keys and cache files (no TVM here)
# --------------------------------------------------------------------------------------------------

def source_fingerprint(files: tuple[str, ...]) -> str:
    """A short hash of the explorer source files ``files`` (paths from the repository root)."""
    h = hashlib.sha256()
    for rel in files:
        path = _ROOT / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.exists() else b"?")
    return h.hexdigest()[:12]


def _tvm_version() -> str:
    from importlib.metadata import version

    return version("apache-tvm")


def build_key(model: PreparedModel, strategy: Strategy, mcpu: str) -> str:
    """Cache key of a CPU build: model content, strategy choices, ``mcpu``, TVM and explorer versions,
    and a fingerprint of the explorer's compile code."""
    raw = "|".join(["build", BUILD_FORMAT, model.sha256, strategy.key, f"mcpu={mcpu}", _tvm_version(), __version__,
                    source_fingerprint(_BUILD_SOURCES)])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def prediction_key(target: TargetSpec) -> str:
    """Which predicted figures of a build apply to ``target``: its name, its figures and the cost-model code."""
    import dataclasses

    figures = hashlib.sha256(repr(dataclasses.replace(target, path="")).encode()).hexdigest()[:12]
    return f"{target.name}@{figures}@{source_fingerprint(_predict_sources())}"


def builds_dir() -> Path:
    """Where built libraries are cached: ``cache_dir()/builds``."""
    return cache_dir() / "builds"


def _paths(key: str) -> tuple[Path, Path]:
    d = builds_dir()
    return d / f"{key}.so", d / f"{key}.json"


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cpu_fingerprint() -> str:
    """Identity of this machine's CPU, without TVM (to cache LLVM's name for it)."""
    fields = [platform.machine(), platform.processor()]
    cpuinfo = Path("/proc/cpuinfo")
    block = cpuinfo.read_text().split("\n\n")[0] if cpuinfo.exists() else ""  # absent off Linux
    for line in block.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part"):
            fields.append(f"{name.strip()}={value.strip()}")
    return hashlib.sha256("|".join(fields).encode()).hexdigest()[:16]


def _host_cpu_in_compiler() -> str:
    from . import tvm_compile

    return tvm_compile.host_target()["mcpu"]


def resolve_mcpu(mcpu: str | None) -> str:
    """``mcpu`` itself, or for ``None`` LLVM's name of this host's CPU (``tvm_compile.host_target()``).

    The host's name is cached in the build directory per CPU fingerprint, so that a cached run can
    find its library without loading TVM's compiler."""
    if mcpu:
        return mcpu
    path = builds_dir() / "host-cpu.json"
    known = _read_meta(path) or {}
    fp = _cpu_fingerprint()
    if fp not in known:
        known = {**(_read_meta(path) or {}), fp: _with_compiler(_host_cpu_in_compiler)}
        _write_atomic(path, json.dumps(known, indent=1))
    return known[fp]


# --------------------------------------------------------------------------------------------------
# TVM: which library is loaded, compiling, exporting, running
# --------------------------------------------------------------------------------------------------

def _compiler_usable_here() -> bool:
    """Whether this process can compile: TVM is not imported yet, or imported with its compiler."""
    tvm = sys.modules.get("tvm")
    return tvm is None or not getattr(getattr(tvm, "base", None), "_RUNTIME_ONLY", True)


def _with_compiler(fn, *args):
    """Call ``fn(*args)`` here, or in a spawned process when this one loaded TVM runtime-only."""
    if _compiler_usable_here():
        return fn(*args)
    saved = os.environ.pop("TVM_USE_RUNTIME_LIB", None)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        raise ExplorerError("the TVM compile process crashed (a segfault inside TVM)") from None
    finally:
        if saved is not None:
            os.environ["TVM_USE_RUNTIME_LIB"] = saved


def import_tvm_runtime_only():
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


def _predict(lowered, target: TargetSpec) -> dict:
    from cost_models import energy

    from . import tir_analysis

    workload = tir_analysis.workload_table(lowered.calls, tir_analysis.analyse_module(lowered.tir))
    tot = energy.totals(energy.score(workload, target))
    return {"target": target.name, "dram_bytes": float(tot["dram_bytes"]), "energy_j": float(tot["energy_j"]),
            "latency_s": float(tot["latency_s"])}


def export_library(executable, path: Path) -> None:
    """Export a built Relax VM executable as a shared library at ``path`` (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.so")
    try:
        executable.export_library(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _compile_and_record(model_path: str, sha256: str, strategy: Strategy, mcpu: str, target: TargetSpec,
                        key: str, base: dict, need_library: bool) -> dict:
    """Compiler side: compile the variant (with code generation when the library is missing), work out
    its predicted figures on ``target``, export the library and record both in the cache. Returns the
    build's metadata."""
    from tvm.target import codegen

    from . import tvm_compile

    triple = codegen.llvm_get_system_triple()
    if not codegen.llvm_is_valid_cpu(mcpu, triple):
        raise ExplorerError(f"LLVM does not know the CPU {mcpu!r} (for {triple}); e.g. haswell, skylake-avx512, znver4")
    lowered = tvm_compile.compile_variant(model_path, sha256, strategy, "generic", {"kind": "llvm", "mcpu": mcpu},
                                          build=need_library)
    predicted = _predict(lowered, target)
    so_path, meta_path = _paths(key)
    if need_library:
        export_library(lowered.executable, so_path)
    meta = _read_meta(meta_path) if so_path.exists() and not need_library else None
    meta = meta or dict(base)
    meta.setdefault("predicted", {})[prediction_key(target)] = predicted
    _write_atomic(meta_path, json.dumps(meta, indent=1))
    return meta


def load_vm(library: Path):
    """Load an exported library and return ``(tvm, VirtualMachine on the CPU)``; works runtime-only."""
    tvm = import_tvm_runtime_only()
    from tvm.runtime.vm import VirtualMachine

    return tvm, VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())


def time_inferences(library: Path, inputs: list[np.ndarray], repeat: int) -> list[float]:
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


# --------------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------------

def runnable_target(target: str | TargetSpec) -> TargetSpec:
    """The target spec, if variants for it can run on this machine (``tvm = "llvm"`` and ``runs_here``);
    otherwise a one-line :class:`ExplorerError`."""
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    if spec.tvm != "llvm" or not spec.runs_here:
        why = f"it is compiled as {spec.tvm!r}" if spec.tvm != "llvm" else "its target file says runs_here = false"
        raise ExplorerError(f"target {spec.name!r} cannot be run on this machine ({why}); "
                            "only llvm targets with runs_here = true can be run")
    return spec


def run_variant(model: str, strategy: str | Strategy = "fused", target: str | TargetSpec = "cpu", repeat: int = 1,
                mcpu: str | None = None, input_shapes: dict | None = None, seed: int = 0,
                cached_only: bool = False, progress=None) -> dict:
    """Build one variant for this CPU (once: builds are cached) and time ``repeat`` inferences.

    ``model`` is a zoo name or an ONNX file; ``strategy`` a registered name or a :class:`Strategy`;
    ``target`` an llvm target that runs here (its figures give the predictions); ``mcpu`` the LLVM
    CPU to build for (default: this host). The inputs are ``PreparedModel.sample_inputs(seed)``.
    ``cached_only`` never compiles: it raises :class:`ExplorerError` when the library is not cached,
    and reports the predicted figures as ``None`` when only they are missing (e.g. the cost model
    changed since the build).
    ``progress`` is called with a line of text before a (slow) compilation.

    Returns a dict: ``model``, ``strategy``, ``target``, ``mcpu``, ``repeat``, ``latency_ms`` (one per
    run), ``latency_median_ms``, ``latency_min_ms``, ``latency_max_ms``, ``predicted_dram_bytes``,
    ``predicted_energy_j``, ``predicted_latency_s`` (the model's figures for this variant on ``target``),
    ``build_cached`` (whether the library came from the cache) and ``library`` (its path).
    """
    spec = runnable_target(target)
    if repeat < 1:
        raise ExplorerError(f"--repeat must be at least 1, got {repeat}")
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    prepared = prepare(model, input_shapes)
    cpu = resolve_mcpu(mcpu)
    key = build_key(prepared, strat, cpu)
    so_path, meta_path = _paths(key)
    meta = _read_meta(meta_path) if so_path.exists() else None
    build_cached = meta is not None
    predicted = (meta or {}).get("predicted", {}).get(prediction_key(spec))
    if cached_only and not build_cached:
        raise ExplorerError(f"the build of {prepared.name} / {strat.name} / mcpu {cpu} is not cached "
                            f"(key {key}); run it once without --cached-only")
    if predicted is None and cached_only:
        if progress:
            progress(f"no predicted figures cached for {spec.name} with the current cost model; "
                     "running the cached library without them (--cached-only never compiles)")
        predicted = {"dram_bytes": None, "energy_j": None, "latency_s": None}
    elif predicted is None:
        if progress:
            progress(f"{'analysing' if build_cached else 'compiling'} {prepared.name} / {strat.name} for mcpu {cpu} ...")
        base = {"key": key, "model": prepared.name, "model_sha256": prepared.sha256, "strategy": strat.key,
                "mcpu": cpu, "tvm_version": _tvm_version(), "explorer_version": __version__,
                "library": so_path.name, "predicted": {}}
        meta = _with_compiler(_compile_and_record, str(prepared.path), prepared.sha256, strat, cpu, spec, key, base,
                              not build_cached)
        predicted = meta["predicted"][prediction_key(spec)]
    feed = prepared.sample_inputs(seed)
    times = time_inferences(so_path, [feed[i.name] for i in prepared.inputs], repeat)
    ms = [t * 1e3 for t in times]
    return {
        "model": prepared.name, "strategy": strat.name, "target": spec.name, "mcpu": cpu, "repeat": repeat,
        "latency_ms": ms, "latency_median_ms": statistics.median(ms), "latency_min_ms": min(ms),
        "latency_max_ms": max(ms), "predicted_dram_bytes": predicted["dram_bytes"],
        "predicted_energy_j": predicted["energy_j"], "predicted_latency_s": predicted["latency_s"],
        "build_cached": build_cached, "library": str(so_path),
    }
