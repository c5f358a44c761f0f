"""Printing a benchmark's result table (and writing it as CSV), the same way in every benchmark."""

from __future__ import annotations

import pandas as pd


def print_table(rows: list[dict], csv: str | None = None) -> None:
    """Print ``rows`` as a table with three significant digits; also write them to ``csv`` if given."""
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if csv:
        table.to_csv(csv, index=False)
