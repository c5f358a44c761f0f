"""Human-readable reports (markdown) from sweep tables."""

from __future__ import annotations

import html
import re

import pandas as pd
from tabulate import DataRow, TableFormat

from explorer.core.units import fmt_bytes, fmt_j
from explorer.core.variant import FAILURE_KINDS
from explorer.scoring.accuracy import DEFAULT_MAX_ACCURACY_LOSS_PCT, within_accuracy


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


#: Markdown's pipe table, each cell as it is (no padding, no alignment row beyond ``---``): what GitHub renders.
PIPE_TABLE = TableFormat(lineabove=None, linebelowheader=lambda widths, aligns: "|" + "---|" * len(widths),
                         linebetweenrows=None, linebelow=None, headerrow=DataRow("| ", " | ", " |"),
                         datarow=DataRow("| ", " | ", " |"), padding=0, with_header_hide=None)


def md_text(value) -> str:
    """``value`` as literal markdown text: markup characters (``<``, ``>``, ``&``) as entities, so a
    model's name cannot open HTML in a renderer, and line breaks as spaces, so it cannot end a line."""
    return html.escape(str(value), quote=False).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_cell(value) -> str:
    """``value`` as one cell of a pipe table: :func:`md_text`, with ``|`` escaped so it cannot split it."""
    return md_text(value).replace("|", "\\|")


def _cells(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell (and column name) made a literal table cell (:func:`md_cell`)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: md_cell(v) if isinstance(v, str) else v)
    out.columns = [md_cell(c) for c in out.columns]
    return out


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a markdown pipe table, each cell its ``str`` made literal (:func:`md_cell`;
    ``DataFrame.to_markdown`` with :data:`PIPE_TABLE`)."""
    return _cells(df).to_markdown(index=False, tablefmt=PIPE_TABLE, stralign=None, numalign=None,
                                  disable_numparse=True)


def variants_table(variants: pd.DataFrame) -> pd.DataFrame:
    """The variant table with readable units, for terminals and reports."""
    ok = variants[variants["energy_j"].notna()]
    out = pd.DataFrame({
        "model": ok["model"], "strategy": ok["strategy"], "target": ok["target"],
        "kernels": ok["kernels"].astype(int), "GMAC": (ok["macs"] / 1e9).round(3),
        "GFLOP": (ok["flops"] / 1e9).round(3),
        "DRAM": ok["dram_bytes"].map(fmt_bytes), "energy": ok["energy_j"].map(fmt_j),
        "compute": (ok["energy_compute_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "memory": (ok["energy_memory_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "static": (ok["energy_static_j"] / ok["energy_j"] * 100).round(1).astype(str) + "%",
        "energy 5-95%": [f"{fmt_j(a)}-{fmt_j(b)}" if pd.notna(a) else "" for a, b in
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


def static_time_lines(variants: pd.DataFrame) -> list[str]:
    """Markdown lines: per target, whether static energy is over measured or modelled time."""
    if "latency_source" not in variants:
        return []
    lines = []
    for target, g in variants[variants["energy_j"].notna()].groupby("target", sort=False):
        measured = int((g["latency_source"] == "measured").sum())
        if measured:
            lines.append(f"- **{target}**: static energy of {measured} of {len(g)} variants is charged over the "
                         "time their builds measured on this host (the target describes it); *model latency* is "
                         "the model's own figure beside *measured*.")
        else:
            lines.append(f"- **{target}**: static energy is charged over the modelled latency (nothing measured "
                         "on hardware this target describes).")
    return [*lines, ""] if lines else []


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
        parts.append(f"**{md_text(model)} on {target}**: {len(g) - len(shaky)} of {len(g)} pairwise rankings hold in at "
                     f"least 95% of samples.")
        parts.append("")
        parts.append(markdown_table(pd.DataFrame({
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
                "energy": f"{fmt_j(r.energy_j)} vs {fmt_j(base.energy_j)} ({r.energy_j / base.energy_j:.2f}x)",
                "compute": fmt_j(r.energy_compute_j - base.energy_compute_j),
                "DRAM": fmt_j(r.energy_dram_j - base.energy_dram_j),
                "on-chip": fmt_j(r.energy_onchip_j - base.energy_onchip_j),
                "static": fmt_j(r.energy_static_j - base.energy_static_j),
                "casts": f"{r.casts:.3g} ({fmt_j(r.energy_cast_j)})" if pd.notna(r.get("casts")) else "",
                "SQNR": _fmt_sqnr(r.get("sqnr_db", float("nan")), r.get("meets_accuracy")),
                "measured latency": measured,
            })
    if not rows:
        return []
    return parts + [markdown_table(pd.DataFrame(rows)), ""]


#: What a phase or batch adds to a model's name in tables (explorer.model.phases, explorer.model.prepare.prepare).
_INSTANCE_SUFFIX = re.compile(r"(@(prefill|decode)\d+)?(@b\d+)?$")


def base_model(name: str) -> str:
    """A model's name without the phase and batch its table name carries (``gpt2@decode128@b8`` -> ``gpt2``)."""
    return _INSTANCE_SUFFIX.sub("", str(name))


