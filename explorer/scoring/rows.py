"""From cached lowerings to result rows: scores, status, accuracy and the per-kernel table.

Everything here is cheap and recomputed on every run: a variant's row is its lowering (from the
worker or the cache) scored on one target, with the status a person reads, the accuracy against the
onnxruntime reference and the measured latency beside onnxruntime's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from cost_models import energy, sparsity
from cost_models.energy import Totals
from cost_models.interconnect import workload_devices
from cost_models.spec import TargetSpec
from explorer.core.strategies import Strategy
from explorer.core.variant import Failure, Lowering, Measurement, Status, StatusKind
from explorer.scoring import picks as schedules
from explorer.scoring.accuracy import accuracy_metrics

#: Relative tolerance of the numerical check against onnxruntime (fp32).
RTOL = 1e-3

#: Status kinds (their values) that leave a variant without trustworthy numbers: none, or wrong ones.
PROBLEM_KINDS = ("failed", "crashed", "timed-out", "mismatch")

#: The compute dtype each reduced precision needs from a target.
PRECISION_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "int8": "int8", "int8w-fp16": "float16", "int4w-fp16": "float16",
                   "int8w-bf16": "bfloat16", "int4w-bf16": "bfloat16", "fp8": "float8_e4m3fn",
                   "mxfp4-bf16": "bfloat16"}

IDENTITY_COLUMNS = ("model", "strategy", "target", "fusion", "layout", "precision", "tuning", "sparsity", "phase", "batch",
                    "devices", "status", "status_kind", "built", "ran")
#: Per sample (a batch element) and, for a decoder's phase, per token: energy, rate and the KV cache; and
#: performance per watt: inferences (samples) and GFLOP per joule, and the mean power the energy implies.
THROUGHPUT_COLUMNS = ("tokens", "kv_cache_bytes", "kv_cache_dtype", "energy_per_sample_j", "samples_per_s", "measured_samples_per_s",
                      "inferences_per_j", "gflop_per_j", "mean_power_w",
                      "energy_per_token_j", "tokens_per_j", "tokens_per_s", "measured_tokens_per_s")
MEASURED_COLUMNS = (
    "planned_memory_bytes", "constant_bytes", "max_abs_error", "tolerance", "within_tolerance", "sqnr_db", "accuracy_loss_pct",
    "argmax_agreement", "next_token_agreement", "meets_accuracy", "compile_s", "check_run_s", "measured_latency_s", "measured_latency_spread",
    "latency_source", "kernel_time_share", "useful_macs", "tensorized_share", "weight_density",
    "onnxruntime_latency_s", "latency_vs_onnxruntime", "onnxruntime_int8_latency_s", "tvm_threads", "onnxruntime_threads", "node",
    "tuned_kernels", "reused_kernels", "tuning_trials", "model_hash", "tvm_version")
#: The columns of ``variants.csv``, in order.
VARIANT_COLUMNS = [*IDENTITY_COLUMNS, *Totals.COLUMNS, "energy_p05_j", "energy_p95_j", *THROUGHPUT_COLUMNS,
                   *MEASURED_COLUMNS]


def _useful_work(workload) -> tuple[float, float, float]:
    """``(useful MACs, of them tensorized, of them in a matrix-unit dtype)`` of a variant's kernels: a
    kernel padded to the tensor-core tile executes more MACs than it needs (its ``macs``), and each of
    its useful ones is tensorized, or in a matrix dtype, in the share its executed ones are."""
    executed = workload["macs"].where(workload["macs"] > 0)
    useful = workload["useful_macs"] if "useful_macs" in workload else workload["macs"]
    tensorized = (workload["tensorized_macs"] / executed).fillna(0.0).clip(0, 1)
    matrix_cols = [c for c in workload.columns if c.startswith("op_mac_") and c.removeprefix("op_mac_") in MATRIX_DTYPES]
    matrix = (workload[matrix_cols].sum(axis=1) / executed).fillna(0.0).clip(0, 1) if matrix_cols else 0.0 * useful
    return float(useful.sum()), float((useful * tensorized).sum()), float((useful * matrix).sum())


def base_row(model: str, strategy: Strategy, target: str) -> dict:
    """A variant row with its identity filled in and everything else empty."""
    row = dict.fromkeys(VARIANT_COLUMNS)
    row.update(model=model, strategy=strategy.name, target=target, **strategy.axes(), built=False, ran=False)
    return row


def throughput(row: dict, batch: int, tokens: int) -> dict:
    """The :data:`THROUGHPUT_COLUMNS` of a scored row: per sample of the ``batch`` and, where the model is a
    decoder's phase producing ``tokens`` per inference, per token (measured rates where it was measured)."""
    energy_j, latency_s, measured_s = (row.get(c) for c in ("energy_j", "latency_s", "measured_latency_s"))

    def per(n, x):
        return None if x is None or not n or not np.isfinite(x) or x <= 0 else n / x

    # the time the static power was charged over: measured where the variant ran on its own hardware
    charged_s = measured_s if row.get("latency_source") == "measured" else latency_s
    devices = row.get("devices") or 1  # the energy is every device's; the power one device's
    out = {"energy_per_sample_j": None if energy_j is None else energy_j / max(batch, 1),
           "samples_per_s": per(batch, latency_s), "measured_samples_per_s": per(batch, measured_s),
           "inferences_per_j": per(batch, energy_j), "gflop_per_j": per((row.get("flops") or 0) / 1e9, energy_j),
           "mean_power_w": None if energy_j is None or not charged_s else energy_j / charged_s / devices}
    if tokens:
        out.update(tokens=tokens, energy_per_token_j=None if energy_j is None else energy_j / tokens,
                   tokens_per_j=per(tokens, energy_j), tokens_per_s=per(tokens, latency_s),
                   measured_tokens_per_s=per(tokens, measured_s))
    return out


