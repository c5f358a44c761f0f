"""Running a compiled variant on this machine: build it once, cache the library, time inferences.

A CPU variant (an ``llvm`` target that ``runs_here``) is compiled with the generic lowering for
``{"kind": "llvm", "mcpu": CPU}`` and exported as a shared library into the build cache::

    cache_dir()/builds/<key>.so     the Relax VM executable (``export_library``)
    cache_dir()/builds/<key>.json   what the build was made from

The key (:func:`build_key`) covers the prepared model's content, the strategy's choices, ``mcpu``,
the installed TVM and explorer versions and a fingerprint of the code that decides what the
library contains, so nothing is compiled twice and a changed compiler never reuses an old library.
The predicted figures are scored on every run from the variant's cached lowering
(:mod:`explorer.lowerings`), so an edited cost model or target file never reads stale figures.

A cached run does not need TVM's compiler at all: the library is loaded with TVM's runtime library
only (:mod:`explorer.tvm.runtime`), which keeps the start-up of a cached run small (that matters
under valgrind, see benchmarks/cachegrind_check.py). Nothing before that point imports TVM.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from cost_models import energy
from cost_models.targets import TargetSpec, load_target

from . import lowerings
from .cache import COMPILE_CODE, cache_dir, code_fingerprint, make_key, tvm_version, write_atomic
from .calibration import Calibration, calibrate, load_samples
from .errors import ExplorerError
from .host import cpu_fingerprint, in_compiler_process
from .loading import PreparedModel, prepare
from .records import Failure, Lowering, LoweringRequest
from .strategies import Strategy, get_strategy
from .version import __version__
from .workers import machine_cores

#: Bump when the layout of the build cache changes.
BUILD_FORMAT = "2"

def build_key(model: PreparedModel, strategy: Strategy, mcpu: str, calibration: str = "") -> str:
    """Cache key of a CPU build: model content, strategy choices, ``mcpu``, the int8 calibration's
    key (:attr:`explorer.calibration.Calibration.key`, empty for other precisions), TVM and explorer
    versions, and a fingerprint of the explorer's compile code."""
    return make_key("build", BUILD_FORMAT, model.sha256, strategy.key, f"mcpu={mcpu}", f"calibration={calibration}",
                    code_fingerprint(*COMPILE_CODE))


def builds_dir() -> Path:
    """Where built libraries are cached: ``cache_dir()/builds``."""
    return cache_dir() / "builds"


def library_path(model: PreparedModel, strategy: Strategy, mcpu: str, calibration: str = "") -> Path:
    """Where the CPU library of ``model`` under ``strategy`` for ``mcpu`` (int8: and ``calibration``)
    is cached (a sweep that runs a CPU variant exports it there too, so ``explorer run`` compiles
    nothing after it)."""
    return builds_dir() / f"{build_key(model, strategy, mcpu, calibration)}.so"


def runnable_target(target: str | TargetSpec) -> TargetSpec:
    """The target spec, if variants for it can run on this machine (``tvm = "llvm"`` and ``runs_here``);
    otherwise a one-line :class:`ExplorerError`."""
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    if spec.tvm != "llvm" or not spec.runs_here:
        why = f"it is compiled as {spec.tvm!r}" if spec.tvm != "llvm" else "its target file says runs_here = false"
        raise ExplorerError(f"target {spec.name!r} cannot be run on this machine ({why}); "
                            "only llvm targets with runs_here = true can be run")
    return spec


def _llvm_host_cpu() -> str:
    from .tvm.codegen import host_cpu

    return host_cpu()


def resolve_mcpu(mcpu: str | None = None) -> str:
    """``mcpu`` itself, or for ``None`` LLVM's name of this host's CPU (:func:`explorer.tvm.codegen.host_cpu`).
    The host's name is cached per CPU fingerprint (``cache_dir()/host-llvm-cpu.json``), so finding it
    costs TVM's import once per machine."""
    if mcpu:
        return mcpu
    path = cache_dir() / "host-llvm-cpu.json"
    fp = cpu_fingerprint()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if fp not in known:
        known[fp] = in_compiler_process(_llvm_host_cpu)
        write_atomic(path, json.dumps(known, indent=1))
    return known[fp]


def timing_threads(target: TargetSpec) -> int:
    """Threads a variant for ``target`` is timed with: the cores the target has, at most this machine's."""
    return min(target.cores or machine_cores(), machine_cores())


def _compile(req: LoweringRequest):
    from .tvm.worker import lower_variant

    return lower_variant(req)


@dataclasses.dataclass(frozen=True)
class Build:
    """A CPU library in the build cache, with the lowering its figures are scored from."""

    library: Path
    lowering: Lowering | None  # None: only with cached_only, where the analysis is not cached
    was_cached: bool  # the library was there before


