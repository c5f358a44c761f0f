"""Sweeps: every (model, strategy, target) variant compiled, analysed, checked and scored.

One lowering serves several targets: the CPU and analysis-only targets share the generic TIR (the
workload is target-neutral), the GPU has its own (DLight-scheduled). Each lowering runs in a
persistent worker process so that a crash inside TVM fails one variant, not the sweep. Every
finished variant is written to the results store at once, and a rerun with the same ``--out``
reuses what is there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd

from cost_models import energy, uncertainty
from cost_models.targets import TargetSpec, load_target

from . import __version__
from .accuracy import accuracy_metrics
from .calibration import calibrate
from .errors import ExplorerError
from .loading import PreparedModel, onnxruntime_latency, prepare, reference_outputs
from .strategies import Strategy, parse_strategies

#: Relative tolerance of the numerical check against onnxruntime (fp32).
RTOL = 1e-3

#: Timed repeats per CPU variant (after a warm-up), each the mean over at least 0.2 s; also for onnxruntime.
TIMED_RUNS = 5

#: The compute dtype each reduced precision needs from a target.
PRECISION_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "int8": "int8"}

VARIANT_COLUMNS = [
    "model", "strategy", "target", "fusion", "layout", "precision", "tuning", "status", "built", "ran",
    "kernels", "macs", "flops", "dram_bytes", "onchip_bytes", "weight_bytes", "energy_j",
    "energy_compute_j", "energy_memory_j", "energy_dram_j", "energy_onchip_j", "energy_static_j",
    "energy_p05_j", "energy_p95_j", "compulsory_energy_j", "compulsory_ratio", "casts", "energy_cast_j",
    "latency_s", "bound", "planned_memory_bytes", "max_abs_error", "tolerance", "within_tolerance",
    "sqnr_db", "accuracy_loss_pct", "argmax_agreement", "meets_accuracy",
    "compile_s", "check_run_s", "measured_latency_s", "measured_latency_spread", "onnxruntime_latency_s",
    "latency_vs_onnxruntime", "tuned_kernels", "reused_kernels", "tuning_trials", "model_hash", "tvm_version",
]


@dataclasses.dataclass
class SweepResult:
    """What a sweep produced: one row per variant and one row per kernel call."""

    variants: pd.DataFrame
    kernels: pd.DataFrame
    rankings: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    schedules: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # tuned kernels' choices
    candidates: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # every scored tuning candidate


def flavour_of(target: TargetSpec) -> str:
    """Which lowering a target's workload comes from."""
    return "cuda" if target.tvm == "cuda" else "generic"


def _target_hash(target: TargetSpec) -> str:
    return hashlib.sha256(repr(dataclasses.replace(target, path="")).encode()).hexdigest()[:12]


def variant_key(model: PreparedModel, strategy: Strategy, target: TargetSpec, tvm_version: str,
                calibration: str = "") -> str:
    """Cache key of a variant: model content, strategy choices (and the calibration of an int8
    strategy), target figures, TVM and explorer versions."""
    raw = "|".join([model.sha256, strategy.key, calibration, target.name, _target_hash(target), tvm_version,
                    __version__])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------------

def _init_worker() -> None:
    import tvm  # noqa: F401  (import once per worker: it takes seconds)


