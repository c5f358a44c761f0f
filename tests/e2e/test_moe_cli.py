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
