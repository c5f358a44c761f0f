"""Mixtures of experts through the CLI: built and run on this CPU, checked against onnxruntime."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.mark.parametrize("model", ["moe-mini", "gpt-oss-mini"])
def test_a_small_mixture_runs_here_and_matches_onnxruntime(cli, tmp_path, model):
    done = cli("sweep", model, "--phase", "decode:16", "--batch", 2, "--targets", "cpu", "--strategies", "fused",
               "--out", tmp_path, "--quiet")
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "variants.csv").iloc[0]
    assert row["ran"] and row["within_tolerance"], (row["status"], row["max_abs_error"])


def test_the_models_listing_shows_active_parameters_and_its_rule(cli):
    out = cli("models").stdout
    assert "active (B)" in out and "not the embedding table" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("mixtral-8x7b"))
    assert "46.70" in line and "12.75" in line


def test_a_measured_expert_load_lowers_the_experts_and_bytes_a_step_reads(cli, tmp_path):
    load = tmp_path / "hot.txt"
    load.write_text("# every token routed to experts 0 and 1\n1 1 0 0 0 0 0 0\n")
    common = ("serve", "moe-mini", "--target", "gpu", "--strategies", "fused-bf16", "--batch", 8, "--quiet")
    done = cli(*common, "--out", tmp_path / "uniform")
    assert done.returncode == 0, done.stderr
    done = cli(*common, "--expert-load", load, "--out", tmp_path / "hot")
    assert done.returncode == 0, done.stderr
    uniform = pd.read_csv(tmp_path / "uniform" / "serving.csv").iloc[0]
    hot = pd.read_csv(tmp_path / "hot" / "serving.csv").iloc[0]
    assert uniform["experts_per_step"] == pytest.approx(8 * (1 - 0.75 ** 8)) and uniform["expert_routing"] == "uniform"
    assert hot["experts_per_step"] == 2 and hot["expert_routing"] == "measured (hot.txt)"
    assert hot["weight_bytes_per_step"] < uniform["weight_bytes_per_step"]
    assert "the load measured in hot.txt" in done.stdout


@pytest.mark.parametrize("model, text, why", [
    ("moe-mini", "1 1 1\n", "3 loads for a mixture of 8 experts"),
    ("llama-mini", "1 1\n", "llama-mini is not a mixture of experts"),
])
def test_an_expert_load_that_does_not_fit_is_one_line_and_exit_2(cli, tmp_path, model, text, why):
    load = tmp_path / "load.txt"
    load.write_text(text)
    done = cli("serve", model, "--target", "gpu", "--batch", 8, "--expert-load", load, "--quiet")
    assert done.returncode == 2 and why in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
