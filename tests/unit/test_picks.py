"""Choosing among tuning candidates by energy."""

from __future__ import annotations

import math

import pytest

from explorer.core.strategies import Strategy
from explorer.scoring import picks as schedules
from explorer.sweep.tune import tune_model

#: The zoo's tuned strategies spend 128 trials; these spend 4 on the one-kernel fixture.
TINY = Strategy("tiny-tuned", fusion="tvm", tuning="metaschedule:4")

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def records(matmul_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("records")
    first = tune_model(str(matmul_onnx), strategy=TINY, records=path, progress=False)
    return path, first


def test_the_break_even_static_power_is_where_the_best_slower_candidate_ties():
    # fastest: 1 ms, 2 mJ dynamic; 1.5 ms saves 1 mJ over 0.5 ms (2 W); 3 ms saves 1.5 mJ over 2 ms (0.75 W)
    assert schedules.break_even_static_w([1.5e-3, 1e-3, 3e-3], [1e-3, 2e-3, 0.5e-3]) == pytest.approx(2.0)
    assert math.isnan(schedules.break_even_static_w([1e-3, 2e-3], [1e-3, 1e-3]))


