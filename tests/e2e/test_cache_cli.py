"""``explorer cache`` on a real cache, and a sweep whose cache reaches its cap."""

from __future__ import annotations

import os
import time

import pandas as pd

from tests.conftest import TOY_TARGET


def _old_entry(cache, folder="models", name="stale-model.onnx", size=4096, age_days=30):
    (cache / folder).mkdir(parents=True, exist_ok=True)
    path = cache / folder / name
    path.write_bytes(b"x" * size)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


def test_a_sweep_whose_cache_reaches_its_cap_evicts_the_oldest_and_finishes(cli, conv_add_relu_onnx, tmp_path):
    cache = tmp_path / "cache"
    stale = _old_entry(cache)
    done = cli("sweep", conv_add_relu_onnx, "--targets", TOY_TARGET, "--strategies", "baseline,fused", "--quiet",
               "--out", tmp_path / "out", env={"EXPLORER_CACHE": str(cache), "EXPLORER_CACHE_MAX": "1"})
    assert done.returncode == 0, done.stderr
    assert "cache over its cap: evicted the 1 least recently used entries" in done.stderr
    assert not stale.exists()  # older than the sweep: evicted
    assert len(list((cache / "lowerings").iterdir())) == 2  # the sweep's own: it uses them, so they stay
    assert len(pd.read_csv(tmp_path / "out" / "variants.csv")) == 2


def test_cache_info_and_prune_on_a_real_cache(cli, conv_add_relu_onnx, tmp_path):
    env = {"EXPLORER_CACHE": str(tmp_path / "cache"), "EXPLORER_CACHE_MAX": "10G"}
    assert cli("sweep", conv_add_relu_onnx, "--targets", TOY_TARGET, "--strategies", "fused", "--quiet",
               env=env).returncode == 0
    _old_entry(tmp_path / "cache")
    info = cli("cache", "info", env=env)
    assert info.returncode == 0, info.stderr
    assert "its cap 10.00 GB" in info.stdout and "| lowerings | 1 |" in info.stdout and "| models | 1 |" in info.stdout
    pruned = cli("cache", "prune", "--older-than", "7", env=env)
    assert pruned.returncode == 0 and pruned.stdout.startswith("removed 1 entries (4.10 kB)"), pruned.stdout
    assert "| models |" not in cli("cache", "info", env=env).stdout
    bad = cli("cache", "prune", "--max-size", "lots", env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == ("explorer: error: not a size: 'lots' (give bytes, or a "
                                                          "number with K, M, G or T)")
