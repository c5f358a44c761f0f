"""The plots of a sweep's report: each a :class:`Plot` of plotly traces and layout with the table of
what it draws. :mod:`explorer.reports.html` puts them on a page.

Every string that comes from a model (model, node, kernel and tensor names) goes through
:func:`plot_label`: plotly renders a subset of HTML tags in its labels, so names are entity-escaped and
``<b>`` shows as text.
"""

from __future__ import annotations

import dataclasses
import html
import math

import pandas as pd

from cost_models.spec import TargetSpec
from cost_models.target_file import TargetError
from cost_models.targets import load_target
from explorer.core.strategies import get_strategy
from explorer.reports.markdown import base_model
from explorer.scoring.accuracy import DEFAULT_MAX_ACCURACY_LOSS_PCT, within_accuracy
from explorer.scoring.fusion import fusion_table, unfused_counterpart

#: Colours of the energy components: compute, DRAM and static fixed, the on-chip levels from the rest.
_FIXED_COLOURS = {"compute": "#4c78a8", "dram": "#e45756", "static": "#9d9d9d"}
_LEVEL_COLOURS = ("#f58518", "#eeca3b", "#72b7b2", "#54a24b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#8cd17d",
                  "#499894")


@dataclasses.dataclass(frozen=True)
class Plot:
    """One plot of the report: plotly traces and layout, and the table of what it draws."""

    id: str
    title: str
    caption: str
    traces: tuple
    layout: dict
    table: pd.DataFrame


def plot_label(text) -> str:
    """A string as plotly shows it literally: its markup entity-escaped."""
    return html.escape(str(text), quote=False)


def _latency(frame: pd.DataFrame, measured: str) -> tuple[pd.Series, pd.Series]:
    """Measured latency where there is one, else the model's; and which one each row uses."""
    m = pd.to_numeric(frame.get(measured), errors="coerce") if measured in frame else pd.Series(math.nan, frame.index)
    used = m.where(m.notna(), pd.to_numeric(frame["latency_s"], errors="coerce"))
    return used, m.notna().map({True: "measured", False: "modelled"})


def _variant_label(frame: pd.DataFrame) -> pd.Series:
    models = frame["model"].nunique() > 1
    return (frame["model"].astype(str) + " / " if models else "") + frame["strategy"].astype(str)


