"""The documentation stays whole: what the README links to exists, and the reference names every column
a sweep writes and every status a variant can end in."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from cost_models.targets import list_targets, load_target
from explorer.core.variant import StatusKind
from explorer.scoring.rows import VARIANT_COLUMNS
from tests.conftest import DATA, ROOT

DOCS = ROOT / "docs"


def _links(markdown: str) -> list[str]:
    """Relative link targets of a markdown text, without their anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_file_the_readme_links_to_exists():
    links = _links((ROOT / "README.md").read_text())
    assert links, "the README links into the docs"
    assert [t for t in links if not (ROOT / t).exists()] == []


def test_every_page_links_to_pages_that_exist():
    broken = [(page.relative_to(DOCS), t) for page in DOCS.rglob("*.md") for t in _links(page.read_text())
              if t and not (page.parent / t).exists()]
    assert broken == []


def test_every_variants_column_is_described():
    reference = (DOCS / "reference" / "csv-columns.md").read_text()
    assert [c for c in VARIANT_COLUMNS if f"`{c}`" not in reference] == []


def test_every_kernels_column_is_described():
    reference = (DOCS / "reference" / "csv-columns.md").read_text()
    levels = {lvl.name for t in list_targets() for lvl in load_target(t).memory} - {"dram"}
    per_level = {c for lvl in levels for c in (f"{lvl}_bytes", f"energy_{lvl}_j")}
    columns = pd.read_csv(DATA / "sweep" / "kernels.csv", nrows=0).columns
    undescribed = [c for c in columns if f"`{c}`" not in reference and not (c.startswith("op_") or c in per_level)]
    assert undescribed == []
    assert "`op_<kind>_<dtype>`" in reference and "`<level>_bytes`" in reference


@pytest.mark.parametrize("kind", [k.value for k in StatusKind])
def test_every_status_kind_is_described(kind):
    assert f"`{kind}`" in (DOCS / "reference" / "exit-codes.md").read_text()
