"""Reading a measured expert load (explorer.workload.expert_load): normalized per line, checked."""

from __future__ import annotations

import pytest

from explorer.core.errors import ExplorerError
from explorer.workload.expert_load import parse_expert_load, read_expert_load


def test_counts_become_the_chance_a_token_picks_each_expert():
    # 2 of 4 experts a token; choices routed 200, 100, 100, 0 (of 400, from 200 tokens): k x share
    load = parse_expert_load("# a comment\n200, 100 100\t0  # layer 0\n", experts=4, experts_per_token=2, layers=12)
    assert load.picks == ((1.0, 0.5, 0.5, 0.0),)
    assert load.rows == 4


def test_one_line_a_layer_is_kept_per_layer():
    load = parse_expert_load("1 1\n3 1\n", experts=2, experts_per_token=1, layers=2, source="trace.txt")
    assert load.picks == ((0.5, 0.5), (0.75, 0.25)) and load.source == "trace.txt"


@pytest.mark.parametrize("text, why", [
    ("1 2 3", "3 loads for a mixture of 4 experts"),
    ("1 2 x 4", "expected 4 numbers"),
    ("1 -2 3 4", "non-negative"),
    ("0 0 0 0", "not all zero"),
    ("1 nan 1 1", "finite"),
    ("7 1 1 1", "expert 0 takes 70.0% of the load, more than 1/2"),
    ("1 1 1 1\n1 1 1 1", "2 lines of loads; give one for all layers or one for each of 3"),
    ("# nothing\n", "0 lines of loads"),
])
def test_a_load_that_does_not_fit_the_mixture_is_one_clear_error(text, why):
    with pytest.raises(ExplorerError, match=why.replace("(", r"\(").replace(".", r"\.")):
        parse_expert_load(text, experts=4, experts_per_token=2, layers=3)


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ExplorerError, match="cannot read the expert load"):
        read_expert_load(tmp_path / "absent.txt", 4, 2, 3)