def lower_task(path: str, sha256: str, strategy: Strategy, flavour: str, build_cpu: bool,
               cuda_arch: str, build_cuda: bool, inputs: list[np.ndarray] | None,
               act_scales: tuple[float, ...] | None = None, tuning_dir: str | None = None,
               progress: bool = False) -> dict:
    """Compile, analyse and (on the CPU) run one variant. Runs in the worker; returns plain data."""
    from . import tir_analysis, tvm_compile

    out: dict = {"error": None}
    try:
        start = time.perf_counter()
        if flavour == "cuda":
            target = tvm_compile.cuda_target(cuda_arch)
            build = build_cuda
        else:
            target = tvm_compile.host_target()
            build = build_cpu
        try:
            lowered = tvm_compile.compile_variant(path, sha256, strategy, flavour, target, build=build,
                                                  act_scales=act_scales, tuning_dir=tuning_dir, progress=progress)
        except Exception as err:
            if not (build and flavour == "cuda"):
                raise
            # code generation can fail where the lowered TIR is still sound (e.g. an int8 tensor-core
            # kernel): keep the analysis and say why nothing was built
            out["build_error"] = _one_line(err)
            lowered = tvm_compile.compile_variant(path, sha256, strategy, flavour, target, build=False,
                                                  act_scales=act_scales)
        out["compile_s"] = time.perf_counter() - start
        kernels = tir_analysis.analyse_module(lowered.tir)
        out["workload"] = tir_analysis.workload_table(lowered.calls, kernels)
        out["calls"] = [dataclasses.asdict(c) for c in lowered.calls]
        out["planned_bytes"] = lowered.planned_bytes
        out["built"] = lowered.executable is not None
        out["tuning"] = lowered.tuning
        if flavour == "cuda" and lowered.executable is not None:
            out["nvcc_error"] = tvm_compile.nvcc_compile(lowered.cuda_source, cuda_arch)
        if flavour == "generic" and lowered.executable is not None and inputs is not None:
            start = time.perf_counter()
            out["outputs"] = tvm_compile.run_cpu(lowered.executable, inputs)
            out["check_run_s"] = time.perf_counter() - start
            out["measured_latency_runs_s"] = tvm_compile.time_cpu(lowered.executable, inputs, repeat=TIMED_RUNS)
    except ExplorerError as err:
        out["error"] = str(err)
    except Exception as err:  # one failing variant never stops a sweep
        out["error"] = _one_line(err)
    return out


def _one_line(err: Exception) -> str:
    last = traceback.format_exception_only(type(err), err)[-1].strip().splitlines()[-1]
    return f"{type(err).__name__}: {last[:300]}"


class _Runner:
    """Runs lower_task in a persistent spawned worker, restarting it after a crash."""

    def __init__(self, isolate: bool):
        self.isolate = isolate
        self.pool: ProcessPoolExecutor | None = None

    def __call__(self, *args) -> dict:
        if not self.isolate:
            return lower_task(*args)
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker)
        try:
            return self.pool.submit(lower_task, *args).result()
        except BrokenProcessPool:
            self.pool = None
            return {"error": "the TVM worker process crashed (a segfault inside TVM); see the worker's stderr"}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


# --------------------------------------------------------------------------------------------------
# Results store
# --------------------------------------------------------------------------------------------------

#: Tables a tuned variant carries besides its kernels (see :mod:`explorer.tuning`).
TUNING_TABLES = ("schedules", "candidates")


class ResultStore:
    """Finished variants on disk: ``DIR/results/<key>.json`` (row), ``<key>.kernels.csv`` and, for a
    tuned variant, ``<key>.schedules.csv`` and ``<key>.candidates.csv``."""

    def __init__(self, out: Path | None):
        self.dir = Path(out) / "results" if out else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _table(self, key: str, name: str) -> pd.DataFrame:
        path = self.dir / f"{key}.{name}.csv"
        return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()

    def get(self, key: str) -> tuple[dict, pd.DataFrame, dict[str, pd.DataFrame]] | None:
        """The row, kernels and tuning tables of a finished variant, or None."""
        if not self.dir or not (self.dir / f"{key}.json").exists():
            return None
        row = json.loads((self.dir / f"{key}.json").read_text())
        return row, self._table(key, "kernels"), {name: self._table(key, name) for name in TUNING_TABLES}

    def put(self, key: str, row: dict, kernels: pd.DataFrame, tables: dict[str, pd.DataFrame] | None = None) -> None:
        if not self.dir:
            return
        for name, table in [("kernels", kernels), *(tables or {}).items()]:
            if name == "kernels" or len(table):
                table.to_csv(self.dir / f"{key}.{name}.csv.tmp", index=False)
                (self.dir / f"{key}.{name}.csv.tmp").replace(self.dir / f"{key}.{name}.csv")
        (self.dir / f"{key}.json.tmp").write_text(json.dumps(row, default=_jsonable))  # last: marks it finished
        (self.dir / f"{key}.json.tmp").replace(self.dir / f"{key}.json")


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return str(x)


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------