def failed_row(row: dict, status: Status) -> dict:
    """``row`` for a variant that produced no numbers."""
    return {**row, "status": status.text, "status_kind": status.kind.value}


#: A GPU variant with less than this share of its low-precision multiply-adds on tensor or matrix units
#: is flagged: its figures are those of SIMT kernels, whatever the hardware's matrix units could do.
MIN_TENSORIZED_SHARE = 0.5
#: The dtypes whose multiply-adds a GPU's peak rate assumes on tensor or matrix units.
MATRIX_DTYPES = frozenset({"float16", "bfloat16", "int8", "uint8", "float8_e4m3fn"})


def row_dtypes(workload: pd.DataFrame) -> list[str]:
    """The dtypes of a workload's multiply-adds (from its ``op_mac_<dtype>`` columns with work)."""
    return [c.removeprefix("op_mac_") for c in workload.columns if c.startswith("op_mac_") and workload[c].sum() > 0]


#: Per GPU code generator: its name in a status, and what built its code where nothing failed.
_GPU_BUILDS = {"cuda": ("CUDA", "built with nvcc"), "rocm": ("ROCm", "built by TVM's AMDGPU code generator and ld.lld")}


def _build_status(lowering: Lowering, target: TargetSpec, row: dict) -> Status:
    if target.tvm == "none":
        return Status(StatusKind.ANALYSED, "analysed from lowered TIR (not built)")
    if target.tvm in _GPU_BUILDS:
        name, built = _GPU_BUILDS[target.tvm]
        if lowering.build_error:
            return Status(StatusKind.CODEGEN_FAILED, f"analysed from {name} TIR; not built here "
                                                     f"({lowering.build_error[:200]})")
        if not lowering.built:
            return Status(StatusKind.ANALYSED, f"analysed from {name} TIR (not built)")
        if lowering.nvcc_error:
            return Status(StatusKind.CODEGEN_FAILED, f"analysed; CUDA source not compiled ({lowering.nvcc_error})")
        row["built"] = True
        return Status(StatusKind.BUILT_NOT_RUN, f"{built} (not run: no GPU here)")
    row["built"] = lowering.built
    return Status(StatusKind.ANALYSED if not lowering.built else StatusKind.BUILT_NOT_RUN)


