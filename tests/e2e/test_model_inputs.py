"""Models with control flow, frozen inputs and recurrent layers, swept through the command."""

from __future__ import annotations

import pytest

from tests.onnx_models import BATCH, HIDDEN, INPUT, SEQ, if_model, recurrent_model


def test_a_model_with_a_frozen_if_sweeps_on_cpu_and_npu_and_matches_onnxruntime(cli, tmp_path):

    import pandas as pd

    path, _, _ = if_model(tmp_path)
    out = tmp_path / "out"
    proc = cli("sweep", path, "--input-value", "sr=16000", "--targets", "cpu,npu", "--strategies", "baseline,fused", "--out", str(out), "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    v = pd.read_csv(out / "variants.csv")
    cpu = v[v.target == "cpu"]
    assert (cpu.status == "ok").all() and cpu.within_tolerance.all() and (cpu.macs == 8 * 4).all()
    assert (v[v.target == "npu"].status_kind == "analysed").all()


@pytest.mark.parametrize("verb, args, says", [
    ("run", ["--repeat", "1"], "latency: median"),
    ("fusion", [], "kernels 1 -> 1"),
])
def test_every_verb_that_prepares_a_model_takes_input_value(cli, tmp_path, verb, args, says):

    path, _, _ = if_model(tmp_path)
    proc = cli(verb, path, "--input-value", "sr=16000", *args, "--quiet", timeout=600, env={"EXPLORER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout


def test_a_gru_model_sweeps_on_cpu_and_npu_and_matches_onnxruntime(cli, tmp_path):
    import pandas as pd

    path = recurrent_model(tmp_path, op="GRU", name="encoder", directions=2, linear_before_reset=1)
    out = tmp_path / "out"
    proc = cli("sweep", path, "--targets", "cpu,npu", "--strategies", "baseline,fused", "--out", str(out), "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    v = pd.read_csv(out / "variants.csv")
    cpu = v[v.target == "cpu"]
    assert (cpu.status == "ok").all() and cpu.within_tolerance.all()
    # per step and direction, 3 gates' input matmuls [2 x 3] x [3 x 4] and recurrent ones [2 x 4] x [4 x 4];
    # the first step's recurrent ones multiply the zero initial state and fold away
    assert (v.macs == 2 * (SEQ * 3 * BATCH * INPUT * HIDDEN + (SEQ - 1) * 3 * BATCH * HIDDEN * HIDDEN)).all()
