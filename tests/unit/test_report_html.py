"""report.html from a sweep's tables: every plot, escaped model strings, nothing from the network."""

from __future__ import annotations

import json
import re

import pandas as pd

from explorer.reports.html import html_report, script_json
from explorer.reports.plots import pareto_front, report_plots


def _phase_rows():
    rows = []
    for phase, tokens, energy, latency in (("prefill:8", 8, 4e-3, 2e-3), ("decode:8", 1, 2e-3, 1e-3)):
        rows.append({"model": f"tiny@{phase.replace(':', '')}", "strategy": "fused", "target": "cpu", "phase": phase,
                     "batch": 1, "tokens": tokens, "energy_j": energy, "latency_s": latency, "measured_latency_s": None,
                     "energy_per_token_j": energy / tokens, "tokens_per_s": tokens / latency,
                     "measured_tokens_per_s": None, "kv_cache_bytes": 0 if tokens > 1 else 4096, "bound": "dram"})
    return pd.DataFrame(rows)


def test_script_json_cannot_close_a_script_element():
    text = script_json({"name": "</script><!--", "x": [float("nan"), 1.0], "amp": "a&b\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": "</script><!--", "x": [None, 1.0], "amp": "a&b\u2028"}


def test_pareto_front_keeps_the_points_nothing_beats_on_both():
    # (latency, energy): (2, 5) is beaten by (1, 4); (3, 1) is the cheapest
    assert pareto_front([(1, 4), (2, 5), (3, 1), (4, 2)]) == [0, 2]


def test_every_plot_of_a_sweep_is_there(marked_up_sweep):
    ids = [p.id for p in report_plots(*marked_up_sweep)]
    assert ids == ["breakdown", "pareto", "targets", "fusion", "roofline-0", "roofline-1", "roofline-2", "precision"]


def test_breakdown_components_add_up_to_the_energy(marked_up_sweep):
    table = next(p for p in report_plots(*marked_up_sweep) if p.id == "breakdown").table
    parts = table.columns[4:]
    assert (table[parts].sum(axis=1) - table["energy_j"]).abs().max() < 1e-9 * table["energy_j"].max()


def test_model_strings_are_escaped_in_text_and_json(marked_up_sweep):
    page = html_report(*marked_up_sweep)
    body = page.split("</head>", 1)[1]
    assert "<b>" not in body and "<img" not in body and body.count("</script>") == 1
    assert "&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in body  # in the tables and headings as text
    # inside the plots' JSON: \u escapes for the HTML parser, entities for plotly's label markup
    assert "\\u0026lt;b\\u0026gt;bold" in body


def test_the_page_loads_nothing_from_the_network(marked_up_sweep):
    page = html_report(*marked_up_sweep)
    outside_scripts = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", outside_scripts)
    assert "<link" not in outside_scripts and "@import" not in page.split("<script>")[0]


def test_prefill_and_decode_are_side_by_side_per_token():
    from explorer.reports.markdown import phases_section
    from explorer.reports.plots import phases_plot

    v = _phase_rows()
    plot = phases_plot(v)
    assert [t["name"] for t in plot.traces] == ["prefill:8", "decode:8"]
    assert [t["y"] for t in plot.traces] == [[0.5], [2.0]]  # mJ per token: 4 mJ / 8 tokens, 2 mJ / 1
    text = "\n".join(phases_section(v))
    assert "| tiny | fused | cpu | 1 | prefill:8 | 500 uJ | 4000 | dram | decode:8 | 2 mJ | 1000 | dram |" in text