def _checked(row: dict, run: Measurement, reference: list[np.ndarray], status: Status) -> Status:
    """Fill the run's columns: accuracy against ``reference`` and the measured latency."""
    row["ran"] = True
    row["check_run_s"] = round(run.check_run_s, 4)
    row["tvm_threads"] = run.threads
    row["node"] = run.node or row.get("node")
    if run.latency_runs_s:
        runs = run.latency_runs_s
        row["measured_latency_s"] = float(np.median(runs))
        row["measured_latency_spread"] = float((max(runs) - min(runs)) / np.median(runs))
        if row.get("onnxruntime_latency_s"):
            row["latency_vs_onnxruntime"] = row["measured_latency_s"] / row["onnxruntime_latency_s"]
    row.update(accuracy_metrics(run.outputs, reference))
    if row.get("phase") and run.outputs and reference:  # a decoder's first output is its logits
        row["next_token_agreement"] = accuracy_metrics(run.outputs[:1], reference[:1])["argmax_agreement"]
    status = dataclasses.replace(status, kind=StatusKind.OK)
    if row["precision"] != "fp32" or row.get("sparsity") not in (None, "none"):  # judged by its accuracy
        return status
    # full precision must match the reference to rounding
    tols = [RTOL * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0) for want in reference]
    row["tolerance"] = min(tols) if tols else 0.0
    row["within_tolerance"] = row["max_abs_error"] <= row["tolerance"]
    if not row["within_tolerance"]:
        return Status(StatusKind.MISMATCH, f"max abs error {row['max_abs_error']:.3g} > tolerance {row['tolerance']:.3g}")
    return status


def measured_per_call(kernels: pd.DataFrame, run: Measurement | None) -> list[float]:
    """Each row's measured seconds (:attr:`Measurement.kernel_calls_s`), NaN where not measured: the
    k-th call of a kernel in call order is the k-th timed call of that name."""
    timed: dict[str, list[float]] = {}
    for name, seconds in run.kernel_calls_s if run is not None else []:
        timed.setdefault(name, []).append(seconds)
    out = [float("nan")] * len(kernels)
    seen: dict[str, int] = {}
    for pos in np.argsort(kernels["call_index"].to_numpy(), kind="stable"):
        name = kernels["kernel"].iloc[pos]
        k = seen.get(name, 0)
        seen[name] = k + 1
        if k < len(timed.get(name, [])):
            out[pos] = timed[name][k]
    return out


def run_times(scored: pd.DataFrame, measured_s: list[float], latency_s: float) -> np.ndarray:
    """Each call's share of the variant's measured end-to-end ``latency_s``, the time its static power
    is charged over: its measured time (``measured_s``) scaled so that the calls add up to the whole
    inference (the VM's own work between calls included), or, where a call was not timed, its modelled
    latency scaled the same way."""
    measured = np.asarray(measured_s, float)
    basis = measured if np.isfinite(measured).all() and measured.sum() > 0 else scored["latency_s"].to_numpy(float)
    return basis * (latency_s / basis.sum()) if basis.sum() > 0 else np.full(len(basis), latency_s / max(len(basis), 1))


def kernel_frame(lowering: Lowering, scored: pd.DataFrame, row: dict, run: Measurement | None = None) -> pd.DataFrame:
    """The per-kernel table of one variant on one target: its scored workload, with the operators
    each call covers, the intermediates fusion eliminated and, where the build ran, each call's
    measured time (``measured_s``)."""
    kernels = scored.drop(columns=["gathered_nest"], errors="ignore")  # an analysis record, not a figure
    calls = {c.index: c for c in lowering.calls}
    kernels["ops"] = [" + ".join(calls[i].members) for i in kernels["call_index"]]
    kernels["eliminated"] = [" ".join(calls[i].eliminated) for i in kernels["call_index"]]
    kernels["measured_s"] = measured_per_call(kernels, run)
    for col in ("model", "strategy", "target"):
        kernels.insert(0, col, row[col])
    return kernels


def _weight_density(workload: pd.DataFrame) -> float | None:
    """The share of a variant's weight bytes that are not zero (over the kernels that read weights)."""
    if "weight_density" not in workload or workload["weight_bytes"].sum() <= 0:
        return None
    return float((workload["weight_density"] * workload["weight_bytes"]).sum() / workload["weight_bytes"].sum())