def _base_row(model: PreparedModel, strategy: Strategy, target: TargetSpec, tvm_version: str) -> dict:
    row = {c: None for c in VARIANT_COLUMNS}
    row.update(model=model.name, strategy=strategy.name, target=target.name, **strategy.axes(),
               model_hash=model.key, tvm_version=tvm_version, built=False, ran=False)
    return row


def _kernel_frame(result: dict, scored: pd.DataFrame, row: dict) -> pd.DataFrame:
    kernels = scored.copy()
    members = {c["index"]: c for c in result["calls"]}
    kernels["ops"] = [" + ".join(members[i]["members"]) for i in kernels["call_index"]]
    kernels["eliminated"] = [" ".join(t["name"] for t in members[i]["eliminated"]) for i in kernels["call_index"]]
    for col in ("model", "strategy", "target"):
        kernels.insert(0, col, row[col])
    return kernels


def _finish_row(row: dict, result: dict, target: TargetSpec, reference: list[np.ndarray] | None) -> tuple[dict, pd.DataFrame]:
    scored = energy.score(result["workload"], target)
    tot = energy.totals(scored)
    row.update({k: tot[k] for k in ("kernels", "macs", "flops", "dram_bytes", "onchip_bytes", "weight_bytes",
                                     "energy_j", "energy_compute_j", "energy_memory_j", "energy_dram_j",
                                     "energy_onchip_j", "energy_static_j", "latency_s", "bound",
                                     "compulsory_energy_j", "compulsory_ratio", "casts", "energy_cast_j")})
    row["planned_memory_bytes"] = result["planned_bytes"]
    tuning = result.get("tuning") or {}
    if tuning:
        row.update(tuned_kernels=tuning["tuned"], reused_kernels=tuning["reused"], tuning_trials=tuning["trials"])
    row["compile_s"] = round(result["compile_s"], 3)
    status = "ok"
    if target.tvm == "none":
        status = "ok: analysed from lowered TIR (not built)"
    elif target.tvm == "cuda":
        if result.get("build_error"):
            status = f"ok: analysed from CUDA TIR; TVM's CUDA code generation failed ({result['build_error'][:160]})"
        elif not result.get("built"):
            status = "ok: analysed from CUDA TIR (not built)"
        elif result.get("nvcc_error"):
            row["built"] = False
            status = f"ok: analysed; CUDA source not compiled ({result['nvcc_error']})"
        else:
            row["built"] = True
            status = "ok: built with nvcc (not run: no GPU here)"
    else:
        row["built"] = bool(result.get("built"))
        if "outputs" in result and reference is not None:
            row["ran"] = True
            row["check_run_s"] = round(result["check_run_s"], 4)
            runs = result.get("measured_latency_runs_s") or []
            if runs:
                row["measured_latency_s"] = float(np.median(runs))
                row["measured_latency_spread"] = float((max(runs) - min(runs)) / np.median(runs))
                if row.get("onnxruntime_latency_s"):
                    row["latency_vs_onnxruntime"] = row["measured_latency_s"] / row["onnxruntime_latency_s"]
            row.update(accuracy_metrics(result["outputs"], reference))
            if row["precision"] == "fp32":  # full precision must match the reference to rounding
                tols = [RTOL * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0) for want in reference]
                row["tolerance"] = min(tols) if tols else 0.0
                row["within_tolerance"] = row["max_abs_error"] <= row["tolerance"]
                if not row["within_tolerance"]:
                    status = f"MISMATCH: max abs error {row['max_abs_error']:.3g} > tolerance {row['tolerance']:.3g}"
    if row["tuning"] != "none" and target.tvm != "llvm":
        status += "; not tuned: MetaSchedule needs a GPU here to measure candidates (DLight schedules used)"
    dtype = PRECISION_DTYPE.get(row["precision"])
    if dtype and dtype not in target.dtypes and not status.startswith("MISMATCH"):
        status += f"; {target.name} has no {dtype} unit (see its target file): charged as emulated"
    row["status"] = status
    return row, _kernel_frame(result, scored, row)


