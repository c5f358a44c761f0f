"""Calibrating a target's energy figures to measured energy (``explorer calibrate``).

The energy model is linear in its energy figures: for a variant, each energy per operation (by kind and
dtype) multiplies the operations charged at it, each energy per byte the bytes moved at its memory
level, and static power the time (:func:`cost_models.energy.quantities` says how many of each; the
formulas are not repeated here). So each measured variant is one row of a linear system
``features x figures = measured energy per inference``, with static power charged over the variant's
measured time per inference. The fit is a bounded least squares on relative errors: every figure stays
within its cited ``[low, high]`` range, and a small pull towards the cited value (``ridge``, in units
of each range) decides directions the measurements cannot tell apart. Figures whose share of every
variant's modelled energy is below ``min_share`` are not fitted (they keep their cited values).
Microbenchmarks (a streaming add, a matmul in fp32 and fp16) make the bytes and the multiply-adds
identifiable; ``stderr_range`` says how well each fitted figure is determined (its standard error as a
share of its range were every measurement 1% off: above ~0.3 the pull to the cited value decides it).

The model's error is reported before (the cited figures, as the bundle predicted) and after
calibration, leave-one-model-out: each model's variants predicted by a fit to the other models only.
:func:`write_calibrated_target` writes a copy of the cited target file with the fitted values, each
fitted figure's note saying where and when it was measured, and a ``[calibration]`` table; it never
writes over the cited file (:mod:`explorer.measure.target_file`). The bounded least squares is scipy's
``lsq_linear`` with its BVLS solver (Stark & Parker 1995).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from cost_models import energy
from cost_models.spec import TargetSpec
from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from explorer.measure.agreement import spearman
from explorer.measure.fitted import Calibration, Fit
from explorer.measure.target_file import write_calibrated_target

PJ = energy.PJ

#: Default pull towards the cited values, in units of each figure's range (relative to the data's weight).
RIDGE = 1e-3

#: Figures below this share of every variant's modelled energy are left at their cited value.
MIN_SHARE = 0.005


def energy_paths(target: TargetSpec) -> list[str]:
    """The figures the energy model charges: energy per operation, per byte, and static power."""
    return [p for p in target.figures() if ".energy_pj." in p or p.endswith(".energy_pj_per_byte") or p == "static_power_w"]


def features(workload: pd.DataFrame, target: TargetSpec, time_s: float) -> dict[str, float]:
    """What one unit of each energy figure adds to one inference (J per pJ, per pJ/B or per W): operations
    and bytes from :func:`cost_models.energy.quantities`, static power over ``time_s``."""
    q = energy.quantities(workload, target)
    out = dict.fromkeys(energy_paths(target), 0.0)
    for path, counts in q.op_counts.items():
        out[path] += float(np.sum(counts)) * PJ
    for level in target.memory:
        out[f"memory.{level.name}.energy_pj_per_byte"] += float(np.sum(q.level_bytes[level.name])) * PJ
    out["static_power_w"] = float(time_s)
    return out


def fit_figures(rows: list[dict[str, float]], measured: np.ndarray, target: TargetSpec, ridge: float = RIDGE,
                min_share: float = MIN_SHARE, fit_only: list[str] | None = None) -> Fit:
    """Fit the energy figures of ``target`` to ``measured`` energies (J per inference), one per feature row
    (:func:`features`), within each figure's [low, high]."""
    figs = target.figures()
    paths = energy_paths(target)
    x0 = np.array([figs[p].value for p in paths])
    lo = np.array([figs[p].low for p in paths])
    hi = np.array([figs[p].high for p in paths])
    a = np.array([[r.get(p, 0.0) for p in paths] for r in rows], float)
    y = np.asarray(measured, float)
    if (y <= 0).any() or not np.isfinite(y).all():
        raise ExplorerError("every measured energy must be a positive number")
    share = (a * x0) / np.maximum((a * x0).sum(axis=1, keepdims=True), 1e-300)
    top = share.max(axis=0) if len(rows) else np.zeros(len(paths))
    wanted = (top > 0) & (top >= min_share)
    if fit_only is not None:
        wanted &= np.isin(paths, fit_only)
    free = wanted & (hi > lo)
    w = 1.0 / y  # relative errors
    fixed_part = a[:, ~free] @ x0[~free]
    span = hi[free] - lo[free]
    design = (a[:, free] * span) * w[:, None]
    target_vec = (y - fixed_part - a[:, free] @ lo[free]) * w
    z0 = (x0[free] - lo[free]) / span
    k = int(free.sum())
    scale = max(float(np.linalg.norm(design)) ** 2 / max(k, 1), 1e-300)
    lam = np.sqrt(ridge * scale)
    aug = np.vstack([design, lam * np.eye(k)])
    rhs = np.concatenate([target_vec, lam * z0])
    z = lsq_linear(aug, rhs, bounds=(0.0, 1.0), method="bvls").x if k else np.zeros(0)
    x = x0.copy()
    x[free] = lo[free] + span * z
    stderr = {}
    if k:  # the standard error of each fitted figure, as a share of its range, were each measurement 1% off
        cov = np.linalg.pinv(aug.T @ aug)
        for p, s in zip(np.array(paths)[free], 0.01 * np.sqrt(np.clip(np.diag(cov), 0, None))):
            stderr[str(p)] = float(s)
    return Fit(dict(zip(paths, map(float, x))), [str(p) for p in np.array(paths)[free]], stderr)


def predict(rows: list[dict[str, float]], values: dict[str, float]) -> np.ndarray:
    """Energy per inference of each feature row under figure ``values``."""
    return np.array([sum(r.get(p, 0.0) * v for p, v in values.items()) for r in rows])


