"""The Ray backend against a local Ray instance (``.ci/run`` starts one and sets RAY_ADDRESS; without
it the test starts its own): the local backend's rows, and a crash costs one row."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import explorer
from tests.conftest import TOY_TARGET
from tests.e2e.test_sweep_engine import _AbortingStrategy

#: Columns that are measurements of this run, not results: they differ between any two runs.
MEASURED = ["compile_s", "check_run_s", "measured_latency_s", "measured_latency_spread", "onnxruntime_latency_s",
            "onnxruntime_int8_latency_s", "kernel_time_share",
            "latency_vs_onnxruntime",
            # static power is charged over the measured time on the cpu target
            "energy_j", "energy_static_j", "compulsory_ratio", "energy_p05_j", "energy_p95_j",
            "energy_per_sample_j", "measured_samples_per_s", "inferences_per_j", "gflop_per_j", "mean_power_w"]
MEASURED_KERNELS = ["measured_s", "run_time_s", "energy_j", "energy_static_j"]


@pytest.fixture(scope="module")
def ray_instance():
    from explorer.sweep.ray_backend import connect

    ray = connect()
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_local_backends_rows(ray_instance, conv_add_relu_onnx, tmp_path, monkeypatch):
    runs = {}
    for backend in ("local", "ray"):
        monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / backend))  # each compiles everything itself
        runs[backend] = explorer.run_sweep([str(conv_add_relu_onnx)], targets=["cpu", TOY_TARGET],
                                           strategies=["baseline", "fused", "fused-int8"], progress=False,
                                           backend=backend)
    local, ray = runs["local"], runs["ray"]
    assert (ray.compiled, ray.cached) == (3, 0)  # cpu and toy share one generic lowering per strategy
    pd.testing.assert_frame_equal(ray.variants.drop(columns=MEASURED), local.variants.drop(columns=MEASURED))
    pd.testing.assert_frame_equal(ray.kernels.drop(columns=MEASURED_KERNELS), local.kernels.drop(columns=MEASURED_KERNELS))
    cpu = ray.variants[ray.variants.target == "cpu"]
    assert cpu.ran.all() and (cpu.tvm_threads == cpu.onnxruntime_threads).all()
    assert set(ray.variants.node) == {os.uname().nodename}


def test_ray_a_crashing_task_costs_one_row(ray_instance, matmul_onnx):
    crash = _AbortingStrategy("crash", fusion="tvm", layout="nhwc")
    v = explorer.sweep(str(matmul_onnx), targets=[TOY_TARGET], strategies=[crash, "fused"], progress=False,
                       backend="ray").set_index("strategy")
    assert v.loc["crash", "status_kind"] == "crashed"
    assert v.loc["fused", "status_kind"] == "analysed" and v.loc["fused", "energy_j"] > 0
