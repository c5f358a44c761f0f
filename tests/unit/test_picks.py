"""Choosing among tuning candidates by energy."""

from __future__ import annotations

import math

import pytest

from explorer.scoring import picks as schedules


def test_the_break_even_static_power_is_where_the_best_slower_candidate_ties():
    # fastest: 1 ms, 2 mJ dynamic; 1.5 ms saves 1 mJ over 0.5 ms (2 W); 3 ms saves 1.5 mJ over 2 ms (0.75 W)
    assert schedules.break_even_static_w([1.5e-3, 1e-3, 3e-3], [1e-3, 2e-3, 0.5e-3]) == pytest.approx(2.0)
    assert math.isnan(schedules.break_even_static_w([1e-3, 2e-3], [1e-3, 1e-3]))