def run_sweep(models: list[str], targets: list[str] | None = None, strategies: str | list[str] | None = "all",
              out: str | Path | None = None, input_shapes: dict | None = None, check: bool = True,
              build: bool = True, progress: bool = True, isolate: bool = True, seed: int = 0,
              max_accuracy_loss: float | None = None, calibration: str | Path | None = None,
              tuning_records: str | Path | None = None) -> SweepResult:
    """Compile every model under every strategy for every target; return variant and kernel tables.

    ``targets`` are names of shipped targets or paths of target files (default ``["cpu"]``).
    ``check`` runs each CPU build once on a seeded input and compares it with onnxruntime.
    ``build=False`` analyses without generating code (faster; nothing is run).
    ``max_accuracy_loss`` (percent relative output error, see :mod:`explorer.accuracy`) fills
    ``meets_accuracy`` for every variant that ran. ``calibration`` is a directory of ``.npy``
    inputs for int8 strategies (default: seeded random inputs; see :mod:`explorer.calibration`).
    ``tuning_records`` is the MetaSchedule records directory tuned strategies read and extend
    (default: one per target in the cache; see :mod:`explorer.tuning`).
    """
    from tqdm.auto import tqdm

    specs = [load_target(t) for t in (targets or ["cpu"])]
    strats = parse_strategies(strategies)
    store = ResultStore(Path(out) if out else None)
    runner = _Runner(isolate)
    tvm_version = _tvm_version()
    rows, kernel_frames = [], []
    prepared: dict[str, PreparedModel | ExplorerError] = {}
    calibrations: dict = {}
    tuning_frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TUNING_TABLES}
    for model_name in models:  # validate every model before any work starts
        try:
            prepared[model_name] = prepare(model_name, input_shapes)
        except ExplorerError as err:
            if len(models) == 1:
                raise
            prepared[model_name] = err
    total = len(models) * len(strats) * len(specs)
    bar = tqdm(total=total, disable=not progress, unit="variant", dynamic_ncols=True)
    try:
        for model_name, model in prepared.items():
            if isinstance(model, ExplorerError):
                for s in strats:
                    for t in specs:
                        rows.append({**{c: None for c in VARIANT_COLUMNS}, "model": model_name, "strategy": s.name,
                                     "target": t.name, **s.axes(), "status": f"failed: {model}"})
                        bar.update(1)
                continue
            if any(s.precision == "int8" for s in strats):
                bar.set_description(f"{model.name} calibrating int8")
                calibrations[model_name] = calibrate(model, calibration)
            inputs = reference = ort_latency = None
            runs_cpu = build and check and any(t.tvm == "llvm" and t.runs_here for t in specs)
            if runs_cpu:
                feed = model.sample_inputs(seed)
                inputs = [feed[i.name] for i in model.inputs]
                reference = reference_outputs(model, feed)
                ort_latency = onnxruntime_latency(model, feed, TIMED_RUNS)
            for strategy in strats:
                by_flavour: dict[str, list[TargetSpec]] = {}
                for t in specs:
                    by_flavour.setdefault(flavour_of(t), []).append(t)
                for flavour, group in by_flavour.items():
                    cal = calibrations.get(model_name) if strategy.precision == "int8" else None
                    keys = [variant_key(model, strategy, t, tvm_version, cal.key if cal else "") for t in group]
                    cached = [store.get(k) for k in keys]
                    if all(c is not None for c in cached):
                        for row, kern, _ in cached:
                            rows.append(row)
                            kernel_frames.append(kern)
                            bar.update(1)
                        for name, table in cached[0][2].items():  # tuning is per strategy, not per target
                            if len(table):
                                tuning_frames[name].append(table)
                        continue
                    bar.set_description(f"{model.name} {strategy.name} {'/'.join(t.name for t in group)}")
                    build_cpu = build and any(t.tvm == "llvm" for t in group)
                    build_cuda = build and any(t.tvm == "cuda" for t in group)
                    arch = next((t.arch for t in group if t.tvm == "cuda"), "")
                    result = runner(str(model.path), model.sha256, strategy, flavour, build_cpu, arch,
                                    build_cuda, inputs if build_cpu else None, cal.scales if cal else None,
                                    str(tuning_records) if tuning_records else None, progress)
                    tuning_info = result.get("tuning") or {}
                    tables = {name: tuning_info[name].assign(model=model.name, strategy=strategy.name)
                              for name in TUNING_TABLES if len(tuning_info.get(name, ()))}
                    for name, table in tables.items():
                        tuning_frames[name].append(table)
                    for t, key in zip(group, keys):
                        row = _base_row(model, strategy, t, tvm_version)
                        if t.tvm == "llvm" and ort_latency:
                            row["onnxruntime_latency_s"] = ort_latency
                        if result.get("error"):
                            row["status"] = f"failed: {result['error']}"
                            kern = pd.DataFrame()
                        else:
                            row, kern = _finish_row(row, result, t, reference)
                        rows.append(row)
                        kernel_frames.append(kern)
                        if not result.get("error"):
                            store.put(key, row, kern, tables)  # failures are retried on the next run
                        bar.update(1)
    finally:
        bar.close()
        runner.close()
    variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    if max_accuracy_loss is not None:
        ran = variants["accuracy_loss_pct"].notna()
        variants["meets_accuracy"] = variants["meets_accuracy"].astype(object)
        variants.loc[ran, "meets_accuracy"] = variants.loc[ran, "accuracy_loss_pct"] <= max_accuracy_loss
    kernels = pd.concat([k for k in kernel_frames if len(k)], ignore_index=True) if any(len(k) for k in kernel_frames) else pd.DataFrame()
    rankings = _rank(variants, kernels, {t.name: t for t in specs}, seed)
    schedules, candidates = (pd.concat(f, ignore_index=True) if f else pd.DataFrame()
                             for f in tuning_frames.values())
    if out:
        write_results(Path(out), variants, kernels, rankings, schedules, candidates)
    return SweepResult(variants, kernels, rankings, schedules, candidates)


