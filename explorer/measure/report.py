"""Predicted against measured: a bundle's manifest beside the runner's results (and Nsight Compute's DRAM
bytes where it ran), per variant and per kernel call.

:func:`measure_report` returns the tables and writes them as ``measure_variants.csv``,
``measure_kernels.csv`` and a small self-contained ``measure.html`` (rendered with Jinja2, every string escaped):

- per variant: modelled energy (with its 5-95% range) and latency beside the measured ones, their ratios,
  whether the measurement falls in the modelled range; with a calibration, the calibrated prediction
  (leave-one-model-out) too;
- per kernel call: the model's DRAM bytes beside ncu's ``dram__bytes_read.sum + dram__bytes_write.sum``
  (their ratio), and the modelled latency beside the runner's per-call time (and ncu's
  ``gpu__time_duration.sum`` where it was collected);
- Spearman's rank correlation of predicted against measured energy and latency across the variants.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.core.errors import ExplorerError
from explorer.measure.agreement import ratio, spearman
from explorer.measure.runner.bundle import BadInput
from explorer.measure.runner.ncu import bytes_per_call, parse_ncu_csv
from explorer.reports.html import ENVIRONMENT
from explorer.reports.writer import write_csv


def ncu_calls(ncu_dir: Path, variant: str) -> list[dict] | None:
    """Bytes per kernel call of ``variant`` from ``ncu_dir/<variant>.csv`` and the call order its
    ``--ncu`` run wrote (``ncu_dir/<variant>.calls.json`` or ``ncu_dir/ncu-calls.json``); None where absent."""
    csv_path = ncu_dir / f"{variant}.csv"
    if not csv_path.is_file():
        return None
    calls = None
    for name in (f"{variant}.calls.json", "ncu-calls.json"):
        path = ncu_dir / name
        if path.is_file():
            calls = json.loads(path.read_text()).get("calls", {}).get(variant)
            if calls is not None:
                break
    if calls is None:
        return None
    try:
        launches = parse_ncu_csv(csv_path.read_text(errors="replace"))
    except BadInput:
        return None
    return bytes_per_call(launches, calls)


@dataclasses.dataclass
class MeasureReport:
    """Predicted against measured: per variant, per kernel call, and a summary."""

    variants: pd.DataFrame
    kernels: pd.DataFrame
    summary: dict


def measure_report(bundle: str | Path, results: str | Path | dict, out: str | Path | None = None,
                   ncu: str | Path | None = None, calibration=None) -> MeasureReport:
    """Predicted against measured for every variant of ``bundle`` in ``results`` (see the module
    docstring); ``ncu`` is a folder of ``<variant>.csv`` ncu outputs with their call orders;
    ``calibration`` an :class:`explorer.measure.fit.Calibration` of the same results. With ``out``,
    the tables and ``measure.html`` are written there."""
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        raise ExplorerError(f"{bundle} is not a measurement bundle (no readable manifest.json)") from None
    if not isinstance(results, dict):
        try:
            results = json.loads(Path(results).read_text())
        except (OSError, ValueError) as err:
            raise ExplorerError(f"cannot read the results {results}: {err}") from None
    measured = {e["id"]: e for e in results.get("variants", [])}
    rows, kernel_rows = [], []
    for v in manifest["variants"]:
        m = measured.get(v["id"], {})
        p = v.get("predicted") or {}
        row = {"id": v["id"], "model": v["model"], "strategy": v["strategy"], "micro": bool(v.get("micro")),
               "status": m.get("status", "not measured"), "lifted": v.get("lifted"), "exact_weights": v.get("exact_weights"),
               "predicted_energy_j": p.get("energy_j"), "predicted_energy_p05_j": p.get("energy_p05_j"),
               "predicted_energy_p95_j": p.get("energy_p95_j"), "measured_energy_j": m.get("energy_j"),
               "measured_dynamic_energy_j": m.get("dynamic_energy_j"), "power_w": m.get("power_w"),
               "idle_power_w": m.get("idle_power_w"), "predicted_latency_s": p.get("latency_s"),
               "measured_latency_s": m.get("latency_s"), "throughput_latency_s": m.get("throughput_latency_s"),
               "predicted_dram_bytes": p.get("dram_bytes")}
        rows.append(row)
        timed = {}
        for name, seconds in m.get("kernel_calls_s", []):
            timed.setdefault(name, []).append(seconds)
        ncu_per_call = ncu_calls(Path(ncu), v["id"]) if ncu else None
        ncu_by_name: dict[str, list[dict]] = {}
        for call in ncu_per_call or []:
            ncu_by_name.setdefault(call["kernel"], []).append(call)
        seen: dict[str, int] = {}
        for k in v.get("kernels", []):
            i = seen.get(k["kernel"], 0)
            seen[k["kernel"]] = i + 1
            n = ncu_by_name.get(k["kernel"], [])
            got = n[i] if i < len(n) else {}
            t = timed.get(k["kernel"], [])
            kernel_rows.append({"variant": v["id"], "model": v["model"], "strategy": v["strategy"],
                                "call_index": k["call_index"], "kernel": k["kernel"],
                                "predicted_dram_bytes": k.get("dram_bytes"), "ncu_dram_read_bytes": got.get("dram_read_bytes"),
                                "ncu_dram_write_bytes": got.get("dram_write_bytes"), "ncu_dram_bytes": got.get("dram_bytes"),
                                "predicted_latency_s": k.get("latency_s"), "measured_s": t[i] if i < len(t) else None,
                                "ncu_gpu_time_s": got.get("gpu_time_s")})
    variants = pd.DataFrame(rows)
    variants["energy_ratio"] = ratio(variants["measured_energy_j"], variants["predicted_energy_j"])
    variants["latency_ratio"] = ratio(variants["measured_latency_s"], variants["predicted_latency_s"])
    lo, hi, meas = (pd.to_numeric(variants[c], errors="coerce") for c in
                    ("predicted_energy_p05_j", "predicted_energy_p95_j", "measured_energy_j"))
    variants["in_modelled_range"] = ((meas >= lo) & (meas <= hi)).where(meas.notna())
    if calibration is not None:
        cal = calibration.variants.set_index("id")
        variants["calibrated_lomo_energy_j"] = variants["id"].map(cal["lomo_j"])
        variants["calibrated_energy_j"] = variants["id"].map(cal["fitted_j"])
    kernels = pd.DataFrame(kernel_rows, columns=["variant", "model", "strategy", "call_index", "kernel", "predicted_dram_bytes",
                                                 "ncu_dram_read_bytes", "ncu_dram_write_bytes", "ncu_dram_bytes",
                                                 "predicted_latency_s", "measured_s", "ncu_gpu_time_s"])
    kernels["dram_ratio"] = ratio(kernels["ncu_dram_bytes"], kernels["predicted_dram_bytes"])
    kernels["latency_ratio"] = ratio(kernels["measured_s"], kernels["predicted_latency_s"])
    summary = {
        "variants": int(len(variants)), "measured": int((variants["status"] == "ok").sum()),
        "with_energy": int(variants["measured_energy_j"].notna().sum()),
        "spearman_energy": spearman(variants["predicted_energy_j"], variants["measured_energy_j"]),
        "spearman_latency": spearman(variants["predicted_latency_s"], variants["measured_latency_s"]),
        "median_energy_ratio": float(np.nanmedian(variants["energy_ratio"])) if variants["energy_ratio"].notna().any() else None,
        "median_latency_ratio": float(np.nanmedian(variants["latency_ratio"])) if variants["latency_ratio"].notna().any() else None,
        "median_dram_ratio": float(np.nanmedian(kernels["dram_ratio"])) if kernels["dram_ratio"].notna().any() else None,
        "device": results.get("device", {}).get("name") or results.get("device", {}).get("kind"),
        "measured_on": results.get("host"), "date": results.get("date"),
    }
    if calibration is not None:
        summary["spearman_energy_calibrated_lomo"] = spearman(variants["calibrated_lomo_energy_j"], variants["measured_energy_j"])
    report = MeasureReport(variants, kernels, summary)
    if out is not None:
        write_measure_report(report, Path(out))
    return report


def write_measure_report(report: MeasureReport, out: Path) -> None:
    """``measure_variants.csv``, ``measure_kernels.csv`` and ``measure.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(report.variants, out / "measure_variants.csv")
    write_csv(report.kernels, out / "measure_kernels.csv")
    page = ENVIRONMENT.get_template("measure.html.j2").render(summary=report.summary, variants=report.variants,
                                                              kernels=report.kernels)
    (out / "measure.html").write_text(page)
