"""The energy model on round-number targets: exact joules by hand."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest

from cost_models import energy
from cost_models.target_file import parse_target
from cost_models.workload import curve_at
from tests.conftest import TOY_TARGET


def row(**kw):
    base = dict(kernel="k", call_index=0, macs=0.0, flops=0.0, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
                model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0, local_access_bytes=0.0,
                traffic_curve="0:0", unit_traffic_curve="0:0")
    base.update(kw)
    return base


@pytest.fixture
def toy3():
    """The toy target with a 10 kB level inside its 1 MB SRAM: dram > sram > l1."""
    with open(TOY_TARGET, "rb") as f:
        data = tomllib.load(f)
    fig = lambda v: {"value": v, "low": v, "high": v, "source": "test fixture"}  # noqa: E731
    data["memory"].append({"name": "l1", "capacity_bytes": 1e4, "bandwidth_bytes_per_s": fig(1e11),
                           "energy_pj_per_byte": fig(0.1)})
    return parse_target(data, "toy3")


def test_compute_bound_kernel(toy):
    # 1e6 float32 MACs at 1 pJ, 1e3 adds at 0.5 pJ; 8 kB from DRAM at 100 pJ/B; 1 MB of accesses in SRAM at 1 pJ/B
    df = pd.DataFrame([row(op_mac_float32=1e6, op_add_float32=1e3, macs=1e6, flops=2.001e6,
                           traffic_curve="0:16000 4096:8000", access_bytes=1e6)])
    s = energy.score(df, toy).iloc[0]
    assert s.energy_compute_j == pytest.approx((1e6 * 1.0 + 1e3 * 0.5) * 1e-12)
    assert s.dram_bytes == 8000  # the curve at the SRAM's 1 MB
    assert s.energy_dram_j == pytest.approx(8e3 * 100 * 1e-12)
    assert s.sram_bytes == 1e6
    assert s.energy_onchip_j == pytest.approx(1e6 * 1.0 * 1e-12)
    assert s.latency_s == pytest.approx(2.001e6 / 1e9)  # compute: 2 ops per MAC at 1 Gop/s
    assert s.bound == "compute"
    assert s.energy_static_j == pytest.approx(1.0 * 2.001e6 / 1e9)
    assert s.energy_j == pytest.approx(s.energy_compute_j + s.energy_dram_j + s.energy_onchip_j + s.energy_static_j)


def test_dram_bound_kernel(toy):
    df = pd.DataFrame([row(op_add_float32=10.0, traffic_curve="0:2000000")])
    s = energy.score(df, toy).iloc[0]
    assert s.bound == "dram"
    assert s.latency_s == pytest.approx(2e6 / 1e9)
    assert s.dram_bytes == 2e6


def test_an_accelerator_s_kernel_launch_adds_to_each_kernel_and_its_static_energy():
    with open(TOY_TARGET, "rb") as f:
        data = tomllib.load(f)
    data["kernel_launch_s"] = {"value": 1e-3, "low": 1e-3, "high": 1e-3, "source": "test fixture"}
    launched = parse_target(data, "toy-launch")
    df = pd.DataFrame([row(op_add_float32=10.0, traffic_curve="0:2000000")])
    s = energy.score(df, launched).iloc[0]
    assert s.latency_s == pytest.approx(2e6 / 1e9 + 1e-3)  # the DRAM-bound 2 ms, then the launch
    assert s.energy_static_j == pytest.approx(1.0 * (2e-3 + 1e-3))  # the 1 W toy draws static power over both


def test_each_level_gets_the_curve_at_the_next_levels_capacity(toy3):
    df = pd.DataFrame([row(traffic_curve="0:1000000 10000:500000 1000000:10000", access_bytes=2e6)])
    s = energy.score(df, toy3).iloc[0]
    assert s.dram_bytes == 1e4      # dram -> sram: the curve at the SRAM's 1 MB
    assert s.sram_bytes == 5e5      # sram -> l1: the curve at the L1's 10 kB
    assert s.l1_bytes == 2e6        # every load and store of the loop nest
    assert s.energy_sram_j == pytest.approx(5e5 * 1.0e-12)
    assert s.energy_l1_j == pytest.approx(2e6 * 0.1e-12)
    assert s.energy_onchip_j == pytest.approx(s.energy_sram_j + s.energy_l1_j)
    assert s.bound == "sram"        # 5e5 B at 1e10 B/s is the slowest resource
    assert s.latency_s == pytest.approx(5e-5)


def test_shared_and_local_accesses_go_to_the_level_that_serves_them(toy):
    s = energy.score(pd.DataFrame([row(shared_access_bytes=300.0, local_access_bytes=700.0)]), toy).iloc[0]
    assert s.sram_bytes == 1000.0  # the toy's innermost level serves everything


def test_compulsory_bound_moves_model_inputs_from_dram_and_weights_from_the_cache_they_fit(toy):
    df = pd.DataFrame([row(macs=1e6, op_mac_float32=1e6, weight_bytes=3000.0, model_input_bytes=1000.0,
                           traffic_curve="0:9000")])
    s = energy.score(df, toy).iloc[0]
    # the 3000 B of weights stay in the 1 MB SRAM from one inference to the next:
    # 3000 B x 1 pJ + 1000 B x 100 pJ + 1e6 MACs x 1 pJ + 1 W static x max(2e6 ops / 1e9, 3000 B / 1e10 + 1000 B / 1e9)
    assert s.compulsory_energy_j == pytest.approx(3000 * 1e-12 + 1000 * 100e-12 + 1e6 * 1e-12 + 2e6 / 1e9)
    tot = energy.totals(energy.score(df, toy))
    assert tot.compulsory_ratio == pytest.approx(s.energy_j / s.compulsory_energy_j)
    assert tot.compulsory_ratio > 1


def test_compulsory_bound_moves_weights_larger_than_every_cache_from_dram(toy):
    # two kernels' 1.2 MB of weights together exceed the 1 MB SRAM
    df = pd.DataFrame([row(macs=1e3, op_mac_float32=1e3, weight_bytes=6e5, traffic_curve="0:600000"),
                       row(call_index=1, macs=1e3, op_mac_float32=1e3, weight_bytes=6e5, traffic_curve="0:600000")])
    s = energy.score(df, toy).iloc[0]
    # 6e5 B x 100 pJ + 1e3 MACs x 1 pJ + 1 W static x 6e5 B / 1e9 B/s
    assert s.compulsory_energy_j == pytest.approx(6e5 * 100e-12 + 1e3 * 1e-12 + 6e5 / 1e9)


def test_unlisted_op_kind_is_charged_as_an_add(toy):
    s = energy.score(pd.DataFrame([row(op_special_float32=100.0)]), toy).iloc[0]
    assert s.energy_compute_j == pytest.approx(100 * 0.5e-12)


def test_totals_sum_kernels(toy):
    df = pd.DataFrame([row(op_mac_float32=1e6, macs=1e6, flops=2e6), row(call_index=1, traffic_curve="0:1000000")])
    tot = energy.totals(energy.score(df, toy))
    assert tot.kernels == 2
    assert tot.macs == 1e6
    assert tot.dram_bytes == 1e6
    assert tot.latency_s == pytest.approx(2e6 / 1e9 + 1e6 / 1e9)


def test_totals_add_field_by_field_and_name_their_columns():
    a = energy.Totals(kernels=2, macs=10.0, energy_j=3.0, compulsory_energy_j=1.0,
                      latency_by_bound=(("compute", 2.0), ("dram", 1.0)))
    b = energy.Totals(kernels=1, macs=5.0, energy_j=1.0, compulsory_energy_j=1.0, latency_by_bound=(("dram", 4.0),))
    s = a + b
    assert (s.kernels, s.macs, s.energy_j, s.compulsory_energy_j) == (3, 15.0, 4.0, 2.0)
    assert s.latency_by_bound == (("compute", 2.0), ("dram", 5.0)) and s.bound == "dram"
    assert (a.bound, s.compulsory_ratio, energy.Totals().bound) == ("compute", 2.0, "")
    assert list(s.row()) == list(energy.Totals.COLUMNS) and s.row()["compulsory_ratio"] == 2.0


def test_curve_is_a_step_function():
    curve = "0:900 100:500 1000:20"
    assert [curve_at(curve, c) for c in (0, 99, 100, 999, 1000, 1e12)] == [900, 900, 500, 500, 20, 20]


@pytest.mark.parametrize("bad", ["", "5:10", "0:10 0:5", "0:x", "0:1 10"])
def test_malformed_curve_is_an_error(toy, bad):
    with pytest.raises(ValueError, match="malformed traffic_curve"):
        energy.score(pd.DataFrame([row(traffic_curve=bad)]), toy)


def test_missing_workload_column_is_an_error(toy):
    with pytest.raises(ValueError, match="lacks columns"):
        energy.score(pd.DataFrame([{"kernel": "k"}]), toy)



def test_a_step_above_the_power_limit_takes_its_energy_over_the_power_the_limit_leaves(toy):
    import dataclasses

    from cost_models.spec import Figure

    capped = dataclasses.replace(toy, power_limit_w=Figure(5.0, 5.0, 5.0, "test fixture"))  # the toy's static: 1 W
    t = energy.Totals(energy_j=10.0, energy_static_j=1.0, latency_s=1.0)  # 10 W: twice the limit
    out = energy.power_capped(t, capped)
    assert out.latency_s == pytest.approx(9.0 / (5.0 - 1.0))  # 9 J of work over the 4 W left above static
    assert out.power_capped_s == pytest.approx(1.25)
    assert out.energy_static_j == pytest.approx(2.25) and out.energy_j == pytest.approx(11.25)
    assert out.energy_j / out.latency_s == pytest.approx(5.0)  # at the limit
    # two devices: each runs the step at 10 W; energies count both
    both = energy.power_capped(energy.Totals(energy_j=20.0, energy_static_j=2.0, latency_s=1.0), capped, devices=2)
    assert both.latency_s == pytest.approx(2.25) and both.energy_j == pytest.approx(2 * 11.25)
    assert energy.power_capped(energy.Totals(energy_j=4.0, energy_static_j=1.0, latency_s=1.0), capped).power_capped_s == 0


def test_a_partial_last_wave_leaves_the_units_idle_for_its_rest():
    from cost_models.spec import ComputeUnits, wave_efficiency

    sms = ComputeUnits(count=132, source="test")
    assert wave_efficiency(sms, 132) == 1.0 and wave_efficiency(sms, 264) == 1.0
    assert wave_efficiency(sms, 133) == pytest.approx(133 / 132 / 2)  # a second wave of one block
    assert wave_efficiency(sms, 66) == pytest.approx(0.5)  # half the SMs have nothing to do
    assert wave_efficiency(sms, 0) == 1.0  # no launch known


def test_the_wave_model_stretches_compute_and_each_unit_s_memories_not_dram(toy3):
    import dataclasses

    from cost_models.spec import ComputeUnits

    waved = dataclasses.replace(toy3, units=ComputeUnits(count=4, source="test"))
    compute = row(op_mac_float32=1e6, macs=1e6, flops=2e6, traffic_curve="0:100", grid_blocks=2)
    assert energy.score(pd.DataFrame([compute]), waved).iloc[0].latency_s == pytest.approx(2 * 2e6 / 1e9)
    dram = row(op_add_float32=10.0, traffic_curve="0:2000000", grid_blocks=2)
    assert energy.score(pd.DataFrame([dram]), waved).iloc[0].latency_s == pytest.approx(2e6 / 1e9)  # HBM is shared
