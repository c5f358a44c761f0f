"""Strategies are registered data."""

from __future__ import annotations

import pytest

from explorer.core.strategies import Strategy, get_strategy, list_strategies, parse_strategies


def test_registered_names():
    assert [s.name for s in list_strategies()][:4] == ["baseline", "fused", "nhwc", "fused-nhwc"]


def test_unknown_strategy_lists_known_names():
    with pytest.raises(KeyError, match="known strategies: baseline, fused, nhwc, fused-nhwc"):
        get_strategy("turbo")


def test_all_and_lists():
    assert [s.name for s in parse_strategies("all")] == [
        "baseline", "fused", "nhwc", "fused-nhwc", "fused-fp16", "fused-bf16", "int8", "fused-int8",
        "fused-nhwc-int8"]
    assert [s.name for s in parse_strategies("fused, baseline,fused")] == ["fused", "baseline"]
    assert [s.name for s in parse_strategies("all,fused-tuned")][-1] == "fused-tuned"


def test_tuning_axis_parses_budget_and_pick():
    s = Strategy("t", fusion="tvm", tuning="metaschedule:64:edp")
    assert (s.tuned, s.trials, s.pick) == (True, 64, "edp")
    assert Strategy("u", tuning="metaschedule:8").pick == "latency"
    with pytest.raises(ValueError, match="metaschedule:N"):
        Strategy("v", tuning="metaschedule:0")


def test_strategies_are_hashable_and_keyed_by_choices():
    a = Strategy("a", fusion="tvm")
    b = Strategy("b", fusion="tvm")
    assert len({a, get_strategy("fused")}) == 2
    assert a.key == b.key == get_strategy("fused").key


def test_invalid_axis_value_is_rejected():
    with pytest.raises(ValueError, match="fusion='maybe'"):
        Strategy("x", fusion="maybe")
def test_untuned_all_excludes_tuned_strategies():
    assert not any(s.tuned for s in parse_strategies("all"))


