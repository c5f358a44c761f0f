"""What changed between two sweeps (``explorer compare RUN_A RUN_B``): two TVM versions, two target
files, two strategies' code, two machines.

Each run is a sweep's ``--out`` directory; its ``variants.csv`` and ``kernels.csv`` are compared row
by row. Variants pair up by (model, strategy, target) and kernels by (model, strategy, target, call
index); where each run has one target of different names (a copied target file), rows pair up by
model and strategy alone. A row is listed when its status differs, when it is in one run only, or when
one of its figures (energy, DRAM bytes, modelled and measured latency) moved by at least
``min_change`` (relative); the largest changes come first. Status is compared by kind (``ok``,
``emulated``, ``failed``, ...): its text names the target, which a copied target file renames.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from explorer.core.errors import ExplorerError

#: The figures compared per variant and per kernel.
VARIANT_FIGURES = ("energy_j", "dram_bytes", "latency_s", "measured_latency_s")
KERNEL_FIGURES = ("energy_j", "dram_bytes", "latency_s", "measured_s")

#: Relative change below which a figure counts as unchanged (re-timing alone moves latency by more).
DEFAULT_MIN_CHANGE = 0.01


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The rows of two runs that differ, largest change first."""

    run_a: Path
    run_b: Path
    targets: tuple[str, str]  # "" where both runs have the same targets
    variants: pd.DataFrame  # changed variants: keys, status_a/b, figure_a/b and their relative change, change
    kernels: pd.DataFrame  # changed kernels, the same way
    unchanged_variants: int
    unchanged_kernels: int


def read_run(run: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's variants and kernels tables; :class:`ExplorerError` if ``run`` is not a sweep's output."""
    run = Path(run)
    if not (run / "variants.csv").is_file():
        raise ExplorerError(f"{run} is not a sweep's --out directory (no variants.csv)")
    variants = pd.read_csv(run / "variants.csv")
    kernels_csv = run / "kernels.csv"
    try:
        kernels = pd.read_csv(kernels_csv) if kernels_csv.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        kernels = pd.DataFrame()
    return variants, kernels


def relative_change(a: float, b: float) -> float:
    """``(b - a) / |a|``; 0 when both are equal or missing, infinite when only one is there or a is 0."""
    a_missing, b_missing = pd.isna(a), pd.isna(b)
    if a_missing and b_missing or (not a_missing and not b_missing and a == b):
        return 0.0
    if a_missing or b_missing or a == 0:
        return math.inf
    return (b - a) / abs(a)


def diff_rows(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], figures: tuple[str, ...], min_change: float,
              status: str | None = "status") -> tuple[pd.DataFrame, int]:
    """Rows of ``a`` and ``b`` (paired by ``keys``) that differ: status, presence, or a figure by at
    least ``min_change``; with ``change``, the largest absolute relative change among the figures.
    Returns them largest change first, and the number of pairs that did not differ."""
    cols = [c for c in (*figures, status) if c and (c in a or c in b)]
    left = a[keys + [c for c in cols if c in a]].drop_duplicates(keys).rename(columns={c: f"{c}_a" for c in cols})
    right = b[keys + [c for c in cols if c in b]].drop_duplicates(keys).rename(columns={c: f"{c}_b" for c in cols})
    both = left.merge(right, on=keys, how="outer", indicator=True)
    rows, unchanged = [], 0
    for _, r in both.iterrows():
        row = {k: r[k] for k in keys}
        row["in"] = {"both": "both", "left_only": "A only", "right_only": "B only"}[r["_merge"]]
        biggest, moved = 0.0, []
        for f in figures:
            fa, fb = r.get(f"{f}_a", math.nan), r.get(f"{f}_b", math.nan)
            row[f"{f}_a"], row[f"{f}_b"] = fa, fb
            ch = relative_change(fa, fb)
            row[f"{f}_change"] = ch
            if ch != 0 and abs(ch) >= min_change:
                moved.append(f)
                biggest = max(biggest, abs(ch))
        changed_status = False
        if status:
            sa, sb = r.get(f"{status}_a"), r.get(f"{status}_b")
            row["status_a"], row["status_b"] = sa, sb
            changed_status = not (pd.isna(sa) and pd.isna(sb)) and sa != sb
        if row["in"] != "both" or moved or changed_status:
            row["changed"] = ", ".join(([] if row["in"] == "both" else [row["in"]]) + (["status"] if changed_status else [])
                                       + moved)
            row["change"] = math.inf if row["in"] != "both" else biggest
            rows.append(row)
        else:
            unchanged += 1
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
    return table, unchanged


def _align_targets(va: pd.DataFrame, vb: pd.DataFrame) -> tuple[str, str] | None:
    """The two target names, where each run has one and they differ (rows then pair without them)."""
    ta, tb = set(va["target"].astype(str)), set(vb["target"].astype(str))
    if len(ta) == 1 and len(tb) == 1 and ta != tb:
        return ta.pop(), tb.pop()
    return None


def compare_runs(run_a: str | Path, run_b: str | Path, min_change: float = DEFAULT_MIN_CHANGE) -> Comparison:
    """Compare two sweeps' tables (see the module's docstring)."""
    if min_change < 0:
        raise ExplorerError(f"the smallest change listed must not be negative, got {min_change:g}")
    va, ka = read_run(run_a)
    vb, kb = read_run(run_b)
    pair = _align_targets(va, vb)
    vkeys = ["model", "strategy"] if pair else ["model", "strategy", "target"]
    variants, same_v = diff_rows(va, vb, vkeys, VARIANT_FIGURES, min_change, status="status_kind")
    kernels, same_k = pd.DataFrame(), 0
    if len(ka) and len(kb):
        kkeys = vkeys + ["call_index", "kernel"]
        kernels, same_k = diff_rows(ka, kb, kkeys, KERNEL_FIGURES, min_change, status=None)
    return Comparison(Path(run_a), Path(run_b), pair or ("", ""), variants, kernels, same_v, same_k)


def _pct(x: float) -> str:
    if pd.isna(x):
        return ""
    return "new/gone" if math.isinf(x) else f"{x * 100:+.3g}%"


def summary_table(table: pd.DataFrame, figures: tuple[str, ...]) -> pd.DataFrame:
    """The changed rows for a terminal: keys, what changed, and each figure's relative change."""
    keys = [c for c in ("model", "strategy", "target", "call_index", "kernel") if c in table]
    out = table[keys + ["changed"]].copy()
    for f in figures:
        out[f] = table[f"{f}_change"].map(_pct)
    if "status_a" in table:
        out["status"] = [f"{a} -> {b}" if a != b else "" for a, b in zip(table["status_a"], table["status_b"])]
    return out


