"""What counts as a change between two sweeps, on hand-made rows."""

from __future__ import annotations

import math

import pandas as pd

from explorer.reports.compare import diff_rows, relative_change


def test_relative_change():
    assert relative_change(2.0, 3.0) == 0.5
    assert relative_change(2.0, 2.0) == 0.0 and relative_change(math.nan, math.nan) == 0.0
    assert math.isinf(relative_change(math.nan, 1.0)) and math.isinf(relative_change(0.0, 1.0))


def test_diff_rows_lists_changed_and_one_sided_rows_largest_first():
    a = pd.DataFrame({"k": ["x", "y", "z"], "energy_j": [1.0, 1.0, 1.0], "status": ["ok"] * 3})
    b = pd.DataFrame({"k": ["x", "y", "w"], "energy_j": [1.001, 1.5, 1.0], "status": ["ok"] * 3})
    table, unchanged = diff_rows(a, b, ["k"], ("energy_j",), min_change=0.01)
    assert unchanged == 1  # x moved by 0.1%, under the limit
    assert table["k"].tolist() == ["w", "z", "y"]  # new and gone first (by key), then +50%
    assert table["in"].tolist() == ["B only", "A only", "both"] and table["changed"].iloc[2] == "energy_j"