def phases_section(variants: pd.DataFrame) -> list[str]:
    """Markdown lines: per decoder, strategy, target and batch, prefill and decode side by side: energy
    and rate per token, and what bounds each."""
    ok = variants[variants["energy_j"].notna() & variants.get("phase", pd.Series(dtype=object)).notna()]
    if not len(ok) or ok["phase"].nunique() < 1:
        return []
    rows = []
    ok = ok.assign(base=ok["model"].map(base_model))
    for (base, strategy, target, batch), g in ok.groupby(["base", "strategy", "target", "batch"], sort=False):
        row = {"model": base, "strategy": strategy, "target": target, "batch": int(batch)}
        for _, r in g.iterrows():
            kind = str(r["phase"]).split(":")[0]
            rate = r.get("measured_tokens_per_s") if pd.notna(r.get("measured_tokens_per_s")) else r["tokens_per_s"]
            row[f"{kind}"] = r["phase"]
            row[f"{kind} energy / token"] = fmt_j(r["energy_per_token_j"])
            row[f"{kind} tokens/s"] = f"{rate:.4g}" + (" (measured)" if pd.notna(r.get("measured_tokens_per_s")) else "")
            row[f"{kind} bound by"] = r["bound"]
        rows.append(row)
    return ["## Prefill and decode", "",
            "Per token: a prefill of P tokens reads the weights once for all of them; a decode step reads them "
            "(and the KV cache) for one token per sequence, so at small batch it is bound by memory. Rates are "
            "measured where the build ran here, modelled otherwise.", "", markdown_table(pd.DataFrame(rows).fillna("")), ""]


def schedules_section(schedules: pd.DataFrame | None, plot: str | None = None) -> list[str]:
    """Markdown lines: per tuned kernel, the latency-best and energy-best measured schedules, and a
    link to ``plot`` (the candidates' scatter in report.html, :func:`explorer.reports.plots.candidates_plot`)."""
    if schedules is None or not len(schedules):
        return []
    differ = schedules[schedules["differ"].astype(bool)]
    parts = ["## Tuned schedules: latency-best against energy-best", "",
             "Every candidate MetaSchedule measured was lowered and scored by the cost model (dynamic energy from "
             "its TIR, static energy over its measured latency). Kernels where the two choices differ come first. "
             f"They differ for {differ.kernel.nunique()} of {schedules.kernel.nunique()} kernels. A slower candidate "
             "is the energy-best only where it saves more dynamic energy than the static power costs over its "
             "extra time: *slower wins below* is the static power under which some slower candidate would beat "
             "the fastest (*never*: no slower candidate has less dynamic energy)"
             + (f"; the target charges {schedules['static_w'].iloc[0]:.3g} W." if "static_w" in schedules else "."), ""]
    if plot:
        parts += [f"[Every measured candidate, relative to its kernel's fastest]({plot}): each dot is one measured "
                  "candidate, its latency and energy relative to the fastest candidate of its kernel. Dots below 1 use "
                  "less energy than the fastest; ringed dots are energy-best candidates that are not the fastest.", ""]
    # strategies tuned from the same records share their candidates: one row per kernel, naming them all
    same = ["model", "kernel", "candidates", "latency_best_s", "energy_best_s", "energy_best_energy_j"]
    strategies = schedules.groupby(same, sort=False)["strategy"].agg(", ".join).rename("strategies")
    shown = schedules.drop_duplicates(same).join(strategies, on=same)
    shown = shown.sort_values("differ", ascending=False, kind="stable")
    parts.append(markdown_table(pd.DataFrame({
        "model": shown["model"], "strategy": shown["strategies"], "kernel": shown["kernel"],
        "candidates": shown["candidates"],
        "latency-best": [f"{a * 1e3:.3g} ms, {fmt_j(b)}" for a, b in zip(shown.latency_best_s, shown.latency_best_energy_j)],
        "energy-best": [f"{a * 1e3:.3g} ms, {fmt_j(b)}" for a, b in zip(shown.energy_best_s, shown.energy_best_energy_j)],
        "energy saved": [f"{(1 - e / l) * 100:.1f}%" for e, l in zip(shown.energy_best_energy_j, shown.latency_best_energy_j)],
        "slower by": [f"{(e / l - 1) * 100:.1f}%" for e, l in zip(shown.energy_best_s, shown.latency_best_s)],
        "DRAM (latency-best / energy-best)": [f"{fmt_bytes(a)} / {fmt_bytes(b)}" for a, b in
                                              zip(shown.latency_best_dram_bytes, shown.energy_best_dram_bytes)],
        "slower wins below": [f"{w:.2g} W" if pd.notna(w) else "never" for w in
                              shown.get("switch_static_w", pd.Series(float("nan"), index=shown.index))],
    })))
    return parts + [""]


