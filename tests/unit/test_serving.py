"""Serving figures from prefill and decode variants (explorer.scoring.serving), checked by hand."""

import pandas as pd
import pytest

from explorer.scoring.serving import ServingWorkload, achieved_batch, serving_row, smallest_devices


def test_the_batch_is_capped_by_the_cache_room_at_90_percent_of_device_memory():
    # 100 GB device: 90 GB, less 50 GB of weights, leaves 40 GB: 40 sequences of 1 GB
    assert achieved_batch(64, 100e9, 50e9, 1e9) == (40, "")
    assert achieved_batch(8, 100e9, 50e9, 1e9) == (8, "")


def test_a_model_whose_weights_do_not_fit_says_why():
    batch, why = achieved_batch(8, 80e9, 141e9, 1e9)
    assert batch == 0 and "weights 141.0 GB" in why and "90% of the device's 80.0 GB" in why


def test_energy_per_output_token_integrates_decode_over_the_contexts():
    w = ServingWorkload(prompt_tokens=10, output_tokens=4, prefill_batch=2)  # contexts 10 and 14
    prefill = pd.Series({"energy_j": 8.0, "latency_s": 2.0})  # 4 J, 1 s per sequence
    low = pd.Series({"energy_j": 1.0, "latency_s": 0.1})      # decode step at context 10, batch 2
    high = pd.Series({"energy_j": 2.0, "latency_s": 0.2})     # at context 14
    row = serving_row(w, 2, 2, "", prefill, low, high)
    # steps at contexts 10..13: 1 + 0.25 k J for the batch of 2 -> mean 1.375 J, 0.6875 J per sequence
    assert row["energy_per_output_token_j"] == pytest.approx((4 + 4 * 0.6875) / 4)
    assert row["prefill_energy_share"] == pytest.approx(4 / (4 + 2.75))
    assert row["inter_token_latency_s"] == pytest.approx(0.15)  # at context 12
    # a batch of 2: 2 prefills of 1 s and 4 steps of 0.1375 s; 8 tokens
    assert row["output_tokens_per_s"] == pytest.approx(8 / (2 + 0.55))
    assert row["mean_power_w"] == pytest.approx(2 * (4 + 2.75) / (2 + 0.55))


def test_a_row_says_when_the_power_limit_stretched_a_step():
    w = ServingWorkload(prompt_tokens=10, output_tokens=4)
    prefill = pd.Series({"energy_j": 8.0, "latency_s": 2.0, "power_capped_s": 0.0})
    low = pd.Series({"energy_j": 1.0, "latency_s": 0.1, "power_capped_s": 0.0})
    high = pd.Series({"energy_j": 2.0, "latency_s": 0.2, "power_capped_s": 0.05})
    assert serving_row(w, 2, 2, "", prefill, low, high)["power_capped"]
    assert not serving_row(w, 2, 2, "", prefill, low, high.drop("power_capped_s"))["power_capped"]


def test_a_tensor_parallel_deployment_s_power_is_one_device_s_share_of_the_energy_of_all():
    w = ServingWorkload(prompt_tokens=10, output_tokens=4, prefill_batch=2)
    prefill = pd.Series({"energy_j": 8.0, "latency_s": 2.0})
    low, high = pd.Series({"energy_j": 1.0, "latency_s": 0.1}), pd.Series({"energy_j": 2.0, "latency_s": 0.2})
    one, four = serving_row(w, 2, 2, "", prefill, low, high), serving_row(w, 2, 2, "", prefill, low, high, devices=4)
    # a shard's energies already count every device (cost_models.energy): the token costs what they say
    assert four["energy_per_output_token_j"] == one["energy_per_output_token_j"]
    assert four["mean_power_w"] == pytest.approx(one["mean_power_w"] / 4)
    assert four["inter_token_latency_s"] == one["inter_token_latency_s"]


def test_the_interconnect_s_bytes_energy_and_time_per_output_token():
    w = ServingWorkload(prompt_tokens=10, output_tokens=4, prefill_batch=2)
    prefill = pd.Series({"energy_j": 8.0, "latency_s": 2.0, "interconnect_bytes": 1000.0,
                         "energy_interconnect_j": 0.8, "interconnect_latency_s": 0.2})
    step = {"latency_s": 0.1, "interconnect_bytes": 40.0, "energy_interconnect_j": 0.1, "interconnect_latency_s": 0.01}
    low, high = pd.Series({"energy_j": 1.0, **step}), pd.Series({"energy_j": 2.0, **step})
    row = serving_row(w, 2, 2, "", prefill, low, high, devices=2)
    # a sequence: half the prefill's 1000 B, and 4 steps of 40 B for a batch of 2; over 4 tokens
    assert row["interconnect_bytes_per_token"] == pytest.approx((500 + 4 * 20) / 4)
    # its energy: 0.4 J of the prefill and 4 x 0.05 J of the steps, of 4 + 2.75 J
    assert row["interconnect_energy_share"] == pytest.approx((0.4 + 0.2) / 6.75)
    # a batch's cycle: 2 prefills of 1 s (0.1 s each on the links) and 4 steps of 0.1 s (0.01 s each)
    assert row["interconnect_time_share"] == pytest.approx((2 * 0.1 + 4 * 0.01) / (2 * 1 + 4 * 0.1))


def test_the_fewest_devices_a_decoder_fits_on():
    # 141 GB of weights on one 80 GB device (72 GB usable): two devices hold 70.5 GB each and 1.5 GB of
    # cache, enough for a sequence of 1 GB over 8 key/value heads split 4 and 4 (0.5 GB a device)
    assert smallest_devices(8, lambda n: True, 1, 80e9, 141e9, 1e9) == 2
    # a cache of 4 GB a sequence (2 GB a device on two) needs four: 35.3 GB of weights each
    assert smallest_devices(8, lambda n: True, 1, 80e9, 141e9, 4e9) == 4
    # from a shard over 4 devices (35.25 GB of weights and 1 GB of cache each): the same answer, two
    assert smallest_devices(8, lambda n: True, 4, 80e9, 35.25e9, 0.25e9) == 2
    # a split the heads refuse is skipped
    assert smallest_devices(8, lambda n: n != 2, 1, 80e9, 141e9, 1e9) == 4
    assert smallest_devices(8, lambda n: True, 1, 80e9, 1e13, 1e9) is None