def variant_row(row: dict, result: Lowering | Failure, target: TargetSpec, reference: list[np.ndarray] | None,
                run: Measurement | Failure | None = None) -> tuple[dict, pd.DataFrame]:
    """Score ``result`` on ``target`` into ``row`` (from :func:`base_row`), with the build's ``run``
    on this machine checked against ``reference``; return the row and the kernels."""
    if isinstance(result, Failure):
        return failed_row(row, result.status), pd.DataFrame()
    workload = result.workload
    if isinstance(run, Measurement) and run.latency_runs_s and target.describes_host:
        measured = measured_per_call(workload, run)
        timed = np.isfinite(measured).all() and sum(measured) > 0
        modelled = workload if timed else energy.score(workload, target)  # the model's shares stand in
        workload = workload.assign(run_time_s=run_times(modelled, measured, float(np.median(run.latency_runs_s))))
    workload, effect = sparsity.effective_workload(workload, target, row.get("sparsity") or "none")
    scored = energy.score(workload, target)
    devices = workload_devices(workload)
    measured = (scored["latency_source"] == "measured").all()
    sums = energy.totals(scored)
    row.update((sums if measured else energy.power_capped(sums, target, devices)).row())
    row["devices"] = devices
    row["latency_source"] = "measured" if measured else "modelled"
    row["planned_memory_bytes"] = result.planned_bytes
    row["constant_bytes"] = result.constant_bytes
    if result.tuning is not None:
        row.update(tuned_kernels=result.tuning.tuned, reused_kernels=result.tuning.reused,
                   tuning_trials=result.tuning.trials)
    row["compile_s"] = round(result.compile_s, 3)
    row["node"] = result.node or None
    status = _build_status(result, target, row)
    if row.get("sparsity") not in (None, "none"):
        status = status.noted(effect.note(target))
        row["weight_density"] = _weight_density(result.workload)
    if isinstance(run, Measurement) and reference is not None:
        status = _checked(row, run, reference, status)
    elif isinstance(run, Failure):
        status = status.noted(f"not run: {run.status.detail}")
    if row["tuning"] != "none" and target.tvm != "llvm":
        status = status.noted("not tuned: MetaSchedule needs a GPU here to measure candidates (DLight schedules used)")
    macs = float(result.workload["macs"].sum()) if "macs" in result.workload else 0.0
    if macs > 0:
        useful, tensorized, matrix = _useful_work(result.workload)
        row["useful_macs"] = useful
        row["tensorized_share"] = tensorized / useful if useful > 0 else 0.0
        if target.tvm in ("cuda", "rocm") and matrix > 0 and tensorized < MIN_TENSORIZED_SHARE * matrix:
            status = status.noted(f"not tensorized: {min(tensorized / matrix, 1):.0%} of the "
                                  f"{'/'.join(sorted(MATRIX_DTYPES & set(row_dtypes(result.workload))))} multiply-adds "
                                  f"on {target.name}'s tensor/matrix units (the rest on SIMT lanes: GEMVs of 4 rows or "
                                  "fewer by design, anything else a schedule gap, not the hardware's)")
    dtype = PRECISION_DTYPE.get(row["precision"])
    if dtype and dtype not in target.dtypes and status.kind is not StatusKind.MISMATCH:
        status = status.emulated(f"{target.name} has no {dtype} unit (see its target file): charged as emulated")
    row["status"], row["status_kind"] = status.text, status.kind.value
    kernels = kernel_frame(result, scored, row, run if isinstance(run, Measurement) else None)
    if row.get("measured_latency_s") and kernels["measured_s"].notna().any():
        row["kernel_time_share"] = float(kernels["measured_s"].sum() / row["measured_latency_s"])
    return row, kernels


def tuning_tables(result: Lowering | Failure, scoring: TargetSpec, model: str, strategy: str
                  ) -> dict[str, pd.DataFrame]:
    """For a tuned variant, ``schedules`` (per kernel, the latency-, energy- and EDP-best candidate)
    and ``candidates`` (every scored candidate), scored on ``scoring``; empty otherwise."""
    if isinstance(result, Failure) or result.tuning is None or not len(result.tuning.candidates):
        return {}
    choice = schedules.choose(result.tuning.candidates, scoring)
    return {name: table.assign(model=model, strategy=strategy)
            for name, table in (("schedules", choice.table), ("candidates", choice.candidates)) if len(table)}


def rank(variants: pd.DataFrame, kernels: pd.DataFrame, specs: dict[str, TargetSpec], seed: int) -> pd.DataFrame:
    """Sample every target's figure ranges: each variant's energy percentiles go into ``variants``
    (in place); the returned table says, per pair of variants of a model on a target, in what share
    of samples the nominally cheaper one stays cheaper."""
    from cost_models import uncertainty

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
