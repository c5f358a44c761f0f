"""Running a compiled variant on this machine: build it once, cache the library, time inferences.

A CPU variant (an ``llvm`` target that ``runs_here``) is compiled with the generic lowering for
``{"kind": "llvm", "mcpu": CPU}`` and exported as a shared library into the build cache
(:mod:`explorer.store.builds`), so nothing is compiled twice and a changed compiler never reuses an
old library. The predicted figures are scored on every run from the variant's cached lowering
(:mod:`explorer.store.lowerings`), so an edited cost model or target file never reads stale figures.

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
from cost_models.spec import TargetSpec
from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from explorer.core.prepared import PreparedModel
from explorer.core.strategies import Strategy, get_strategy
from explorer.core.variant import Failure, Lowering, LoweringRequest
from explorer.core.version import __version__
from explorer.host.cpu import timing_threads
from explorer.host.process import in_compiler_process
from explorer.model.int8_calibration import Calibration, calibrate
from explorer.model.prepare import prepare
from explorer.model.samples import load_samples
from explorer.store import lowerings
from explorer.store.builds import build_key, library_path
from explorer.store.cache import tvm_version, write_atomic
from explorer.tvm.compiler_facts import resolve_mcpu


def runnable_target(target: str | TargetSpec) -> TargetSpec:
    """The target spec, if variants for it can run on this machine (``tvm = "llvm"`` and ``runs_here``);
    otherwise a one-line :class:`ExplorerError`."""
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    if spec.tvm != "llvm" or not spec.runs_here:
        why = f"it is compiled as {spec.tvm!r}" if spec.tvm != "llvm" else "its target file says runs_here = false"
        raise ExplorerError(f"target {spec.name!r} cannot be run on this machine ({why}); "
                            "only llvm targets with runs_here = true can be run")
    return spec


def _compile(req: LoweringRequest):
    from explorer.tvm.worker import lower_variant

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
    ``.npy`` files, see :func:`explorer.model.samples.load_samples`), else ``PreparedModel.sample_inputs(seed)``;
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
    cal = calibrate(prepared, calibration or inputs) if strat.calibrated else None
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
    from explorer.tvm.runtime import runtime_threads, time_library

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