def _rank(variants: pd.DataFrame, kernels: pd.DataFrame, specs: dict[str, TargetSpec], seed: int) -> pd.DataFrame:
    """Sample every target's figure ranges: each variant's energy percentiles go into ``variants``
    (in place); the returned table says, per pair of variants of a model on a target, in what share
    of samples the nominally cheaper one stays cheaper."""
    frames = []
    if not len(kernels):
        return pd.DataFrame(columns=["model", "target", "lower", "higher", "nominal_ratio", "share_lower_wins"])
    for (model, target), group in kernels.groupby(["model", "target"], sort=False):
        workloads = {s: g for s, g in group.groupby("strategy", sort=False)}
        spread, pairs = uncertainty.compare(workloads, specs[target], seed=seed)
        for _, r in spread.iterrows():
            at = (variants.model == model) & (variants.target == target) & (variants.strategy == r.variant)
            variants.loc[at, ["energy_p05_j", "energy_p95_j"]] = [r.energy_p05_j, r.energy_p95_j]
        pairs.insert(0, "target", target)
        pairs.insert(0, "model", model)
        frames.append(pairs)
    return pd.concat(frames, ignore_index=True)


def sweep(models: str | list[str], **kwargs) -> pd.DataFrame:
    """Run a sweep (see :func:`run_sweep`) and return one row per variant as a DataFrame."""
    return run_sweep([models] if isinstance(models, str) else list(models), **kwargs).variants


def write_results(out: Path, variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame,
                  schedules: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> None:
    """Write ``variants.csv``, ``kernels.csv``, ``rankings.csv``, for tuned strategies
    ``schedules.csv`` (per kernel, the latency-, energy- and EDP-best candidate) and
    ``candidates.csv`` (every scored candidate) with its plot ``candidates.svg``, and ``report.md``
    into ``out``."""
    from .report import candidates_svg, markdown_report

    out.mkdir(parents=True, exist_ok=True)
    variants.to_csv(out / "variants.csv", index=False)
    kernels.to_csv(out / "kernels.csv", index=False)
    rankings.to_csv(out / "rankings.csv", index=False)
    for name, table in (("schedules", schedules), ("candidates", candidates)):
        if table is not None and len(table):
            table.to_csv(out / f"{name}.csv", index=False)
    plot = None
    if candidates is not None and len(candidates):
        plot = "candidates.svg"
        (out / plot).write_text(candidates_svg(candidates))
    (out / "report.md").write_text(markdown_report(variants, kernels, rankings, schedules, plot))


def _tvm_version() -> str:
    from importlib.metadata import version

    return version("apache-tvm")