def compare_text(c: Comparison, limit: int = 20) -> str:
    """The comparison for a terminal: changed variants, then the largest kernel changes."""
    lines = [f"A: {c.run_a}", f"B: {c.run_b}"]
    if c.targets[0]:
        lines.append(f"targets: {c.targets[0]} (A) against {c.targets[1]} (B): rows paired by model and strategy")
    if len(c.variants):
        lines += ["", f"{len(c.variants)} variant(s) changed ({c.unchanged_variants} unchanged):",
                  summary_table(c.variants, VARIANT_FIGURES).to_string(index=False)]
    else:
        lines += ["", f"no variant changed ({c.unchanged_variants} compared)"]
    if len(c.kernels):
        shown = c.kernels.head(limit)
        lines += ["", f"{len(c.kernels)} kernel call(s) changed ({c.unchanged_kernels} unchanged)"
                  + (f"; the {limit} largest:" if len(c.kernels) > limit else ":"),
                  summary_table(shown, KERNEL_FIGURES).to_string(index=False)]
    else:
        lines += ["", f"no kernel changed ({c.unchanged_kernels} compared)"]
    return "\n".join(lines)


def compare_html(c: Comparison) -> str:
    """``compare.html``: the changed variants' energy in A and B, the largest kernel changes, and both tables."""
    from explorer.reports.html import html_page
    from explorer.reports.plots import Plot, plot_label

    plots = []
    if len(c.variants):
        v = c.variants
        x = (v["model"].astype(str) + " / " + v["strategy"].astype(str)
             + ((" @ " + v["target"].astype(str)) if "target" in v else "")).map(plot_label).tolist()
        traces = tuple({"type": "bar", "name": name, "x": x, "y": (v[f"energy_j_{side}"] * 1e3).tolist()}
                       for name, side in (("A", "a"), ("B", "b")))
        plots.append(Plot("variants", "Energy of the changed variants", "Modelled energy per inference in run A and "
                          "run B, for every variant that changed, largest change first.", traces,
                          {"barmode": "group", "yaxis": {"title": {"text": "energy per inference (mJ)"}},
                           "xaxis": {"tickangle": -35, "automargin": True}}, summary_table(v, VARIANT_FIGURES)))
    if len(c.kernels):
        k = c.kernels[c.kernels["in"] == "both"].head(40)
        x = (k["model"].astype(str) + " / " + k["strategy"].astype(str) + ": " + k["kernel"].astype(str)
             + " #" + k["call_index"].astype(str)).map(plot_label).tolist()
        traces = ({"type": "bar", "name": "energy change (%)", "x": x, "y": (k["energy_j_change"] * 100).tolist()},)
        plots.append(Plot("kernels", "Largest kernel changes", "Relative change of each changed kernel call's modelled "
                          "energy from A to B (the 40 largest).", traces,
                          {"yaxis": {"title": {"text": "energy change (%)"}},
                           "xaxis": {"tickangle": -35, "automargin": True, "showticklabels": len(k) <= 40}},
                          summary_table(c.kernels, KERNEL_FIGURES)))
    intro = [f"A: {c.run_a}", f"B: {c.run_b}",
             f"{len(c.variants)} variant(s) changed, {c.unchanged_variants} unchanged; "
             f"{len(c.kernels)} kernel call(s) changed, {c.unchanged_kernels} unchanged."]
    if c.targets[0]:
        intro.append(f"Targets {c.targets[0]} (A) and {c.targets[1]} (B): rows paired by model and strategy.")
    return html_page("Comparison of two sweeps", intro, plots)