def targets_section(variants: pd.DataFrame) -> list[str]:
    """Where to run each model: its targets ranked by the energy of their best variant per inference,
    with inferences per joule, the latency and the mean power, and what the figures rest on (a GPU whose
    kernels were not tensorized is charged for SIMT kernels, a schedule gap rather than the hardware's)."""
    ok = variants[variants["energy_j"].notna() & variants["target"].notna() & within_accuracy(variants)]
    if ok["target"].nunique() < 2:
        return []
    out = ["## Targets ranked per inference", "",
           "Each target's lowest-energy variant of each model, cheapest first, among the strategies not known to "
           f"lose more than {DEFAULT_MAX_ACCURACY_LOSS_PCT:g}% accuracy (measured where they ran); *inferences/J* "
           "counts samples of the batch (tokens for a decoder's phase are in the phases section).", ""]
    for model, group in ok.groupby("model", sort=False):
        best = group.loc[group.groupby("target")["energy_j"].idxmin()].sort_values("energy_j")
        batch = best["batch"].fillna(1).clip(lower=1) if "batch" in best else pd.Series(1, best.index)
        rows = pd.DataFrame({
            "rank": range(1, len(best) + 1), "target": best["target"], "strategy": best["strategy"],
            "energy/inference": (best["energy_j"] / batch).map(fmt_j),
            "inferences/J": (batch / best["energy_j"]).map(lambda x: f"{x:,.3g}"),
            "GFLOP/J": best.get("gflop_per_j", pd.Series(index=best.index, dtype=float)).map(
                lambda x: "" if pd.isna(x) else f"{x:,.3g}"),
            "latency": best["latency_s"].map(lambda x: f"{x * 1e3:.3g} ms"),
            "mean power": best.get("mean_power_w", pd.Series(index=best.index, dtype=float)).map(
                lambda x: "" if pd.isna(x) else f"{x:.3g} W"),
            "notes": best["status"].fillna("").map(lambda t: "not tensorized (SIMT kernels)" if "not tensorized" in t
                                                   else "emulated dtype" if "charged as emulated" in t else "")})
        out += [f"**{md_text(model)}**", "", markdown_table(rows), ""]
    return out