def _measured_rows(bundle: Path, results: dict, target: TargetSpec) -> tuple[list[dict], list[dict[str, float]], np.ndarray]:
    """The variants with a measured energy, their features and measured energies."""
    kernels_csv = bundle / "predictions" / "kernels.csv"
    if not kernels_csv.is_file():
        raise ExplorerError(f"{bundle} has no predictions/kernels.csv: not a measurement bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    by_id = {v["id"]: v for v in manifest["variants"]}
    kernels = pd.read_csv(kernels_csv, low_memory=False)
    meta, rows, y = [], [], []
    for entry in results.get("variants", []):
        value = entry.get("energy_j")
        if entry.get("status") != "ok" or value is None or entry["id"] not in by_id:
            continue
        workload = kernels[kernels["variant"] == entry["id"]]
        if workload.empty:
            continue
        time_s = entry.get("throughput_latency_s") or entry.get("latency_s")
        rows.append(features(workload, target, time_s))
        v = by_id[entry["id"]]
        meta.append({"id": v["id"], "model": v["model"], "strategy": v["strategy"], "micro": bool(v.get("micro")),
                     "measured_j": float(value), "cited_j": (v.get("predicted") or {}).get("energy_j"),
                     "measured_time_s": time_s})
        y.append(float(value))
    if not rows:
        raise ExplorerError("the results hold no measured energy of this bundle's variants (energy is measured on "
                            "CUDA with NVML); nothing to calibrate")
    return meta, rows, np.array(y)


def provenance_of(results: dict, results_path: str | Path) -> dict:
    """Where and when the measurements were made, from the runner's results."""
    dev = results.get("device", {})
    clocks = dev.get("clocks_mhz") or {}
    return {"gpu": dev.get("name") or dev.get("cuda_name") or dev.get("kind"), "driver": dev.get("driver"),
            "cuda_driver_version": dev.get("cuda_driver_version"), "sm_clock_mhz": clocks.get("sm"),
            "mem_clock_mhz": clocks.get("mem"), "max_clocks_mhz": dev.get("max_clocks_mhz"),
            "application_clocks_mhz": dev.get("application_clocks_mhz"), "power_limit_w": dev.get("power_limit_w"),
            "measured": results.get("date"), "host": results.get("host"), "results": str(results_path),
            "idle_power_w": float(np.mean([i["power_w"] for i in results.get("idle", [])])) if results.get("idle") else None}


def calibrate_target(bundle: str | Path, results: str | Path | dict, target: str | TargetSpec | None = None,
                     ridge: float = RIDGE, min_share: float = MIN_SHARE, out: str | Path | None = None,
                     results_path: str | Path | None = None) -> Calibration:
    """Fit ``target``'s energy figures (default: the bundle's target) to the runner's ``results`` of
    ``bundle`` (a path to results.json or its parsed dict), with leave-one-model-out errors; with ``out``
    also write the calibrated target file (:func:`write_calibrated_target`)."""
    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise ExplorerError(f"{bundle} is not a measurement bundle (no manifest.json)")
    if not isinstance(results, dict):
        results_path = results_path or results
        try:
            results = json.loads(Path(results).read_text())
        except (OSError, ValueError) as err:
            raise ExplorerError(f"cannot read the results {results}: {err}") from None
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = target if isinstance(target, TargetSpec) else load_target(target or manifest["target"]["name"])
    meta, rows, y = _measured_rows(bundle, results, spec)
    full = fit_figures(rows, y, spec, ridge, min_share)
    cited = {p: f.value for p, f in spec.figures().items() if p in full.values}
    models = [m["model"] for m in meta]
    lomo = np.full(len(rows), np.nan)
    for model in dict.fromkeys(models):
        held = np.array([m == model for m in models])
        if held.all():
            continue
        part = fit_figures([r for r, h in zip(rows, held) if not h], y[~held], spec, ridge, min_share)
        lomo[held] = predict([r for r, h in zip(rows, held) if h], part.values)
    table = pd.DataFrame(meta)
    table["cited_measured_time_j"] = predict(rows, cited)
    table["lomo_j"] = lomo
    table["fitted_j"] = predict(rows, full.values)
    for col in ("cited_j", "cited_measured_time_j", "lomo_j", "fitted_j"):
        table[f"{col.removesuffix('_j')}_error_pct"] = 100 * (pd.to_numeric(table[col], errors="coerce") / table["measured_j"] - 1)
    figs = spec.figures()
    figures = pd.DataFrame([{"figure": p, "cited": figs[p].value, "low": figs[p].low, "high": figs[p].high,
                             "fitted": full.values[p], "moved_pct": 100 * (full.values[p] / figs[p].value - 1) if figs[p].value else 0.0,
                             "fitted_here": p in full.fitted, "stderr_range": full.stderr_range.get(p)}
                            for p in energy_paths(spec)])

    def mape(col):
        v = table[col].abs()
        return float(v.mean()) if v.notna().any() else float("nan")

    summary = {"variants": len(table), "models": len(set(models)), "fitted_figures": len(full.fitted),
               "mean_abs_error_pct_cited": mape("cited_error_pct"),
               "mean_abs_error_pct_cited_measured_time": mape("cited_measured_time_error_pct"),
               "mean_abs_error_pct_lomo": mape("lomo_error_pct"),
               "mean_abs_error_pct_in_sample": mape("fitted_error_pct"),
               "spearman_cited": spearman(table["cited_j"], table["measured_j"]),
               "spearman_lomo": spearman(table["lomo_j"], table["measured_j"])}
    result = Calibration(spec, figures, table, summary, provenance_of(results, results_path or "results"), full)
    if out is not None:
        write_calibrated_target(result, out)
    return result
