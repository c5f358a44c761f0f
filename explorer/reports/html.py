"""HTML pages of the explorer's results, rendered with Jinja2 (autoescaped) and opened offline.

``report.html`` puts a sweep's plots (:mod:`explorer.reports.plots`) on one page that inlines plotly.js
(its ``basic`` bundle, MIT, vendored under ``templates/``: scatter and bar charts are all it draws) and
one JSON document per plot; it loads nothing from the network. Each plot has the table of the numbers
it draws beneath it. ``compare.html`` (:mod:`explorer.reports.compare`) uses the same page, and
``measure.html`` (:mod:`explorer.measure.report`) its own small template.

Every string that comes from a model (model, node, kernel and tensor names) is escaped: by Jinja2 in the
page's text, by pandas in the tables, and inside the embedded JSON both for the HTML parser (``<``,
``>``, ``&`` as ``\\u`` escapes, so no ``</script>`` can end a script early) and for plotly
(:func:`explorer.reports.plots.plot_label`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from explorer.reports.plots import Plot, report_plots

TEMPLATES = Path(__file__).resolve().parent / "templates"
PLOTLY_JS = TEMPLATES / "plotly-basic.min.js"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
.plot { width: 100%; height: 520px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
details { margin: 0.5em 0 2em; }
.caption { color: #555; }
"""


def _clean(obj):
    """``obj`` with NaN and infinities as ``None`` (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def script_json(obj) -> str:
    """``obj`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and the two
    JavaScript line separators are ``\\u`` escapes, so no string in it can close the element."""
    text = json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def table_html(table: pd.DataFrame, limit: int = 200) -> str:
    """The first ``limit`` rows of ``table`` as an HTML table (pandas escapes every cell), and how many more
    rows there are."""
    shown = table.head(limit)
    more = f"<p class='more'>{len(table) - limit} more rows in the CSV files.</p>" if len(table) > limit else ""
    return shown.to_html(index=False, escape=True, na_rep="", float_format=lambda x: f"{x:.4g}", border=0) + more


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["script_json"] = lambda obj: Markup(script_json(obj))
    env.filters["table_html"] = lambda table, limit=200: Markup(table_html(table, limit))
    env.filters["plot_layout"] = lambda plot: {"margin": {"t": 30}, **plot.layout}
    return env


ENVIRONMENT = _environment()


def html_page(title: str, intro: list[str], plots: list[Plot], sections: list[tuple[str, str]] = ()) -> str:
    """A self-contained page: ``intro`` paragraphs (plain text, escaped), the plots with their tables,
    then ``sections`` of (heading, HTML already escaped)."""
    return ENVIRONMENT.get_template("page.html.j2").render(
        title=title, intro=intro, plots=plots, sections=[(h, Markup(c)) for h, c in sections],
        style=Markup(_STYLE), plotly_js=Markup(PLOTLY_JS.read_text()))


def html_report(variants: pd.DataFrame, kernels: pd.DataFrame, candidates: pd.DataFrame | None = None) -> str:
    """``report.html`` of a sweep's variants and kernels tables (and a tuned sweep's candidates)."""
    models = ", ".join(dict.fromkeys(variants["model"].astype(str)))
    targets = ", ".join(dict.fromkeys(variants["target"].astype(str)))
    ok = variants[variants["energy_j"].notna()]
    intro = [f"Models: {models}. Targets: {targets}. {len(variants)} variants, {len(ok)} with numbers.",
             "Energy is modelled from each variant's lowered TIR: operations by kind and dtype, traffic at every "
             "memory level, static power over the variant's time (measured where the variant ran on the hardware "
             "its target describes). report.md has the same results as text; the CSV files have every column."]
    problems = variants[~variants["status_kind"].isin(("ok", "analysed", "built-not-run", "emulated"))]
    sections = []
    if len(problems):
        sections.append(("Variants without numbers or with problems",
                         table_html(problems[["model", "strategy", "target", "status_kind", "status"]])))
    return html_page("Energy exploration report", intro, report_plots(variants, kernels, candidates), sections)