def ensure_library(prepared: PreparedModel, strategy: Strategy, spec: TargetSpec, mcpu: str,
                   calibration: Calibration | None = None, cached_only: bool = False, progress=None) -> Build:
    """The library of ``prepared`` under ``strategy`` for ``mcpu`` (an int8 strategy with its
    ``calibration``), compiled and exported into the build cache unless it is there (a sweep that
    ran the variant exported it), with its lowering (compiled too where the analysis is missing).
    ``cached_only`` never compiles: :class:`ExplorerError` when the library is not cached."""
    cal_key = calibration.key if calibration else ""
    key = build_key(prepared, strategy, mcpu, cal_key)
    library = library_path(prepared, strategy, mcpu, cal_key)
    was_cached = library.exists()
    if cached_only and not was_cached:
        raise ExplorerError(f"the build of {prepared.name} / {strategy.name} / mcpu {mcpu} is not cached "
                            f"(key {key}); run it once without --cached-only")
    req = LoweringRequest(str(prepared.path), prepared.sha256, strategy, "generic", mcpu=mcpu, build=True,
                          scoring=spec, act_scales=calibration.scales if calibration else None)
    lowered = lowerings.get(lowerings.lowering_key(req, cal_key))
    if (lowered is None or not was_cached) and not cached_only:
        if progress:
            progress(f"{'analysing' if was_cached else 'compiling'} {prepared.name} / {strategy.name} for mcpu {mcpu} ...")
        lowered = in_compiler_process(_compile, dataclasses.replace(req, export=str(library)))
        if isinstance(lowered, Failure):
            raise ExplorerError(f"{prepared.name} / {strategy.name}: {lowered.status.detail}")
        lowerings.put(lowerings.lowering_key(req, cal_key), lowered)
        write_atomic(library.with_suffix(".json"), json.dumps(
            {"key": key, "model": prepared.name, "model_sha256": prepared.sha256, "strategy": strategy.key,
             "mcpu": mcpu, "tvm_version": tvm_version(), "explorer_version": __version__,
             "library": library.name}, indent=1))
    return Build(library, lowered, was_cached)


def run_variant(model: str, strategy: str | Strategy = "fused", target: str | TargetSpec = "cpu", repeat: int = 1,
                mcpu: str | None = None, input_shapes: dict | None = None, seed: int = 0,
                cached_only: bool = False, progress=None, input_values: dict[str, float] | None = None,
                inputs: str | Path | None = None, calibration: str | Path | None = None) -> dict:
    """Build one variant for this CPU (once: builds are cached) and time ``repeat`` inferences.

    ``model`` is a zoo name or an ONNX file; ``strategy`` a registered name or a :class:`Strategy`;
    ``target`` an llvm target that runs here (its figures give the predictions); ``mcpu`` the LLVM
    CPU to build for (default: this host). The inputs are the first sample of ``inputs`` (a folder of
    ``.npy`` files, see :func:`explorer.calibration.load_samples`), else ``PreparedModel.sample_inputs(seed)``;
    ``input_values`` freezes inputs to constants (``--input-value``). An int8 strategy is calibrated as
    a sweep calibrates it (``calibration``, else ``inputs``, else seeded samples), so a sweep's int8
    library is the one this runs.
    ``cached_only`` never compiles: it raises :class:`ExplorerError` when the library is not cached,
    and reports the predicted figures as ``None`` when only the analysis is missing (e.g. the
    analysis code changed since the build).
    ``progress`` is called with a line of text before a (slow) compilation.

    Returns a dict: ``model``, ``strategy``, ``target``, ``mcpu``, ``repeat``, ``latency_ms`` (one per
    run), ``latency_median_ms``, ``latency_min_ms``, ``latency_max_ms``, ``predicted_dram_bytes``,
    ``predicted_energy_j``, ``predicted_latency_s`` (the model's figures for this variant on ``target``),
    ``build_cached`` (whether the library came from the cache), ``library`` (its path) and
    ``threads`` (TVM runtime threads: the target's cores, where TVM was not imported before).
    """
    spec = runnable_target(target)
    if repeat < 1:
        raise ExplorerError(f"--repeat must be at least 1, got {repeat}")
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    prepared = prepare(model, input_shapes, input_values=input_values)
    cal = calibrate(prepared, calibration or inputs) if strat.precision == "int8" else None
    cpu = resolve_mcpu(mcpu)
    build = ensure_library(prepared, strat, spec, cpu, cal, cached_only, progress)
    library, lowered, build_cached = build.library, build.lowering, build.was_cached
    predicted = {"dram_bytes": None, "energy_j": None, "latency_s": None}
    if lowered is None:
        if progress:
            progress(f"no analysis cached for {prepared.name} / {strat.name} with the current analysis code; "
                     "running the cached library without predicted figures (--cached-only never compiles)")
    else:
        tot = energy.totals(energy.score(lowered.workload, spec))
        predicted = {"dram_bytes": tot.dram_bytes, "energy_j": tot.energy_j, "latency_s": tot.latency_s}
    from .tvm.runtime import runtime_threads, time_library

    threads = runtime_threads(timing_threads(spec))
    feed = load_samples(prepared, inputs)[0] if inputs else prepared.sample_inputs(seed)
    times = time_library(library, [feed[i.name] for i in prepared.inputs], repeat)
    ms = [t * 1e3 for t in times]
    return {
        "model": prepared.name, "strategy": strat.name, "target": spec.name, "mcpu": cpu, "repeat": repeat,
        "latency_ms": ms, "latency_median_ms": statistics.median(ms), "latency_min_ms": min(ms),
        "latency_max_ms": max(ms), "predicted_dram_bytes": predicted["dram_bytes"],
        "predicted_energy_j": predicted["energy_j"], "predicted_latency_s": predicted["latency_s"],
        "build_cached": build_cached, "library": str(library), "threads": threads,
    }
