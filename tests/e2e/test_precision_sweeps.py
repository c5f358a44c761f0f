"""Reduced precisions and sparsity swept end to end: accuracy columns and onnxruntime's own int8 build."""

from __future__ import annotations

import onnx
import pandas as pd
import pytest

import explorer
from cost_models.targets import load_target


@pytest.fixture
def gpu():
    return load_target("gpu")


def test_accuracy_columns_on_the_zoo_mlp():
    result = explorer.run_sweep(["mlp"], targets=["cpu"], strategies=["fused", "fused-bf16", "fused-int8"],
                                progress=False, isolate=False, max_accuracy_loss=1.0)
    v = result.variants.set_index("strategy")
    assert v.loc["fused", "sqnr_db"] > 100 and v.loc["fused", "meets_accuracy"]
    # seeded weights and inputs: the errors are deterministic (to float rounding, which differs
    # between CPUs by far less than 0.05 dB)
    assert v.loc["fused-bf16", "sqnr_db"] == pytest.approx(48.60, abs=0.05)
    assert v.loc["fused-int8", "sqnr_db"] == pytest.approx(34.47, abs=0.05)
    assert list(v.argmax_agreement) == [1.0, 1.0, 0.875]  # one of the 8 batch rows changes class in int8
    assert (v.measured_latency_s > 0).all()
    # bf16 stays within 1% relative error (0.37%), int8 does not (1.89%)
    assert list(v.meets_accuracy) == [True, True, False]
    # bf16 casts every matmul input element (8 x (784 + 512 + 256) = 12416); int8 casts them to int8
    # and also every int32 accumulator back to float32 (8 x (512 + 256 + 10) = 6224)
    assert list(v.casts) == [0, 12416, 18640] and v.loc["fused-int8", "energy_cast_j"] > 0


def test_int8_rows_carry_onnxruntimes_own_int8_latency(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    result = explorer.run_sweep(["mlp"], targets=["cpu"], strategies=["fused", "fused-int8"], progress=False,
                                isolate=False)
    v = result.variants.set_index("strategy")
    assert v.loc["fused-int8", "onnxruntime_int8_latency_s"] > 0
    assert pd.isna(v.loc["fused", "onnxruntime_int8_latency_s"])  # fp32 rows: onnxruntime_latency_s only
    # onnxruntime's static QDQ build of the same model: int8 weights, on the same calibration inputs
    quantized = onnx.load(str(next((tmp_path / "onnxruntime-int8").glob("*.onnx"))))
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_a_2_4_sweep_halves_the_npu_mac_energy_and_is_judged_by_accuracy_on_the_cpu(cli, conv16_onnx, tmp_path):
    out = tmp_path / "run"
    done = cli("sweep", str(conv16_onnx), "--targets", "cpu,npu", "--strategies", "fused-int8,fused-int8-2:4", "--out", str(out), "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr
    v = pd.read_csv(out / "variants.csv").set_index(["strategy", "target"])
    sparse = v.loc[("fused-int8-2:4", "cpu")]
    assert sparse["ran"] and sparse["accuracy_loss_pct"] > 0 and sparse["status_kind"] == "ok"
    assert sparse["weight_density"] == pytest.approx(0.5, abs=0.02)  # 8 x 9 = 72 weights per output: 18 groups of 4
    k = pd.read_csv(out / "kernels.csv")
    mac = {key: g.filter(like="op_mac_int8").sum().sum() for key, g in k.groupby(["strategy", "target"])}
    assert mac[("fused-int8-2:4", "npu")] == pytest.approx(mac[("fused-int8", "npu")] / 2)  # the array skips the zeros
    assert mac[("fused-int8-2:4", "cpu")] == mac[("fused-int8", "cpu")]  # the cpu runs them dense
    assert "runs the pruned weights dense" in v.loc[("fused-int8-2:4", "cpu"), "status"]
