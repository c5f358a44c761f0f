"""Sampling the figures' cited ranges, and whether pairwise rankings survive it."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from cost_models import uncertainty
from cost_models.target_file import parse_target
from tests.conftest import TOY_TARGET
from tests.unit.test_energy import row


@pytest.fixture
def uncertain_toy():
    """The toy target with DRAM energy anywhere in 25-400 pJ/B, MAC energy in 0.5-2 pJ, no static power."""
    with open(TOY_TARGET, "rb") as f:
        data = tomllib.load(f)
    data["static_power_w"].update(value=0.0, low=0.0, high=0.0)
    data["memory"][0]["energy_pj_per_byte"].update(low=25.0, high=400.0)
    data["compute"][0]["energy_pj"]["mac"].update(low=0.5, high=2.0)
    return parse_target(data, "uncertain-toy")


def wl(macs, dram_bytes):
    return pd.DataFrame([row(macs=macs, op_mac_float32=macs, traffic_curve=f"0:{dram_bytes}")])


def test_samples_stay_in_the_cited_range_and_centre_on_the_value(uncertain_toy):
    draws = uncertainty.sample_figures(uncertain_toy, 4000, seed=1)
    dram = draws["memory.dram.energy_pj_per_byte"]
    assert dram.shape == (4000, 1)
    assert dram.min() >= 25.0 and dram.max() <= 400.0
    assert np.median(dram) == pytest.approx(100.0, rel=0.15)  # the mode of a log-triangular at 100
    # a triangular on [-1, 1] (in log units of a factor 4) has 75% of its mass within 0.5 of the mode,
    # a uniform 50%: 4000 draws put the share within 0.03 of 0.75 (4 standard deviations)
    inner = np.abs(np.log(dram / 100.0)) < 0.5 * np.log(4.0)
    assert inner.mean() == pytest.approx(0.75, abs=0.03)
    assert (draws["compute.float32.energy_pj.add"] == 0.5).all()  # a figure without a range never moves


def test_sampling_is_deterministic_for_a_seed(uncertain_toy):
    a = uncertainty.sample_figures(uncertain_toy, 50, seed=7)
    b = uncertainty.sample_figures(uncertain_toy, 50, seed=7)
    assert all((a[k] == b[k]).all() for k in a)


def test_exact_figures_give_a_point_and_a_certain_ranking(toy):
    spread, pairs = uncertainty.compare({"small": wl(1e3, 1000), "big": wl(1e3, 5000)}, toy, samples=100)
    s = spread.set_index("variant")
    assert s.loc["small", "energy_p05_j"] == pytest.approx(s.loc["small", "energy_j"])
    assert s.loc["small", "energy_p95_j"] == pytest.approx(s.loc["small", "energy_j"])
    assert pairs.to_dict("records") == [{"lower": "small", "higher": "big",
                                         "nominal_ratio": pytest.approx(s.loc["big", "energy_j"] / s.loc["small", "energy_j"]),
                                         "share_lower_wins": 1.0}]


def test_a_variant_that_does_less_of_everything_wins_every_sample(uncertain_toy):
    _, pairs = uncertainty.compare({"lean": wl(1e6, 1e4), "fat": wl(2e6, 2e4)}, uncertain_toy, samples=500)
    assert pairs.iloc[0].lower == "lean" and pairs.iloc[0].share_lower_wins == 1.0


def test_a_trade_off_between_macs_and_bytes_depends_on_the_figures(uncertain_toy):
    # nominally 3.4e6 MACs (3.4 uJ) beat 1e6 MACs + 3e4 DRAM bytes (4.0 uJ), but only while a DRAM
    # byte costs more than 80 MACs: the sampled ranges straddle that
    variants = {"bytes": wl(1e6, 3e4), "macs": wl(3.4e6, 0)}
    _, pairs = uncertainty.compare(variants, uncertain_toy, samples=2000, seed=3)
    pair = pairs.iloc[0]
    assert (pair.lower, pair.higher) == ("macs", "bytes")
    assert pair.nominal_ratio == pytest.approx(4.0 / 3.4)
    # with shared samples "macs" wins exactly when a DRAM byte costs more than 80 MACs:
    # P(d / m > 80) for the log-triangular d and m above is 0.632 (2e7 draws); 2000 samples put the
    # share within 0.033 of it (3 standard deviations)
    assert pair.share_lower_wins == pytest.approx(0.632, abs=0.033)
