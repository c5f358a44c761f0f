"""A day of serving, by hand, and the cited data-centre defaults."""

from __future__ import annotations

import pytest

from cost_models.datacentre import load_datacentre, project_day

HAND = dict(pue=1.5, wue_l_per_kwh=0.5, electricity_water_l_per_kwh=2.0, grid_g_co2_per_kwh=400.0, usd_per_kwh=0.1,
            utilization=0.5)


def test_a_day_of_1000_requests_of_2_joules_by_hand():
    # 1000 x 0.5 s busy; at 50% utilization as long idle at 2 W: 2000 J + 1000 J = 3000 J at the equipment
    day = project_day(1000, energy_per_request_j=2.0, device_s_per_request=0.5, idle_power_w=2.0,
                      dc=load_datacentre(**HAND))
    assert day.it_kwh == pytest.approx(3000 / 3.6e6)
    assert day.wall_kwh == pytest.approx(1.5 * 3000 / 3.6e6)
    assert day.water_onsite_l == pytest.approx(0.5 * 3000 / 3.6e6)
    assert day.water_offsite_l == pytest.approx(2.0 * 1.5 * 3000 / 3.6e6)
    assert day.co2_kg == pytest.approx(1.5 * 3000 / 3.6e6 * 0.4)
    assert day.usd == pytest.approx(1.5 * 3000 / 3.6e6 * 0.1)
    assert day.devices == pytest.approx(1000 / 86400)  # 500 s busy + 500 s idle of one device's day


def test_full_utilization_charges_no_idle_time():
    day = project_day(1000, 2.0, 0.5, idle_power_w=100.0, dc=load_datacentre(**{**HAND, "utilization": 1.0}))
    assert day.it_kwh == pytest.approx(2000 / 3.6e6)


def test_every_default_is_cited_and_in_its_range():
    for name, fig in load_datacentre().figures().items():
        assert fig.source and fig.low <= fig.value <= fig.high, name


