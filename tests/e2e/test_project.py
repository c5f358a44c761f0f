"""explorer project through the command."""

from __future__ import annotations

import json

import pandas as pd
import pytest

HAND = dict(pue=1.5, wue_l_per_kwh=0.5, electricity_water_l_per_kwh=2.0, grid_g_co2_per_kwh=400.0, usd_per_kwh=0.1,
            utilization=0.5)


def _run(tmp_path):
    rows = [
        # an image model at batch 2: 2 J and 0.5 s a sample, 2 W of static power
        dict(model="m", strategy="fused", target="gpu", batch=2, phase=None, status_kind="ok", energy_j=4.0,
             latency_s=1.0, measured_latency_s=None, latency_source="modelled", energy_static_j=2.0),
        # a decoder: a prefill of 1 J in 0.1 s and decode steps of 0.5 J in 0.05 s, 2 W static
        dict(model="d@prefill8", strategy="fused", target="gpu", batch=1, phase="prefill:8", status_kind="analysed",
             energy_j=1.0, latency_s=0.1, measured_latency_s=None, latency_source="modelled", energy_static_j=0.2),
        dict(model="d@decode8", strategy="fused", target="gpu", batch=1, phase="decode:8", status_kind="analysed",
             energy_j=0.5, latency_s=0.05, measured_latency_s=None, latency_source="modelled", energy_static_j=0.1),
        dict(model="m", strategy="int8", target="gpu", batch=2, phase=None, status_kind="failed", energy_j=None,
             latency_s=None, measured_latency_s=None, latency_source=None, energy_static_j=None),
    ]
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_csv(run / "variants.csv", index=False)
    return run




def test_project_pairs_a_decoders_prefill_with_its_decode_steps_through_the_cli(cli, tmp_path):
    run = _run(tmp_path)
    done = cli("project", run, "--requests-per-day", 1000, "--tokens-per-request", 10, "--json",
                *[x for k, v in HAND.items() for x in (f"--{k.replace('_', '-')}", v)
                  if k not in ("wue_l_per_kwh", "electricity_water_l_per_kwh")],
                "--wue", 0.5, "--water-l-per-kwh-electricity", 2.0)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["assumptions"]["pue"] == {"value": 1.5, "low": 1.5, "high": 1.5, "source": "given on the command line",
                                         "note": ""}
    rows = {r["model"]: r for r in out["rows"]}
    assert set(rows) == {"m", "d"}  # the failed variant has nothing to project
    assert rows["m"]["energy_per_request_j"] == 2.0 and rows["m"]["it_kwh_per_day"] == pytest.approx(3000 / 3.6e6)
    # a request: the prefill, then 10 decode steps: 1 + 10 x 0.5 J, 0.1 + 10 x 0.05 s
    assert rows["d"]["request"] == "prefill:8 + 10 x decode:8"
    assert rows["d"]["energy_per_request_j"] == pytest.approx(6.0)
    assert rows["d"]["device_s_per_request"] == pytest.approx(0.6)
    assert rows["d"]["wall_kwh_per_day"] == pytest.approx(1.5 * (6000 + 2.0 * 600) / 3.6e6)
    assert (run / "project.csv").exists() and "A day of serving" in (run / "project.md").read_text()


def test_project_prints_each_default_with_its_source(cli, tmp_path):
    done = cli("project", _run(tmp_path), "--requests-per-day", 1e6, "--tokens-per-request", 100)
    assert done.returncode == 0, done.stderr
    assert "pue = 1.56" in done.stdout and "Uptime Institute" in done.stdout and "Ember" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--requests-per-day", 1000], "give --tokens-per-request"),
    (["--requests-per-day", 0, "--tokens-per-request", 5], "must be positive"),
    (["--requests-per-day", 10, "--tokens-per-request", 5, "--utilization", 1.5], "utilization must be in"),
    (["--requests-per-day", 10, "--tokens-per-request", 5, "--pue", 0.9], "PUE below 1"),
])
def test_bad_projection_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    done = cli("project", _run(tmp_path), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
