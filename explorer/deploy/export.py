"""The deployment build out of a sweep (``explorer best``): the chosen variant's compiled library,
``manifest.json`` and a standalone ``run.py``, in one directory.

::

    DIR/model.so        the Relax VM executable (TVM's ``export_library``), for the host CPU or, with
                        ``portable``, for generic x86-64
    DIR/manifest.json   what it is (:class:`Manifest`): strategy, target, TVM version, model hash,
                        inputs and outputs, modelled energy with its 5-95% range, measured latency,
                        accuracy against fp32 and the limit it was chosen within
    DIR/run.py          ``python DIR/run.py --input NAME=FILE.npy ... --output OUT.npz``: numpy and
                        TVM's runtime only (``TVM_USE_RUNTIME_LIB=1``)
    DIR/inputs/*.npy    the check input the accuracy was measured on, one file per model input

The sweep behind the choice reads every lowering it can from the sweep's store (``run``) or the
cache, so exporting the build a sweep just made compiles nothing; a portable build is compiled once
for its own CPU name and cached like any other.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cost_models.host import host_cpu
from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from explorer.core.strategies import get_strategy
from explorer.core.variant import finite
from explorer.core.version import __version__
from explorer.deploy.best import Limits, choose, strategies_in_run
from explorer.deploy.run import ensure_library, runnable_target
from explorer.model.int8_calibration import calibrate
from explorer.model.prepare import prepare
from explorer.store.cache import tvm_version
from explorer.tvm.compiler_facts import resolve_mcpu

#: LLVM's CPU name for a build that runs on any x86-64 machine (SSE2, no AVX).
PORTABLE_MCPU = "x86-64"

#: The runner copied into every build directory.
RUNNER = Path(__file__).resolve().parent / "runner.py"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a deployment build is, as ``manifest.json`` says it."""

    model: dict            # name, sha256 (of the prepared ONNX model the build was compiled from)
    strategy: dict         # name and its axes (fusion, layout, precision, tuning)
    target: dict           # name (the target the build was scored for), mcpu it was compiled for, portable,
                           # and the mcpu of the sweep's build whose latency and accuracy are stated
    tvm_version: str
    explorer_version: str
    library: str           # file name of the compiled library, beside the manifest
    inputs: list           # name, shape, dtype, in the order run.py passes them
    outputs: list          # output names, in order
    objective: str         # what the choice minimised: energy, latency or edp
    limits: dict           # max_latency_ms (or null), max_accuracy_loss_pct
    energy_j: float | None  # modelled energy per inference, and its 5-95% range from the coefficient bounds
    energy_p05_j: float | None
    energy_p95_j: float | None
    modelled_latency_s: float | None
    measured_latency_s: float | None  # median on the machine the sweep ran on (null where not measured)
    measured_on: str | None  # that machine's CPU, where measured
    threads: int | None  # TVM runtime threads it was measured with (run.py's default for TVM_NUM_THREADS)
    accuracy_loss_pct: float | None  # the worst relative L2 error of the outputs against onnxruntime's fp32 ones
    accuracy_inputs: int  # over this many inputs: the check input (inputs/), then seeded or given samples
    max_accuracy_loss_pct: float  # the accuracy this build is stated to meet
    created: str

    def write(self, path: Path) -> None:
        """Write as indented JSON."""
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")


@dataclasses.dataclass(frozen=True)
class Exported:
    """An exported build and how it was chosen."""

    out: Path
    manifest: Manifest
    candidates: pd.DataFrame  # every variant considered, with why the ineligible ones were not chosen
    compiled_now: bool  # whether the library had to be compiled for this export


