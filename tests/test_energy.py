"""The energy model on a round-number target: exact joules by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from cost_models import energy
from cost_models.targets import load_target
from tests.conftest import TOY_TARGET


def row(**kw):
    base = dict(kernel="k", call_index=0, macs=0.0, flops=0.0, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
                scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0, local_access_bytes=0.0)
    base.update(kw)
    return base


@pytest.fixture
def toy():
    return load_target(TOY_TARGET)


def test_compute_bound_kernel(toy):
    # 1e6 float32 MACs at 1 pJ, 1e3 adds at 0.5 pJ; 4 kB in, 4 kB out of DRAM at 100 pJ/B; 1 MB on chip at 1 pJ/B
    df = pd.DataFrame([row(op_mac_float32=1e6, op_add_float32=1e3, macs=1e6, flops=2.001e6,
                           read_bytes=4e3, write_bytes=4e3, access_bytes=1e6)])
    s = energy.score(df, toy).iloc[0]
    assert s.energy_compute_j == pytest.approx((1e6 * 1.0 + 1e3 * 0.5) * 1e-12)
    assert s.energy_dram_j == pytest.approx(8e3 * 100 * 1e-12)
    assert s.energy_onchip_j == pytest.approx(1e6 * 1.0 * 1e-12)
    assert s.latency_s == pytest.approx(2.001e6 / 1e9)  # compute: 2 ops per MAC at 1 Gop/s
    assert s.bound == "compute"
    assert s.energy_static_j == pytest.approx(1.0 * 2.001e6 / 1e9)
    assert s.energy_j == pytest.approx(s.energy_compute_j + s.energy_dram_j + s.energy_onchip_j + s.energy_static_j)


def test_dram_bound_kernel(toy):
    df = pd.DataFrame([row(op_add_float32=10.0, read_bytes=1e6, write_bytes=1e6)])
    s = energy.score(df, toy).iloc[0]
    assert s.bound == "dram"
    assert s.latency_s == pytest.approx(2e6 / 1e9)
    assert s.dram_bytes == 2e6


def test_scratch_that_does_not_fit_on_chip_goes_to_dram(toy):
    fits = energy.score(pd.DataFrame([row(scratch_bytes=5e5)]), toy).iloc[0]
    spills = energy.score(pd.DataFrame([row(scratch_bytes=2e6)]), toy).iloc[0]
    assert fits.dram_bytes == 0
    assert spills.dram_bytes == 4e6  # written once and read once


def test_unlisted_op_kind_is_charged_as_an_add(toy):
    s = energy.score(pd.DataFrame([row(op_special_float32=100.0)]), toy).iloc[0]
    assert s.energy_compute_j == pytest.approx(100 * 0.5e-12)


def test_totals_sum_kernels(toy):
    df = pd.DataFrame([row(op_mac_float32=1e6, macs=1e6, flops=2e6), row(call_index=1, read_bytes=1e6)])
    tot = energy.totals(energy.score(df, toy))
    assert tot["kernels"] == 2
    assert tot["macs"] == 1e6
    assert tot["dram_bytes"] == 1e6
    assert tot["latency_s"] == pytest.approx(2e6 / 1e9 + 1e6 / 1e9)


def test_missing_workload_column_is_an_error(toy):
    with pytest.raises(ValueError, match="lacks columns"):
        energy.score(pd.DataFrame([{"kernel": "k"}]), toy)
