"""Writing a sweep's tables and report into its ``--out`` directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from explorer.reports.html import html_report
from explorer.reports.markdown import markdown_report
from explorer.store.cache import disk_errors

#: Where report.md points for the tuning candidates' scatter.
CANDIDATES_LINK = "report.html#candidates-section"

#: What a spreadsheet runs as a formula when a text cell starts with it (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell that a spreadsheet would run as a formula (one starting with
    :data:`FORMULA_STARTS`: a model named ``=HYPERLINK(...)``) prefixed with ``'``, which spreadsheets
    show as text; numbers are left as they are."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """``table`` as a CSV file at ``path``, its text cells :func:`spreadsheet_safe`."""
    spreadsheet_safe(table).to_csv(path, index=False)


def write_results(out: Path, variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame,
                  schedules: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> None:
    """Write ``variants.csv``, ``kernels.csv``, ``rankings.csv``, for tuned strategies
    ``schedules.csv`` (per kernel, the latency-, energy- and EDP-best candidate) and
    ``candidates.csv`` (every scored candidate, plotted in report.html), ``report.md`` and
    ``report.html`` (the plots, :mod:`explorer.reports.html`) into ``out``."""
    with disk_errors(out):
        _write_results(out, variants, kernels, rankings, schedules, candidates)


def _write_results(out: Path, variants: pd.DataFrame, kernels: pd.DataFrame, rankings: pd.DataFrame,
                   schedules: pd.DataFrame | None, candidates: pd.DataFrame | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(variants, out / "variants.csv")
    write_csv(kernels, out / "kernels.csv")
    write_csv(rankings, out / "rankings.csv")
    for name, table in (("schedules", schedules), ("candidates", candidates)):
        if table is not None and len(table):
            write_csv(table, out / f"{name}.csv")
    plot = CANDIDATES_LINK if candidates is not None and len(candidates) else None
    (out / "report.md").write_text(markdown_report(variants, kernels, rankings, schedules, plot))
    (out / "report.html").write_text(html_report(variants, kernels, candidates))
