"""Measured time per kernel call: ``vm.set_instrument`` around every call, matched to the kernel table."""

from __future__ import annotations

import math

import pandas as pd

import explorer
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


def test_a_sweep_times_every_kernel_call_of_a_cpu_build(conv_add_relu_onnx):
    result = explorer.run_sweep([str(conv_add_relu_onnx)], targets=["cpu"], strategies=["baseline", "fused"],
                                progress=False)
    k, v = result.kernels, result.variants.set_index("strategy")
    assert (k.measured_s > 0).all()
    assert k.groupby("strategy").size().to_dict() == {"baseline": 3, "fused": 1}  # conv, add, relu; one fused
    # on kernels of microseconds the instrument's own Python callback dominates each call (shares of
    # 1.6-2.0 here): the share is only said, not bounded
    assert (v.kernel_time_share > 0).all()
