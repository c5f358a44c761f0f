"""Pairing each kernel call with its measured time."""

from __future__ import annotations

import math

import pandas as pd

from explorer.core.variant import Measurement
from explorer.scoring.rows import measured_per_call


def _run(calls) -> Measurement:
    return Measurement([], 0.0, [1.0], kernel_calls_s=calls)


def test_the_kth_call_of_a_kernel_gets_its_kth_timed_call():
    kernels = pd.DataFrame({"call_index": [3, 0, 1, 2], "kernel": ["c", "a", "b", "a"]})
    measured = measured_per_call(kernels, _run([("a", 1.0), ("b", 2.0), ("a", 3.0)]))
    assert measured[1:] == [1.0, 2.0, 3.0] and math.isnan(measured[0])  # c was never timed


def test_without_a_run_no_kernel_is_measured():
    kernels = pd.DataFrame({"call_index": [0], "kernel": ["a"]})
    assert math.isnan(measured_per_call(kernels, None)[0])


