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
