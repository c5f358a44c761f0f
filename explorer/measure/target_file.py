"""Writing a calibrated target file: a copy of the cited one, its comments and layout kept (tomlkit), with
the fitted figures' values and notes replaced, a header saying where and when they were measured, and a
``[calibration]`` table. The cited file is never written."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tomlkit

from cost_models.spec import TargetSpec
from cost_models.targets import TARGETS_DIR, load_target
from explorer.core.errors import ExplorerError
from explorer.measure.fitted import Calibration


def _figure_table(doc: tomlkit.TOMLDocument, path: str):
    """The table (or inline table) of the figure at dotted ``path`` in a target file's document."""
    kind, *rest = path.split(".")
    if kind == "static_power_w":
        return doc["static_power_w"]
    if kind == "compute":
        dtype, _, op = rest
        unit = next(u for u in doc["compute"] if u["dtype"] == dtype)
        return unit["energy_pj"][op]
    if kind == "memory":
        name, field = rest
        return next(m for m in doc["memory"] if m["name"] == name)[field]
    raise KeyError(path)


def calibrated_text(cited: TargetSpec, values: dict[str, float], fitted: list[str], note: str, name: str,
                    header: list[str], table: dict) -> str:
    """The cited target file's text with the ``fitted`` figures' values and notes replaced, its name
    changed to ``name``, ``header`` comment lines on top and a ``[calibration]`` table at the end."""
    doc = tomlkit.parse(Path(cited.path).read_text())
    doc["name"] = name
    doc["description"] = "Calibrated: " + cited.description
    figs = cited.figures()
    for path in fitted:
        fig = figs[path]
        entry = _figure_table(doc, path)
        entry["value"] = min(max(float(f"{values[path]:.6g}"), fig.low), fig.high)
        entry["note"] = f"{note} Cited: {fig.value!r}." + (f" {fig.note}" if "note" in entry else "")
    calibration = tomlkit.table()
    for key, value in table.items():
        if value is not None:
            calibration[key] = value
    doc["calibration"] = calibration
    top = "\n".join("# " + h if h else "#" for h in header)
    return top + "\n\n" + tomlkit.dumps(doc)


def write_calibrated_target(cal: Calibration, out: str | Path, name: str | None = None) -> Path:
    """Write ``cal``'s figures as a copy of the cited target file at ``out`` (never the cited file, nor a
    shipped target that is not itself a calibrated copy); the written file is read back and checked."""
    out = Path(out)
    cited = Path(cal.target.path).resolve()
    if out.resolve() == cited:
        raise ExplorerError(f"refusing to write the calibration over the cited file {cited}: give another path")
    if out.exists() and out.resolve().parent == TARGETS_DIR.resolve() and "[calibration]" not in out.read_text():
        raise ExplorerError(f"refusing to overwrite the shipped target {out.name}: give another path")
    p = cal.provenance
    clocks = f"SM {p.get('sm_clock_mhz')} MHz, memory {p.get('mem_clock_mhz')} MHz"
    note = (f"Calibrated on {p.get('gpu')} (driver {p.get('driver')}, clocks {clocks}, power limit "
            f"{p.get('power_limit_w')} W) on {p.get('measured')} from {p.get('results')} ({cal.summary['variants']} "
            f"variants, {cal.summary['models']} models; explorer calibrate, bounded to the cited range).")
    header = [f"Calibrated copy of {cal.target.file or cal.target.name}.toml written by `explorer calibrate` on "
              f"{time.strftime('%Y-%m-%d')}: the energy figures listed in [calibration].fitted were fitted",
              f"(bounded least squares within each cited [low, high]) to energy measured with NVML on {p.get('gpu')},",
              f"driver {p.get('driver')}, {clocks}, power limit {p.get('power_limit_w')} W, measured {p.get('measured')}",
              f"on {p.get('host')}, from {p.get('results')}. Mean absolute error: "
              f"{cal.summary['mean_abs_error_pct_cited']:.3g}% with the cited figures, "
              f"{cal.summary['mean_abs_error_pct_lomo']:.3g}% after calibration (leave-one-model-out).",
              f"The cited file {cal.target.path} is unchanged; every other figure here is its cited value.", ""]
    table = {"cited_file": str(cal.target.path), "gpu": p.get("gpu"), "driver": p.get("driver"),
             "cuda_driver_version": p.get("cuda_driver_version"), "sm_clock_mhz": p.get("sm_clock_mhz"),
             "mem_clock_mhz": p.get("mem_clock_mhz"), "power_limit_w": p.get("power_limit_w"),
             "idle_power_w": p.get("idle_power_w"), "measured": p.get("measured"), "host": p.get("host"),
             "results": p.get("results"), "calibrated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "variants": cal.summary["variants"], "models": cal.summary["models"], "fitted": cal.fit.fitted,
             "mean_abs_error_pct_cited": cal.summary["mean_abs_error_pct_cited"],
             "mean_abs_error_pct_lomo": cal.summary["mean_abs_error_pct_lomo"]}
    table = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in table.items()}
    name = name or f"{cal.target.name}-calibrated"
    text = calibrated_text(cal.target, cal.fit.values, cal.fit.fitted, note, name, header, table)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.toml")
    tmp.write_text(text)
    try:
        written = load_target(tmp)
    except Exception as err:
        tmp.unlink()
        raise ExplorerError(f"the calibrated target file did not load back: {err}") from None
    figs = written.figures()
    wrong = [p for p in cal.fit.fitted if not np.isclose(figs[p].value, cal.fit.values[p], rtol=1e-5, atol=0)
             and not (figs[p].value in (figs[p].low, figs[p].high))]
    if wrong:
        tmp.unlink()
        raise ExplorerError(f"could not write the fitted value of {', '.join(wrong)} into a copy of {cal.target.path}")
    tmp.replace(out)
    return out