def markdown_report(variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame | None = None,
                    schedules: pd.DataFrame | None = None, plot: str | None = None) -> str:
    """A short report: the variants side by side, the best per target, how robust the rankings
    are, failures and mismatches, and the costliest kernels."""
    parts = ["# Energy exploration report", ""]
    models = ", ".join(md_text(m) for m in dict.fromkeys(variants["model"].astype(str)))
    parts += [f"Models: {models}. Energy is modelled from the lowered TIR of each variant (compute by "
              "operation kind and dtype, reuse-aware traffic at every memory level, static power over the "
              "variant's time); CPU variants were also run and compared with onnxruntime. *x bound* is the energy "
              "over the compulsory bound (inputs moved from DRAM once, weights once from the level that holds them "
              "all, every MAC at the target's cheapest dtype); *bound by* is the resource that sets most of the modelled latency.", ""]
    parts += static_time_lines(variants)
    ok = variants[variants["energy_j"].notna()]
    if len(ok):
        parts += ["## Variants", "", markdown_table(variants_table(variants)), ""]
        parts += ["## Lowest energy per model and target", ""]
        best = ok.loc[ok.groupby(["model", "target"])["energy_j"].idxmin()]
        for _, r in best.iterrows():
            worst = ok[(ok.model == r.model) & (ok.target == r.target)]["energy_j"].max()
            parts.append(f"- **{md_text(r.model)} on {r.target}**: `{r.strategy}` at {fmt_j(r.energy_j)} "
                         f"({worst / r.energy_j:.2f}x less than the worst strategy), "
                         f"{fmt_bytes(r.dram_bytes)} of DRAM traffic, {int(r.kernels)} kernels.")
        parts.append("")
    parts += targets_section(variants)
    parts += phases_section(variants)
    parts += precision_section(variants)
    parts += schedules_section(schedules, plot)
    parts += rankings_section(rankings)
    flagged = variants[variants["within_tolerance"].eq(False)]
    failed = variants[variants["status_kind"].isin([k.value for k in FAILURE_KINDS])]
    if len(flagged) or len(failed):
        parts += ["## Problems", ""]
        for _, r in pd.concat([flagged, failed]).iterrows():
            parts.append(f"- {md_text(r.model)} / {r.strategy} / {r.target}: {md_text(r.status)}")
        parts.append("")
    if len(kernels):
        parts += ["## Most energy-hungry kernels", ""]
        top = kernels.sort_values("energy_j", ascending=False).head(10)
        parts.append(markdown_table(pd.DataFrame({
            "model": top["model"], "strategy": top["strategy"], "target": top["target"], "kernel": top["kernel"],
            "energy": top["energy_j"].map(fmt_j), "DRAM": top["dram_bytes"].map(fmt_bytes),
            "MMAC": (top["macs"] / 1e6).round(2), "bound": top["bound"]})))
        parts.append("")
    return "\n".join(parts)


def serving_markdown(table: pd.DataFrame) -> str:
    """``serving.csv`` as a readable table: J per output token (of every device), inter-token latency,
    power (of one device), fit; for a mixture of experts, the experts a layer's decode step reads and the
    weight bytes per token, with the routing they assume; for a model over several devices, the bytes one device sends a token and the
    share of the time the collectives take."""
    if table.empty:
        return "no serving figures: every variant failed (see the messages above)"
    shown = pd.DataFrame({
        "model": table["model"], "target": table["target"], "strategy": table["strategy"], "devices": table["devices"],
        "batch": table["batch"],
        "achieved": table["achieved_batch"],
        "J / output token": table["energy_per_output_token_j"].map(lambda v: f"{v:.3g}"),
        "prefill share": table["prefill_energy_share"].map(lambda v: f"{v:.1%}"),
        "ITL": table["inter_token_latency_s"].map(lambda v: f"{v * 1e3:.3g} ms"),
        "tokens/s": table["output_tokens_per_s"].map(lambda v: f"{v:.4g}"),
        "power a device": [f"{w:.0f} W" + (" (capped)" if c else "") for w, c in
                           zip(table["mean_power_w"], table["power_capped"].fillna(False))],
        **({"experts / layer": table["experts_per_step"].map(lambda v: f"{v:.1f}"),
            "weights / token": table["weight_bytes_per_token"].map(fmt_bytes)}
           if table["experts_per_step"].notna().any() else {}),
        **({"links / token": table["interconnect_bytes_per_token"].map(fmt_bytes),
            "links' time": table["interconnect_time_share"].map(lambda v: f"{v:.1%}")}
           if (table["devices"] > 1).any() else {}),
        "fits": [("yes" if f else f"no: {n}") for f, n in zip(table["fits"], table["fit_note"])],
    })
    routing = sorted(set(table["expert_routing"].dropna()) - {""})
    said = [("uniform routing, E(1 - (1 - k/E)^B)" if r == "uniform" else f"the load {r.replace(' (', ' in ')[:-1]}")
            for r in routing]  # "measured (FILE)": the load measured in FILE
    note = f"\n\nExperts a layer's decode step reads: {'; '.join(said)}." if routing else ""
    return _cells(shown).to_markdown(index=False) + note
