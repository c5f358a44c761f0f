"""explorer compare on two real sweeps."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from cost_models.targets import load_target


@pytest.fixture(scope="module")
def two_sweeps(cli, conv_add_relu_onnx, tmp_path_factory):
    """One sweep on cpu; one on a copy of its file whose DRAM energy per byte is 100 times as high (the model's
    weights stay cached: only its input comes from DRAM)."""
    root = tmp_path_factory.mktemp("compare")
    spec = load_target("cpu")
    text = Path(spec.path).read_text()
    dram = re.search(r'\[\[memory\]\]\nname = "dram".*?\[memory\.energy_pj_per_byte\]\nvalue = ([0-9.e+-]+)\nlow = '
                     r'([0-9.e+-]+)\nhigh = ([0-9.e+-]+)', text, re.S)
    dearer = (text[:dram.start(1)] + f"{100 * float(dram.group(1))}\nlow = {100 * float(dram.group(2))}\nhigh = "
              f"{100 * float(dram.group(3))}" + text[dram.end(3):])
    (root / "dram100x.toml").write_text(dearer)
    runs = []
    for name, target in (("a", "cpu"), ("b", str(root / "dram100x.toml"))):
        done = cli("sweep", str(conv_add_relu_onnx), "--targets", target, "--strategies", "baseline,fused",
                   "--out", str(root / name), "--quiet")
        assert done.returncode == 0, done.stderr
        runs.append(root / name)
    return runs


def test_compare_names_the_changed_variants_and_kernels_and_nothing_else(cli, two_sweeps, tmp_path):
    a, b = two_sweeps
    done = cli("compare", str(a), str(b), "--html", str(tmp_path / "compare.html"))
    assert done.returncode == 0, done.stderr
    ka = pd.read_csv(a / "kernels.csv")
    with_dram = ka[99 * ka["energy_dram_j"] / ka["energy_j"] >= 0.01]  # their energy moves by 1% or more
    assert len(with_dram) and len(with_dram) < len(ka)  # the test needs kernels on both sides of the line
    assert "2 variant(s) changed (0 unchanged)" in done.stdout
    assert f"{len(with_dram)} kernel call(s) changed ({len(ka) - len(with_dram)} unchanged)" in done.stdout
    for _, k in ka.iterrows():
        named = re.search(rf"\b{re.escape(k['kernel'])}\b", done.stdout) is not None
        if k["kernel"] not in set(with_dram["kernel"]):
            assert not named, k["kernel"]
    page = (tmp_path / "compare.html").read_text()
    assert "Energy of the changed variants" in page and "Plotly.newPlot" in page


def test_only_energy_moved_and_by_the_dram_share(two_sweeps):
    from explorer.reports.compare import compare_runs

    a, b = two_sweeps
    c = compare_runs(a, b)
    assert set(c.variants["changed"]) == {"energy_j"}
    va = pd.read_csv(a / "variants.csv").set_index("strategy")
    for _, r in c.variants.iterrows():
        assert r["energy_j_b"] - r["energy_j_a"] == pytest.approx(99 * va.loc[r["strategy"], "energy_dram_j"], rel=1e-9)


def test_compare_of_a_directory_that_is_no_sweep_is_one_line(cli, tmp_path):
    done = cli("compare", str(tmp_path), str(tmp_path), "--html", "")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not a sweep's --out directory" in done.stderr


def test_with_no_smallest_change_every_kernel_with_dram_traffic_is_named(two_sweeps):
    from explorer.reports.compare import compare_runs

    a, b = two_sweeps
    ka = pd.read_csv(a / "kernels.csv")
    c = compare_runs(a, b, min_change=0)
    assert len(c.kernels) == int((ka["dram_bytes"] > 0).sum()) and set(c.kernels["changed"]) == {"energy_j"}
