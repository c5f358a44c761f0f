"""Writing a sweep's tables and report into its ``--out`` directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from explorer.reports.html import html_report
from explorer.reports.markdown import markdown_report

#: Where report.md points for the tuning candidates' scatter.
CANDIDATES_LINK = "report.html#candidates-section"


def write_results(out: Path, variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame,
                  schedules: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> None:
    """Write ``variants.csv``, ``kernels.csv``, ``rankings.csv``, for tuned strategies
    ``schedules.csv`` (per kernel, the latency-, energy- and EDP-best candidate) and
    ``candidates.csv`` (every scored candidate, plotted in report.html), ``report.md`` and
    ``report.html`` (the plots, :mod:`explorer.reports.html`) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    variants.to_csv(out / "variants.csv", index=False)
    kernels.to_csv(out / "kernels.csv", index=False)
    rankings.to_csv(out / "rankings.csv", index=False)
    for name, table in (("schedules", schedules), ("candidates", candidates)):
        if table is not None and len(table):
            table.to_csv(out / f"{name}.csv", index=False)
    plot = CANDIDATES_LINK if candidates is not None and len(candidates) else None
    (out / "report.md").write_text(markdown_report(variants, kernels, rankings, schedules, plot))
    (out / "report.html").write_text(html_report(variants, kernels, candidates))
