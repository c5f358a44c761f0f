"""A model whose name is hostile in every format a result lands in: a spreadsheet formula, markdown pipes
and a line break, HTML markup. Each output keeps it literal (issue 37 part 4)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.conftest import TOY_TARGET

#: A file name that starts a spreadsheet formula (a DDE payload), splits a markdown table, breaks its line
#: and opens HTML.
HOSTILE = "=cmd|' -C calc'!A0 <img src=x onerror=alert(1)>\nnext"


@pytest.fixture(scope="module")
def hostile_run(conv_add_relu_onnx, tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("hostile")
    model = folder / f"{HOSTILE}.onnx"
    shutil.copy(conv_add_relu_onnx, model)
    done = cli("sweep", model, "--targets", TOY_TARGET, "--strategies", "baseline,fused", "--quiet", "--out",
               folder / "out")
    assert done.returncode == 0, done.stderr
    return folder / "out"


def test_csv_cells_a_spreadsheet_would_run_are_text(hostile_run):
    variants = pd.read_csv(hostile_run / "variants.csv")
    assert set(variants["model"]) == {"'" + HOSTILE}  # a leading ' makes the cell text in every spreadsheet
    assert pd.read_csv(hostile_run / "kernels.csv")["model"].str.startswith("'=").all()


def test_markdown_keeps_the_name_in_its_cell_and_on_its_line(hostile_run):
    text = (hostile_run / "report.md").read_text()
    literal = "=cmd\\|' -C calc'!A0 &lt;img src=x onerror=alert(1)&gt; next"
    assert literal in text and "<img" not in text
    tables, table = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            tables, table = tables + [table], []
    named = [t for t in tables if any("calc" in row for row in t)]
    assert named  # each table naming the model keeps one cell count in every row
    for t in named:
        assert len({row.replace("\\|", "").count("|") for row in t}) == 1, t


def test_html_shows_the_name_and_runs_none_of_it(hostile_run):
    page = (hostile_run / "report.html").read_text()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
