"""The interconnect: bytes a shard's collectives send, their time and energy, on round numbers by hand."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest

from cost_models import energy, interconnect
from cost_models.target_file import TargetError, parse_target
from tests.conftest import TOY_TARGET


def fig(v):
    return {"value": v, "low": v, "high": v, "source": "test fixture"}


def toy_with_links(topology="switch", domain=8):
    """The toy target with links: 1e9 B/s a device, 10 us a collective, 10 pJ a byte sent."""
    with open(TOY_TARGET, "rb") as f:
        data = tomllib.load(f)
    data["interconnect"] = {"name": "toy links", "topology": topology, "domain_devices": domain, "source": "test fixture",
                            "bandwidth_bytes_per_s": fig(1e9), "latency_s": fig(1e-5), "energy_pj_per_byte": fig(10.0)}
    return parse_target(data, "toy-links")


def kernel(**kw):
    base = dict(kernel="k", call_index=0, macs=0.0, flops=0.0, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
                model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0, local_access_bytes=0.0,
                traffic_curve="0:0", unit_traffic_curve="0:0", collective="", collective_bytes=0.0)
    base.update(kw)
    return base


def all_reduce(tensor_bytes, **kw):
    return kernel(kernel="all_reduce", collective="all_reduce", collective_bytes=tensor_bytes, **kw)


def test_a_ring_all_reduce_sends_2_n_minus_1_over_n_of_the_tensor():
    assert interconnect.sent_bytes("all_reduce", 1000.0, 4) == pytest.approx(1500.0)
    assert interconnect.sent_bytes("all_reduce", 1000.0, 2) == pytest.approx(1000.0)


def test_an_all_gather_sends_n_minus_1_over_n_of_the_gathered_tensor():
    assert interconnect.sent_bytes("all_gather", 1000.0, 4) == pytest.approx(750.0)


def test_an_all_reduce_takes_its_fixed_cost_plus_its_bytes_over_the_bandwidth():
    df = pd.DataFrame([all_reduce(1e6, devices=4)])
    s = energy.score(df, toy_with_links()).iloc[0]
    assert s.interconnect_bytes == pytest.approx(1.5e6)
    assert s.latency_s == pytest.approx(1e-5 + 1.5e6 / 1e9)
    assert s.bound == "interconnect"


def test_every_device_s_links_and_static_power_count_in_the_energy():
    df = pd.DataFrame([all_reduce(1e6, devices=4)])
    s = energy.score(df, toy_with_links()).iloc[0]
    # four devices each send 1.5 MB at 10 pJ/B, each at 1 W static over 1.51 ms
    assert s.energy_interconnect_j == pytest.approx(4 * 1.5e6 * 10e-12)
    assert s.energy_static_j == pytest.approx(4 * 1.0 * 1.51e-3)
    assert s.energy_j == pytest.approx(s.energy_interconnect_j + s.energy_static_j)


def test_a_shard_s_kernel_energy_counts_every_device_and_its_latency_one():
    df = pd.DataFrame([kernel(op_mac_float32=1e6, macs=1e6, flops=2e6, devices=2), all_reduce(1e3, devices=2)])
    s = energy.score(df, toy_with_links()).iloc[0]
    assert s.energy_compute_j == pytest.approx(2 * 1e6 * 1e-12)
    assert s.latency_s == pytest.approx(2e6 / 1e9)
    assert s.energy_static_j == pytest.approx(2 * 1.0 * 2e-3)


def test_a_full_mesh_collective_over_fewer_devices_reaches_only_their_links():
    # 8 devices a domain, 7 links each: 4 devices use 3 of them
    df = pd.DataFrame([all_reduce(1e6, devices=4)])
    s = energy.score(df, toy_with_links("mesh")).iloc[0]
    assert s.latency_s == pytest.approx(1e-5 + 1.5e6 / (1e9 * 3 / 7))


def test_totals_count_kernels_apart_from_collectives_and_the_links_time():
    df = pd.DataFrame([kernel(op_mac_float32=1e6, macs=1e6, flops=2e6, devices=2), all_reduce(1e3, devices=2)])
    t = energy.totals(energy.score(df, toy_with_links()))
    assert t.kernels == 1
    assert t.interconnect_latency_s == pytest.approx(1e-5 + 1e3 / 1e9)
    assert t.interconnect_bytes == pytest.approx(1e3)


def test_a_target_without_links_refuses_a_shard(toy):
    df = pd.DataFrame([all_reduce(1e3, devices=2)])
    with pytest.raises(ValueError, match=r"no \[interconnect\] table"):
        energy.score(df, toy)


def test_more_devices_than_the_domain_joins_are_refused():
    assert "exceed the 8" in interconnect.devices_error(toy_with_links(), 16)
    assert interconnect.devices_error(toy_with_links(), 8) == ""


def test_an_unknown_topology_is_a_target_error():
    with pytest.raises(TargetError, match="topology must be one of"):
        toy_with_links("hypercube")
