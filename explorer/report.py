"""Human-readable reports (markdown) from sweep tables."""

from __future__ import annotations

import pandas as pd


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _fmt_j(j: float) -> str:
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j * 1e12:.3g} pJ"


def _fmt_measured(measured: float, ort: float) -> str:
    if pd.isna(measured):
        return ""
    ms = measured * 1e3
    text = f"{ms:.0f} ms" if ms >= 100 else f"{ms:.3g} ms"
    return text + (f" ({measured / ort:.1f}x ORT)" if pd.notna(ort) and ort else "")


def _fmt_sqnr(db: float, meets) -> str:
    if pd.isna(db):
        return ""
    text = "exact" if db == float("inf") else f"{db:.1f} dB"
    broke = meets is not None and not pd.isna(meets) and not bool(meets)
    return text + (" (over the accuracy limit)" if broke else "")


def _table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def variants_table(variants: pd.DataFrame) -> pd.DataFrame:
    """The variant table with readable units, for terminals and reports."""
    ok = variants[variants["energy_j"].notna()]
    out = pd.DataFrame({
        "model": ok["model"], "strategy": ok["strategy"], "target": ok["target"],
        "kernels": ok["kernels"].astype(int), "GMAC": (ok["macs"] / 1e9).round(3),
        "GFLOP": (ok["flops"] / 1e9).round(3),
        "DRAM": ok["dram_bytes"].map(_fmt_bytes), "energy": ok["energy_j"].map(_fmt_j),
        "compute": (ok["energy_compute_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "memory": (ok["energy_memory_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "static": (ok["energy_static_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "energy 5-95%": [f"{_fmt_j(a)}-{_fmt_j(b)}" if pd.notna(a) else "" for a, b in
                         zip(ok.get("energy_p05_j", pd.Series(index=ok.index, dtype=float)),
                             ok.get("energy_p95_j", pd.Series(index=ok.index, dtype=float)))],
        "x bound": ok["compulsory_ratio"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
        "model latency": (ok["latency_s"] * 1e3).map(lambda v: f"{v:.3g} ms"),
        "measured": [_fmt_measured(m, o) for m, o in zip(ok.get("measured_latency_s", pd.Series(index=ok.index, dtype=float)),
                                                          ok.get("onnxruntime_latency_s", pd.Series(index=ok.index, dtype=float)))],
        "bound by": ok["bound"],
        "max abs err": ok["max_abs_error"].map(lambda v: "" if pd.isna(v) else f"{v:.2g}"),
        "SQNR": [_fmt_sqnr(v, m) for v, m in zip(ok.get("sqnr_db", pd.Series(index=ok.index, dtype=float)),
                                                  ok.get("meets_accuracy", pd.Series(index=ok.index, dtype=object)))],
    })
    return out


def rankings_section(rankings: pd.DataFrame) -> list[str]:
    """Markdown lines: per model and target, whether each nominal ranking survives the figures' ranges."""
    if rankings is None or not len(rankings):
        return []
    parts = ["## Do the rankings hold?", "",
             "Every figure of a target was sampled across its cited low-high range (log-triangular around "
             "the cited value, all variants under the same samples). *Share* is the fraction of samples in which "
             "the nominally cheaper variant stays cheaper: 100% means no plausible set of figures reverses it.", ""]
    for (model, target), g in rankings.groupby(["model", "target"], sort=False):
        shaky = g[g.share_lower_wins < 0.95]
        parts.append(f"**{model} on {target}**: {len(g) - len(shaky)} of {len(g)} pairwise rankings hold in at "
                     f"least 95% of samples.")
        parts.append("")
        parts.append(_table(pd.DataFrame({
            "cheaper": g["lower"], "dearer": g["higher"],
            "nominal energy ratio": g["nominal_ratio"].map(lambda v: f"{v:.3f}"),
            "share": (g["share_lower_wins"] * 100).map(lambda v: f"{v:.1f}%")})))
        parts.append("")
    return parts


def precision_section(variants: pd.DataFrame) -> list[str]:
    """Markdown lines: per model and target, the best variant of each reduced precision against the
    best fp32 one, with where the energy goes (compute, casts, DRAM, on-chip, static), accuracy and,
    where it ran, the measured latency."""
    ok = variants[variants["energy_j"].notna()]
    if "precision" not in ok or not (ok["precision"] != "fp32").any() or not (ok["precision"] == "fp32").any():
        return []
    parts = ["## Precision: where the energy goes", "",
             "Each reduced precision's lowest-energy variant against the lowest-energy fp32 one. Deltas are "
             "reduced minus fp32 (negative saves); *casts* counts every cast and re-quantization cast the build "
             "executes (widening inside a MAC is part of the MAC). Latency is measured on this machine's CPU "
             "(one warm inference) where the variant ran, and reported as it is.", ""]
    rows = []
    for (model, target), g in ok.groupby(["model", "target"], sort=False):
        fp32 = g[g.precision == "fp32"]
        if not len(fp32):
            continue
        base = fp32.loc[fp32["energy_j"].idxmin()]
        for precision, p in g[g.precision != "fp32"].groupby("precision", sort=False):
            r = p.loc[p["energy_j"].idxmin()]
            measured = ""
            if pd.notna(r.get("measured_latency_s")) and pd.notna(base.get("measured_latency_s")):
                measured = (f"{r.measured_latency_s * 1e3:.3g} ms vs {base.measured_latency_s * 1e3:.3g} ms "
                            f"({r.measured_latency_s / base.measured_latency_s:.2f}x)")
            rows.append({
                "model": model, "target": target, "variant": f"{r.strategy} vs {base.strategy}",
                "energy": f"{_fmt_j(r.energy_j)} vs {_fmt_j(base.energy_j)} ({r.energy_j / base.energy_j:.2f}x)",
                "compute": _fmt_j(r.energy_compute_j - base.energy_compute_j),
                "DRAM": _fmt_j(r.energy_dram_j - base.energy_dram_j),
                "on-chip": _fmt_j(r.energy_onchip_j - base.energy_onchip_j),
                "static": _fmt_j(r.energy_static_j - base.energy_static_j),
                "casts": f"{r.casts:.3g} ({_fmt_j(r.energy_cast_j)})" if pd.notna(r.get("casts")) else "",
                "SQNR": _fmt_sqnr(r.get("sqnr_db", float("nan")), r.get("meets_accuracy")),
                "measured latency": measured,
            })
    if not rows:
        return []
    return parts + [_table(pd.DataFrame(rows)), ""]


def schedules_section(schedules: pd.DataFrame | None) -> list[str]:
    """Markdown lines: per tuned kernel, the latency-best and energy-best measured schedules."""
    if schedules is None or not len(schedules):
        return []
    parts = ["## Tuned schedules: latency-best against energy-best", "",
             "Every candidate MetaSchedule measured was lowered and scored by the cost model (dynamic energy from "
             "its TIR, static energy over its measured latency). Kernels where the two choices differ come first.", ""]
    shown = schedules.sort_values("differ", ascending=False)
    parts.append(_table(pd.DataFrame({
        "model": shown["model"], "strategy": shown["strategy"], "kernel": shown["kernel"],
        "candidates": shown["candidates"],
        "latency-best": [f"{a * 1e3:.3g} ms, {_fmt_j(b)}" for a, b in zip(shown.latency_best_s, shown.latency_best_energy_j)],
        "energy-best": [f"{a * 1e3:.3g} ms, {_fmt_j(b)}" for a, b in zip(shown.energy_best_s, shown.energy_best_energy_j)],
        "energy saved": [f"{(1 - e / l) * 100:.1f}%" for e, l in zip(shown.energy_best_energy_j, shown.latency_best_energy_j)],
        "slower by": [f"{(e / l - 1) * 100:.1f}%" for e, l in zip(shown.energy_best_s, shown.latency_best_s)],
    })))
    return parts + [""]


def markdown_report(variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame | None = None,
                    schedules: pd.DataFrame | None = None) -> str:
    """A short report: the variants side by side, the best per target, how robust the rankings
    are, failures and mismatches, and the costliest kernels."""
    parts = ["# Energy exploration report", ""]
    models = ", ".join(dict.fromkeys(variants["model"].astype(str)))
    parts += [f"Models: {models}. Energy is modelled from the lowered TIR of each variant (compute by "
              "operation kind and dtype, reuse-aware traffic at every memory level, static power over a roofline "
              "latency); CPU variants were also run and compared with onnxruntime. *x bound* is the energy over "
              "the compulsory bound (weights, inputs and outputs moved from DRAM once, every MAC at the target's "
              "cheapest dtype); *bound by* is the resource that sets most of the modelled latency.", ""]
    ok = variants[variants["energy_j"].notna()]
    if len(ok):
        parts += ["## Variants", "", _table(variants_table(variants)), ""]
        parts += ["## Lowest energy per model and target", ""]
        best = ok.loc[ok.groupby(["model", "target"])["energy_j"].idxmin()]
        for _, r in best.iterrows():
            worst = ok[(ok.model == r.model) & (ok.target == r.target)]["energy_j"].max()
            parts.append(f"- **{r.model} on {r.target}**: `{r.strategy}` at {_fmt_j(r.energy_j)} "
                         f"({worst / r.energy_j:.2f}x less than the worst strategy), "
                         f"{_fmt_bytes(r.dram_bytes)} of DRAM traffic, {int(r.kernels)} kernels.")
        parts.append("")
    parts += precision_section(variants)
    parts += schedules_section(schedules)
    parts += rankings_section(rankings)
    flagged = variants[variants["within_tolerance"].eq(False)]
    failed = variants[variants["status"].astype(str).str.startswith("failed")]
    if len(flagged) or len(failed):
        parts += ["## Problems", ""]
        for _, r in pd.concat([flagged, failed]).iterrows():
            parts.append(f"- {r.model} / {r.strategy} / {r.target}: {r.status}")
        parts.append("")
    if len(kernels):
        parts += ["## Most energy-hungry kernels", ""]
        top = kernels.sort_values("energy_j", ascending=False).head(10)
        parts.append(_table(pd.DataFrame({
            "model": top["model"], "strategy": top["strategy"], "target": top["target"], "kernel": top["kernel"],
            "energy": top["energy_j"].map(_fmt_j), "DRAM": top["dram_bytes"].map(_fmt_bytes),
            "MMAC": (top["macs"] / 1e6).round(2), "bound": top["bound"]})))
        parts.append("")
    return "\n".join(parts)