def export_best(model: str, target: str = "cpu", objective: str = "energy", out: str | Path = "build",
                limits: Limits = Limits(), run: str | Path | None = None, strategies: str | list[str] = "all",
                portable: bool = False, progress: bool = True, **sweep_options) -> Exported:
    """Choose the best variant of ``model`` on ``target`` under ``limits`` (:func:`explorer.deploy.best.choose`)
    and export its build into ``out``.

    The variants come from the sweep in ``run`` (its ``--out`` directory: its store is read, nothing
    in it is rewritten) or, without ``run``, from a sweep of ``strategies`` made now (cached lowerings
    and builds are read back). ``sweep_options`` go to :func:`explorer.sweep.sweep.run_sweep` (input shapes,
    calibration, inputs). Only a CPU target that runs here has a build to export.
    """
    from explorer.deploy.best import rank_candidates
    from explorer.sweep.sweep import run_sweep

    spec = load_target(target)
    try:
        runnable_target(spec)
    except ExplorerError:
        raise ExplorerError(f"explorer best exports builds for CPU targets that run here; {spec.name} is compiled "
                            f"as {spec.tvm!r} (its variants are analysed, not built into a library here)") from None
    prepared = prepare(model, sweep_options.get("input_shapes"), sweep_options.get("max_tensor_bytes"),
                       sweep_options.get("input_values"))
    if run is not None:
        strategies = strategies_in_run(Path(run), prepared.name, spec.name)
    result = run_sweep([model], targets=[target], strategies=strategies, out=run, tables=False, progress=progress,
                       **sweep_options)
    candidates = rank_candidates(result.variants, prepared.name, spec.name, objective, limits)
    if not candidates["eligible"].any():
        choose(result.variants, prepared.name, spec.name, objective, limits)  # raises, naming the closest miss
    feeds = validation_inputs(prepared, sweep_options.get("inputs"), sweep_options.get("seed", 0))
    mcpu = PORTABLE_MCPU if portable else resolve_mcpu()
    say = (lambda line: print(line, flush=True)) if progress else None
    row = build = loss = None
    for i in candidates.index[candidates["eligible"]]:
        strategy = get_strategy(candidates.loc[i, "strategy"])
        cal = calibrate(prepared, sweep_options.get("calibration") or sweep_options.get("inputs")) \
            if strategy.calibrated else None
        build = ensure_library(prepared, strategy, spec, mcpu, cal, progress=say)
        loss = worst_accuracy_loss(prepared, build.library, feeds)
        if loss <= limits.max_accuracy_loss_pct or strategy.precision == "fp32":
            row = candidates.loc[i]
            break
        candidates.loc[i, ["eligible", "ineligible_because"]] = (
            False, f"accuracy loss {loss:.3g}% over the limit of {limits.max_accuracy_loss_pct:g}% on one of "
                   f"{len(feeds)} validation inputs")
    if row is None:
        raise ExplorerError(f"no variant of {prepared.name} on {spec.name} keeps its accuracy within "
                            f"{limits.max_accuracy_loss_pct:g}% on {len(feeds)} validation inputs")
    candidates = candidates.sort_values(["eligible", "objective_value"], ascending=[False, True], na_position="last")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build.library, out / "model.so")
    shutil.copyfile(RUNNER, out / "run.py")
    (out / "inputs").mkdir(exist_ok=True)
    for spec_in in prepared.inputs:
        np.save(out / "inputs" / f"{spec_in.name}.npy", feeds[0][spec_in.name])
    measured = finite(row["measured_latency_s"])
    manifest = Manifest(
        model={"name": prepared.name, "sha256": prepared.sha256},
        strategy={"name": strategy.name, **strategy.axes()},
        target={"name": spec.name, "mcpu": mcpu, "portable": portable, "measured_build_mcpu": resolve_mcpu()},
        tvm_version=tvm_version(), explorer_version=__version__, library="model.so",
        inputs=[{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in prepared.inputs],
        outputs=[o.name for o in prepared.load().graph.output],
        objective=objective,
        limits={"max_latency_ms": None if limits.max_latency_s is None else limits.max_latency_s * 1e3,
                "max_accuracy_loss_pct": limits.max_accuracy_loss_pct},
        energy_j=finite(row["energy_j"]), energy_p05_j=finite(row["energy_p05_j"]),
        energy_p95_j=finite(row["energy_p95_j"]), modelled_latency_s=finite(row["latency_s"]),
        measured_latency_s=measured, measured_on=(host_cpu().model_name or "unknown") if measured is not None else None,
        threads=int(row["tvm_threads"]) if finite(row["tvm_threads"]) else None,
        accuracy_loss_pct=loss, accuracy_inputs=len(feeds), max_accuracy_loss_pct=limits.max_accuracy_loss_pct,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    manifest.write(out / "manifest.json")
    return Exported(out, manifest, candidates, compiled_now=not build.was_cached)


#: Inputs a chosen build is checked on before it is exported: the sweep's check input and more.
VALIDATION_INPUTS = 4


def validation_inputs(prepared, inputs: str | Path | None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The check input of the sweep (first) and more: the samples of ``inputs`` (up to
    :data:`VALIDATION_INPUTS`), else seeded samples."""
    if inputs:
        from explorer.model.samples import load_samples

        return load_samples(prepared, inputs)[:VALIDATION_INPUTS]
    return [prepared.sample_inputs(seed + i) for i in range(VALIDATION_INPUTS)]


def worst_accuracy_loss(prepared, library: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    """The largest ``accuracy_loss_pct`` of ``library``'s outputs against onnxruntime's over ``feeds``."""
    from explorer.scoring.accuracy import accuracy_metrics
    from explorer.sweep.reference import reference_outputs
    from explorer.tvm.runtime import library_outputs

    worst = 0.0
    for feed in feeds:
        outputs = library_outputs(library, [feed[i.name] for i in prepared.inputs])
        worst = max(worst, accuracy_metrics(outputs, reference_outputs(prepared, feed))["accuracy_loss_pct"])
    return worst