def energy_components(variants: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Per variant with numbers: energy in compute, at each memory level (summed over its kernels'
    ``energy_<level>_j``) and static, in joules."""
    ok = variants[variants["energy_j"].notna()]
    keys = ["model", "strategy", "target"]
    levels = [c for c in kernels.columns if c.startswith("energy_") and c.endswith("_j")
              and c not in ("energy_j", "energy_compute_j", "energy_memory_j", "energy_onchip_j", "energy_static_j",
                            "energy_cast_j", "compulsory_energy_j")] if len(kernels) else []
    table = ok[keys + ["energy_j", "energy_compute_j", "energy_static_j", "energy_dram_j", "energy_onchip_j"]].copy()
    if levels:
        per_level = kernels.groupby(keys)[levels].sum().reset_index()
        table = table.drop(columns=["energy_dram_j", "energy_onchip_j"]).merge(per_level, on=keys, how="left")
    ordered = ["energy_compute_j"] + (["energy_dram_j"] + [c for c in levels if c != "energy_dram_j"]
                                      if levels else ["energy_dram_j", "energy_onchip_j"]) + ["energy_static_j"]
    return table[keys + ["energy_j"] + ordered].fillna(0.0)


def breakdown_plot(variants: pd.DataFrame, kernels: pd.DataFrame) -> Plot:
    """Stacked bars: each variant's energy in compute, each memory level and static power."""
    table = energy_components(variants, kernels).sort_values("target", kind="stable")
    parts = [c for c in table.columns[4:]]
    x = (_variant_label(table) + " @ " + table["target"].astype(str)).map(plot_label).tolist()
    names = [c[len("energy_"):-len("_j")] for c in parts]
    levels = iter(_LEVEL_COLOURS * (1 + len(names) // len(_LEVEL_COLOURS)))
    colours = [_FIXED_COLOURS.get(n) or next(levels) for n in names]
    traces = tuple({"type": "bar", "name": plot_label(n), "x": x, "y": (table[c] * 1e3).tolist(),
                    "marker": {"color": colour}, "hovertemplate": "%{x}<br>%{y:.4g} mJ<extra>%{fullData.name}</extra>"}
                   for n, c, colour in zip(names, parts, colours))
    layout = {"barmode": "stack", "yaxis": {"title": {"text": "energy per inference (mJ)"}},
              "xaxis": {"tickangle": -35, "automargin": True}, "legend": {"orientation": "h", "y": -0.35},
              "margin": {"l": 120, "b": 160}}
    return Plot("breakdown", "Energy per variant", "Modelled energy of one inference: compute, each memory level "
                "(the traffic there times its energy per byte) and static power over the variant's time.",
                traces, layout, table)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (smaller is better), in order
    of the first coordinate."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(variants: pd.DataFrame) -> Plot:
    """Energy against latency per target, with each target's Pareto front as a line."""
    ok = variants[variants["energy_j"].notna()].copy()
    ok["latency_used_s"], ok["latency_is"] = _latency(ok, "measured_latency_s")
    ok["on_front"] = False
    traces = []
    for target, group in ok.groupby("target", sort=False):
        group = group[group["latency_used_s"].notna()]
        pts = list(zip(group["latency_used_s"], group["energy_j"]))
        front = group.iloc[pareto_front(pts)] if pts else group
        ok.loc[front.index, "on_front"] = True
        labels = _variant_label(group).map(plot_label).tolist()
        traces.append({"type": "scatter", "mode": "markers", "name": plot_label(target), "x": (group["latency_used_s"] * 1e3).tolist(),
                       "y": (group["energy_j"] * 1e3).tolist(), "text": labels,
                       "customdata": group["latency_is"].tolist(), "marker": {"size": 9},
                       "hovertemplate": "%{text}<br>%{x:.4g} ms (%{customdata})<br>%{y:.4g} mJ<extra>%{fullData.name}</extra>"})
        traces.append({"type": "scatter", "mode": "lines+markers", "name": plot_label(f"{target}: Pareto front"),
                       "x": (front["latency_used_s"] * 1e3).tolist(), "y": (front["energy_j"] * 1e3).tolist(),
                       "line": {"dash": "dot", "color": "black"},
                       "marker": {"symbol": "circle-open", "size": 16, "color": "black"}, "hoverinfo": "skip"})
    layout = {"xaxis": {"title": {"text": "latency per inference (ms)"}, "type": "log"},
              "yaxis": {"title": {"text": "energy per inference (mJ)"}, "type": "log"}}
    table = ok[["model", "strategy", "target", "energy_j", "latency_used_s", "latency_is", "on_front"]]
    return Plot("pareto", "Energy against latency", "Latency is measured where the variant ran on the hardware its "
                "target describes, modelled otherwise. The ringed variants, joined by a dotted line, are each target's "
                "Pareto front: no other variant on it is both faster and cheaper.",
                tuple(traces), layout, table)


def fusion_savings(kernels: pd.DataFrame) -> pd.DataFrame:
    """Per fused kernel of every fused strategy whose unfused counterpart is in the sweep: the DRAM
    traffic and energy it saves (:func:`explorer.scoring.fusion.fusion_table`)."""
    frames = []
    if not len(kernels):
        return pd.DataFrame()
    for (model, target), ks in kernels.groupby(["model", "target"], sort=False):
        present = set(ks["strategy"])
        for name in dict.fromkeys(ks["strategy"]):
            try:
                strategy = get_strategy(name)
                unfused = unfused_counterpart(strategy).name if strategy.fusion != "none" else None
            except KeyError:
                unfused = None
            if unfused is None or unfused not in present:
                continue
            t = fusion_table(ks, name, unfused)
            if len(t):
                frames.append(t.assign(model=model, target=target, strategy=name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fusion_plot(kernels: pd.DataFrame, top: int = 30) -> Plot | None:
    """Bars: the energy each fused kernel saves against its unfused operators, largest first."""
    table = fusion_savings(kernels)
    if not len(table):
        return None
    traces = []
    for (model, strategy, target), t in table.groupby(["model", "strategy", "target"], sort=False):
        t = t.sort_values("energy_saved_j", ascending=False).head(top)
        traces.append({"type": "bar", "name": plot_label(f"{model} / {strategy} @ {target}"),
                       "x": t["kernel"].map(plot_label).tolist(), "y": (t["energy_saved_j"] * 1e3).tolist(),
                       "customdata": (t["dram_bytes_saved"] / 1e6).tolist() if "dram_bytes_saved" in t else None,
                       "hovertemplate": "%{x}<br>%{y:.4g} mJ saved<br>%{customdata:.4g} MB less DRAM traffic<extra></extra>"})
    layout = {"barmode": "group", "yaxis": {"title": {"text": "energy saved per inference (mJ)"}},
              "xaxis": {"tickangle": -35, "automargin": True, "showticklabels": len(table) <= 60}}
    cols = ["model", "strategy", "target", "kernel", "ops", "eliminated_bytes", "dram_bytes_unfused", "dram_bytes_fused",
            "dram_bytes_saved", "energy_saved_j"]
    return Plot("fusion", "What fusion saves, per fused kernel", f"Each fused kernel against the unfused kernels of its "
                f"operators (the {top} largest savings per strategy): modelled energy saved, with the DRAM traffic "
                "saved on hover.", tuple(traces), layout,
                table[[c for c in cols if c in table]].sort_values("energy_saved_j", ascending=False))


def _target_spec(name: str) -> TargetSpec | None:
    try:
        return load_target(name)
    except (TargetError, KeyError, FileNotFoundError, ValueError):
        return None


def roofline_plots(kernels: pd.DataFrame) -> list[Plot]:
    """Per target: every kernel at its arithmetic intensity (operations per DRAM byte) and achieved
    rate (operations over its measured time where measured, else its modelled latency), under the
    target's peak compute rate and DRAM bandwidth."""
    plots = []
    if not len(kernels):
        return plots
    for target, ks in kernels.groupby("target", sort=False):
        ks = ks.copy()
        ks["ops"] = 2 * ks["macs"].fillna(0) + ks["flops"].fillna(0)
        ks["time_s"], ks["time_is"] = _latency(ks, "measured_s")
        ks = ks[(ks["ops"] > 0) & (ks["dram_bytes"] > 0) & (ks["time_s"] > 0)]
        if not len(ks):
            continue
        ks["ops_per_byte"] = ks["ops"] / ks["dram_bytes"]
        ks["ops_per_s"] = ks["ops"] / ks["time_s"]
        traces = []
        for strategy, g in ks.groupby("strategy", sort=False):
            traces.append({"type": "scatter", "mode": "markers", "name": plot_label(strategy),
                           "x": g["ops_per_byte"].tolist(), "y": (g["ops_per_s"] / 1e9).tolist(),
                           "text": (g["model"].astype(str) + ": " + g["kernel"].astype(str)).map(plot_label).tolist(),
                           "customdata": g["time_is"].tolist(), "marker": {"size": 6, "opacity": 0.75},
                           "hovertemplate": "%{text}<br>%{x:.3g} op/B, %{y:.4g} Gop/s (%{customdata})<extra>%{fullData.name}</extra>"})
        spec = _target_spec(str(target))
        ceiling = ""
        if spec is not None and spec.compute and spec.memory:
            peak = max(u.peak_ops_per_s.value for u in spec.compute)
            bw = spec.memory[0].bandwidth_bytes_per_s.value
            lo, hi = float(ks["ops_per_byte"].min()) / 2, float(ks["ops_per_byte"].max()) * 2
            ridge = peak / bw
            xs = sorted({lo, min(max(ridge, lo), hi), hi})
            traces.append({"type": "scatter", "mode": "lines", "name": "roofline", "x": xs,
                           "y": [min(peak, bw * x) / 1e9 for x in xs], "line": {"color": "black"}, "hoverinfo": "skip"})
            ceiling = (f" The line is the target's roofline: {peak / 1e9:.4g} Gop/s peak "
                       f"({max(spec.compute, key=lambda u: u.peak_ops_per_s.value).dtype}) and "
                       f"{bw / 1e9:.4g} GB/s from {spec.memory[0].name}.")
        layout = {"xaxis": {"title": {"text": "operations per DRAM byte"}, "type": "log"},
                  "yaxis": {"title": {"text": "achieved Gop/s"}, "type": "log"}}
        table = ks[["model", "strategy", "kernel", "ops", "dram_bytes", "time_s", "time_is", "ops_per_byte", "ops_per_s"]]
        plots.append(Plot(f"roofline-{len(plots)}", f"Roofline of the kernels on {target}",
                          "A multiply-add counts as two operations; time is measured per kernel call where the "
                          "variant ran on this target's hardware, modelled otherwise." + ceiling,
                          tuple(traces), layout, table.sort_values("ops_per_s", ascending=False)))
    return plots


def precision_plot(variants: pd.DataFrame) -> Plot | None:
    """Energy against accuracy loss (relative L2 error against fp32) of the variants that ran."""
    ok = variants[variants["energy_j"].notna() & pd.to_numeric(variants["accuracy_loss_pct"], errors="coerce").notna()]
    if not len(ok):
        return None
    traces = []
    for precision, g in ok.groupby("precision", sort=False):
        loss = pd.to_numeric(g["accuracy_loss_pct"]).clip(lower=1e-6)  # fp32's exact 0 on a log axis
        traces.append({"type": "scatter", "mode": "markers", "name": plot_label(precision), "x": loss.tolist(),
                       "y": (g["energy_j"] * 1e3).tolist(),
                       "text": (_variant_label(g) + " @ " + g["target"].astype(str)).map(plot_label).tolist(),
                       "marker": {"size": 9},
                       "hovertemplate": "%{text}<br>%{x:.3g}% error<br>%{y:.4g} mJ<extra>%{fullData.name}</extra>"})
    layout = {"xaxis": {"title": {"text": "accuracy loss: relative L2 error against fp32 (%)"}, "type": "log"},
              "yaxis": {"title": {"text": "energy per inference (mJ)"}}}
    table = ok[["model", "strategy", "target", "precision", "energy_j", "accuracy_loss_pct", "sqnr_db"]]
    return Plot("precision", "Precision trade-offs", "Each variant that ran here, at its outputs' error against the "
                "fp32 reference (onnxruntime) on the check input; fp32 builds sit at the left edge.",
                tuple(traces), layout, table)


def phases_plot(variants: pd.DataFrame) -> Plot | None:
    """Bars: energy per token of each decoder's prefill and decode, per strategy, target and batch."""
    if "phase" not in variants:
        return None
    ok = variants[variants["energy_j"].notna() & variants["phase"].notna()].copy()
    if not len(ok):
        return None
    ok["kind"] = ok["phase"].astype(str).str.split(":").str[0]
    ok["label"] = (ok["model"].map(base_model) + " / " + ok["strategy"].astype(str) + " @ " + ok["target"].astype(str)
                   + " b" + ok["batch"].astype(int).astype(str))
    traces = tuple({"type": "bar", "name": plot_label(phase), "x": g["label"].map(plot_label).tolist(),
                    "y": (g["energy_per_token_j"] * 1e3).tolist(), "customdata": g["bound"].tolist(),
                    "hovertemplate": "%{x}<br>%{y:.4g} mJ per token<br>bound by %{customdata}<extra>%{fullData.name}</extra>"}
                   for phase, g in ok.groupby("phase", sort=False))
    layout = {"barmode": "group", "yaxis": {"title": {"text": "energy per token (mJ)"}, "type": "log"},
              "xaxis": {"tickangle": -35, "automargin": True}}
    table = ok[["model", "strategy", "target", "phase", "batch", "tokens", "energy_per_token_j", "tokens_per_s",
                "measured_tokens_per_s", "kv_cache_bytes", "bound"]]
    return Plot("phases", "Prefill and decode, per token", "Modelled energy per generated or prompt token; hover for "
                "what bounds each phase (decode at small batch streams the weights and the KV cache for one token).",
                traces, layout, table)


def throughput_plot(variants: pd.DataFrame) -> Plot | None:
    """Latency against throughput per target, one line per model and strategy through its batches."""
    if "batch" not in variants:
        return None
    ok = variants[variants["energy_j"].notna()].copy()
    if ok["batch"].nunique() < 2:
        return None
    ok["latency_used_s"], ok["latency_is"] = _latency(ok, "measured_latency_s")
    per_token = ok["tokens"].notna() & (ok["tokens"] > 0) if "tokens" in ok else pd.Series(False, ok.index)
    ok["rate"] = (ok["tokens"].where(per_token, ok["batch"])) / ok["latency_used_s"]
    ok["unit"] = per_token.map({True: "tokens/s", False: "samples/s"})
    traces = []
    for (model, strategy, target), g in ok.groupby([ok["model"].map(base_model) + ok["phase"].fillna("").map(
            lambda p: f" {p}" if p else ""), "strategy", "target"], sort=False):
        g = g.sort_values("batch")
        traces.append({"type": "scatter", "mode": "lines+markers", "name": plot_label(f"{model} / {strategy} @ {target}"),
                       "x": g["rate"].tolist(), "y": (g["latency_used_s"] * 1e3).tolist(),
                       "text": ("batch " + g["batch"].astype(int).astype(str) + ", " + g["unit"]).tolist(),
                       "hovertemplate": "%{text}<br>%{x:.4g} per s<br>%{y:.4g} ms<extra>%{fullData.name}</extra>"})
    layout = {"xaxis": {"title": {"text": "throughput (samples or tokens per second)"}, "type": "log"},
              "yaxis": {"title": {"text": "latency per inference (ms)"}, "type": "log"}}
    table = ok[["model", "strategy", "target", "batch", "latency_used_s", "latency_is", "rate", "unit", "energy_per_sample_j"]]
    return Plot("throughput", "Latency against throughput", "Each line is one model and strategy on one target through "
                "its batches: a larger batch raises throughput and latency together.", tuple(traces), layout, table)


def targets_plot(variants: pd.DataFrame) -> Plot | None:
    """Bars: inferences per joule of each model's best variant on each target (where there are several)."""
    ok = variants[variants["energy_j"].notna() & within_accuracy(variants)].copy()
    if ok["target"].nunique() < 2:
        return None
    best = ok.loc[ok.groupby(["model", "target"])["energy_j"].idxmin()].copy()
    batch = best["batch"].fillna(1).clip(lower=1) if "batch" in best else 1
    best["inferences_per_j_best"] = batch / best["energy_j"]
    best["tensorized"] = best["status"].fillna("").map(lambda t: "no (SIMT kernels)" if "not tensorized" in t else "")
    traces = tuple({"type": "bar", "name": plot_label(model), "x": g["target"].map(plot_label).tolist(),
                    "y": g["inferences_per_j_best"].tolist(), "customdata": g[["strategy", "tensorized"]].values.tolist(),
                    "hovertemplate": "%{x}: %{y:.4g} inferences/J<br>%{customdata[0]}<br>%{customdata[1]}"
                                     "<extra>%{fullData.name}</extra>"}
                   for model, g in best.groupby("model", sort=False))
    layout = {"barmode": "group", "yaxis": {"title": {"text": "inferences per joule (best variant)"}, "type": "log"}}
    table = best[["model", "target", "strategy", "energy_j", "inferences_per_j_best", "latency_s", "mean_power_w",
                  "tensorized"]] if "mean_power_w" in best else best[["model", "target", "strategy", "energy_j",
                                                                       "inferences_per_j_best", "latency_s"]]
    return Plot("targets", "Targets per joule", "Each model's lowest-energy variant on each target, among strategies "
                f"not known to lose more than {DEFAULT_MAX_ACCURACY_LOSS_PCT:g}% accuracy, as inferences per joule (higher is better). A GPU whose kernels stayed on SIMT lanes is marked: that is TVM's schedule, "
                "not the hardware.", traces, layout, table)


def candidates_plot(candidates: pd.DataFrame) -> Plot | None:
    """Every scored tuning candidate: its measured latency and modelled energy, both relative to the fastest
    candidate of its kernel (log-log), one colour per model (strategies tuned from the same records share
    candidates); energy-best candidates that are not the fastest are ringed."""
    if candidates is None or not len(candidates):
        return None
    series = "model" if "model" in candidates else "strategy"
    c = candidates.drop_duplicates([series, "kernel", "candidate", "measured_latency_s"]).copy()
    group = c.groupby([series, "kernel"], sort=False)
    fastest = group["measured_latency_s"].transform("min")
    at_fastest = c["energy_j"].where(c["latency_best"].astype(bool)).groupby([c[series], c.kernel]).transform("max")
    c["latency_vs_fastest"] = c["measured_latency_s"] / fastest
    c["energy_vs_fastest"] = c["energy_j"] / at_fastest
    c = c[c["latency_vs_fastest"].notna() & c["energy_vs_fastest"].notna() & (c["latency_vs_fastest"] > 0)]
    traces = [{"type": "scatter", "mode": "markers", "name": plot_label(name), "x": g["latency_vs_fastest"].tolist(),
               "y": g["energy_vs_fastest"].tolist(), "text": g["kernel"].map(plot_label).tolist(),
               "marker": {"size": 6, "opacity": 0.6},
               "hovertemplate": "%{text}<br>latency %{x:.3g}x, energy %{y:.3g}x<extra>%{fullData.name}</extra>"}
              for name, g in c.groupby(series, sort=False)]
    ringed = c[c["energy_best"].astype(bool) & ~c["latency_best"].astype(bool)]
    if len(ringed):
        traces.append({"type": "scatter", "mode": "markers", "name": "energy-best, not the fastest",
                       "x": ringed["latency_vs_fastest"].tolist(), "y": ringed["energy_vs_fastest"].tolist(),
                       "marker": {"size": 14, "symbol": "circle-open", "color": "black"}, "hoverinfo": "skip"})
    layout = {"xaxis": {"type": "log", "title": {"text": "measured latency relative to the kernel's fastest candidate"}},
              "yaxis": {"type": "log", "title": {"text": "energy relative to the fastest candidate"}}}
    table = c[[series, "kernel", "candidate", "measured_latency_s", "energy_j", "latency_vs_fastest",
               "energy_vs_fastest", "latency_best", "energy_best"]]
    return Plot("candidates", "Tuning candidates: latency against energy", "Each dot is one candidate MetaSchedule "
                "measured, its latency and modelled energy relative to the fastest candidate of its kernel. Dots below "
                "1 use less energy than the fastest; ringed dots are energy-best candidates that are not the fastest.",
                tuple(traces), layout, table)


def report_plots(variants: pd.DataFrame, kernels: pd.DataFrame, candidates: pd.DataFrame | None = None) -> list[Plot]:
    """Every plot the sweep's tables give (a plot without data is left out)."""
    plots = []
    if variants["energy_j"].notna().any():
        plots += [breakdown_plot(variants, kernels), pareto_plot(variants)]
    plots += [p for p in (targets_plot(variants), phases_plot(variants), throughput_plot(variants), fusion_plot(kernels))
              if p is not None]
    plots += roofline_plots(kernels)
    plots += [p for p in (precision_plot(variants), candidates_plot(candidates)) if p is not None]
    return plots
