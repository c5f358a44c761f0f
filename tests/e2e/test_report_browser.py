"""report.html drawn in headless Chromium, offline."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from explorer.reports.html import html_report
from explorer.reports.plots import report_plots


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_headless_chromium_browser_draws_every_plot_offline(marked_up_sweep, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(html_report(*marked_up_sweep))
    # a proxy that refuses every connection: anything the page fetched would fail to load
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    ids = [p.id for p in report_plots(*marked_up_sweep)]
    for plot_id in ids:
        start = dom.find(f'<div class="plot js-plotly-plot" id="{plot_id}">')
        assert start >= 0, f"plot {plot_id} was not drawn"
        drawn = dom[start:dom.find("<details>", start)]
        assert "main-svg" in drawn and "<path" in drawn, f"plot {plot_id} has no marks"
    assert "<title>Energy exploration report</title>" in dom  # the onerror handler never ran
    assert "<b>bold</b>" not in dom and "<img" not in dom


