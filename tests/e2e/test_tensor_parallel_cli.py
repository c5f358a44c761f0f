"""``--devices N`` on ``serve`` and ``sweep``: one device's shard of a decoder, through the CLI."""

from __future__ import annotations

import pandas as pd
import pytest


def test_serve_over_two_devices_scores_one_device_s_shard(cli, tmp_path):
    done = cli("serve", "llama-mini", "--devices", 2, "--target", "gpu", "--strategies", "fused-bf16", "--batch", 8,
               "--out", tmp_path, "-q")
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "serving.csv").iloc[0]
    assert (row["model"], row["devices"], bool(row["fits"])) == ("llama-mini@tp2", 2, True)
    header = next(line for line in done.stdout.splitlines() if line.startswith("| model"))
    assert "devices" in header and "power a device" in header


def test_serve_over_two_devices_sends_the_ring_s_bytes_a_token(cli, tmp_path):
    done = cli("serve", "llama-mini", "--devices", 2, "--target", "gpu", "--strategies", "fused-bf16", "--batch", 8,
               "--out", tmp_path, "-q")
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "serving.csv").iloc[0]
    # llama-mini (4 layers, d_model 256, vocabulary 32000) over N = 2, float32 activations and logits, a
    # prompt of 512 and 390 output tokens: 9 all-reduces of d_model a token, the logits of every position
    # gathered (llama-mini's LM head runs on all of them); the ring sends 2(N-1)/N and (N-1)/N of them
    decode = 9 * 1.0 * 256 * 4 + 0.5 * 32000 * 4
    prefill = (9 * 1.0 * 512 * 256 * 4 + 0.5 * 512 * 32000 * 4) / 390
    assert row["interconnect_bytes_per_token"] == pytest.approx(decode + prefill)
    assert 0 < row["interconnect_energy_share"] < row["interconnect_time_share"] < 1


def test_a_target_without_links_refuses_devices_in_one_line(cli, tmp_path):
    done = cli("sweep", "llama-mini", "--devices", 2, "--targets", "cpu", "--no-build", "--quiet", "--out", tmp_path)
    assert done.returncode == 2 and "has no [interconnect] table" in done.stderr and "Traceback" not in done.stderr


def test_a_sweep_over_two_devices_lowers_half_the_weights_on_each(cli, tmp_path):
    constant = {}
    for devices in (1, 2):
        done = cli("sweep", "llama-mini", "--devices", devices, "--phase", "decode:16", "--targets", "gpu",
                   "--strategies", "fused-bf16", "--no-build", "--out", tmp_path / str(devices), "--quiet")
        assert done.returncode == 0, done.stderr
        row = pd.read_csv(tmp_path / str(devices) / "variants.csv").iloc[0]
        constant[devices] = row["constant_bytes"]
    assert row["model"].startswith("llama-mini@tp2@decode16")
    # half of every projection and of the vocabulary's embedding and LM head; the norms (2 x 256 a layer)
    # whole (the shard's shapes are checked exactly in tests/unit/test_tensor_parallel.py)
    assert constant[2] / constant[1] == pytest.approx(0.5, abs=0.002)


@pytest.mark.parametrize(("model", "devices", "message"), [
    ("resnet18", 2, "resnet18: tensor parallelism (@tp2, --devices) splits Llama-family decoders only"),
    ("llama-mini", 3, "query heads (8) do not split over 3 devices"),
])
def test_a_model_that_cannot_be_split_is_one_line_and_exit_2(cli, model, devices, message):
    done = cli("sweep", model, "--devices", devices, "--targets", "gpu", "--no-build", "--quiet")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_llama_70b_over_four_devices_sends_the_stated_bytes_a_token(cli, tmp_path):
    done = cli("serve", "llama-3.1-70b", "--devices", 4, "--target", "gpu", "--strategies", "fused-bf16", "--batch", 8,
               "--out", tmp_path, "-q")
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "serving.csv").iloc[0]
    # docs/guide/decoders.md, "The interconnect": 80 layers, d_model 8192, vocabulary 128256, float32
    # activations and logits, the LM head on the last position; prompt 512, 390 output tokens
    layers, d, vocab, n, p, o = 80, 8192, 128256, 4, 512, 390
    decode = (2 * layers + 1) * 2 * (n - 1) / n * d * 4 + (n - 1) / n * vocab * 4
    prefill = ((2 * layers + 1) * 2 * (n - 1) / n * p * d * 4 + (n - 1) / n * vocab * 4) / o
    assert row["interconnect_bytes_per_token"] == pytest.approx(decode + prefill)  # 18,688,195 B
