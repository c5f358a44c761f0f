"""Calibration's fit, the calibrated target file, rank correlation and Nsight Compute's CSV, on made-up bundles."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from tests.conftest import data_target
from tests.fake_measurements import fake_bundle, one_kernel

NCU_CSV = '''==PROF== Connected to process 4242 (/usr/bin/python3.12)
profiled mlp__fused
==PROF== Profiling "fused_matmul_add_relu_kernel": 0%....50%....100% - 3 passes
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","python3.12","h","fused_matmul_add_relu_kernel","1","7","(128, 1, 1)","(32, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","byte","1,605,632"
"0","4242","python3.12","h","fused_matmul_add_relu_kernel","1","7","(128, 1, 1)","(32, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","16,384"
"0","4242","python3.12","h","fused_matmul_add_relu_kernel","1","7","(128, 1, 1)","(32, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","5,120"
"1","4242","python3.12","h","fused_matmul1_add1_relu1_kernel","1","7","(128, 1, 1)","(16, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","Kbyte","524.29"
"1","4242","python3.12","h","fused_matmul1_add1_relu1_kernel","1","7","(128, 1, 1)","(16, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","0"
"2","4242","python3.12","h","fused_softmax_kernel","1","7","(32, 1, 1)","(8, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","byte","320"
"3","4242","python3.12","h","fused_softmax_kernel_1","1","7","(32, 1, 1)","(8, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","byte","64"
"3","4242","python3.12","h","fused_softmax_kernel_1","1","7","(32, 1, 1)","(8, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","320"
==PROF== Disconnected from process 4242
'''


def _truth(target, rng, paths):
    figs = target.figures()
    truth = {p: f.value for p, f in figs.items()}
    for p in paths:
        truth[p] = figs[p].low + rng.uniform(0.2, 0.8) * (figs[p].high - figs[p].low)
    return truth


def test_the_ncu_csv_parser_gives_bytes_per_launch_and_per_kernel_call():
    from explorer.measure.runner.bundle import BadInput
    from explorer.measure.runner.ncu import bytes_per_call, function_of, parse_ncu_csv

    launches = parse_ncu_csv(NCU_CSV)
    assert [x["kernel"] for x in launches] == ["fused_matmul_add_relu_kernel", "fused_matmul1_add1_relu1_kernel",
                                                "fused_softmax_kernel", "fused_softmax_kernel_1"]
    assert launches[0]["metrics"] == {"dram__bytes_read.sum": 1605632.0, "dram__bytes_write.sum": 16384.0,
                                      "gpu__time_duration.sum": pytest.approx(5.12e-6)}
    assert launches[1]["metrics"]["dram__bytes_read.sum"] == pytest.approx(524290.0)
    calls = bytes_per_call(launches, ["fused_matmul_add_relu", "fused_matmul1_add1_relu1", "fused_softmax"])
    assert [c["launches"] for c in calls] == [1, 1, 2]
    assert [c["dram_bytes"] for c in calls] == [pytest.approx(1622016.0), pytest.approx(524290.0), pytest.approx(704.0)]
    assert calls[2]["dram_read_bytes"] == 384.0 and calls[0]["gpu_time_s"] == pytest.approx(5.12e-6)
    assert function_of("fused_add_kernel_12(float*, float*)") == "fused_add"
    with pytest.raises(BadInput):
        parse_ncu_csv("==PROF== nothing profiled\n")


def test_the_report_sets_ncu_bytes_beside_the_models_per_kernel_call(tmp_path):
    from explorer.measure.report import measure_report

    bundle = tmp_path / "b"
    (bundle / "ncu").mkdir(parents=True)
    kernels = [{"call_index": i, "kernel": k, "dram_bytes": b, "latency_s": 1e-6, "energy_j": 1e-6}
               for i, (k, b) in enumerate([("fused_matmul_add_relu", 1.6e6), ("fused_matmul1_add1_relu1", 5.3e5),
                                           ("fused_softmax", 700.0)])]
    manifest = {"variants": [{"id": "mlp__fused", "model": "mlp", "strategy": "fused", "kernels": kernels,
                              "predicted": {"energy_j": 1e-3, "latency_s": 1e-5, "energy_p05_j": 5e-4, "energy_p95_j": 2e-3}}]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "ncu" / "mlp__fused.csv").write_text(NCU_CSV)
    (bundle / "ncu" / "mlp__fused.calls.json").write_text(json.dumps(
        {"calls": {"mlp__fused": ["fused_matmul_add_relu", "fused_matmul1_add1_relu1", "fused_softmax"]}}))
    results = {"variants": [{"id": "mlp__fused", "status": "ok", "latency_s": 2e-5, "energy_j": 1.5e-3,
                             "kernel_calls_s": [["fused_matmul_add_relu", 6e-6], ["fused_matmul1_add1_relu1", 3e-6],
                                                ["fused_softmax", 1e-6]]}]}
    rep = measure_report(bundle, results, out=tmp_path / "rep", ncu=bundle / "ncu")
    assert rep.kernels["ncu_dram_bytes"].tolist() == [pytest.approx(1622016.0), pytest.approx(524290.0), pytest.approx(704.0)]
    assert rep.kernels["dram_ratio"].iloc[0] == pytest.approx(1622016.0 / 1.6e6)
    assert rep.variants["energy_ratio"].iloc[0] == pytest.approx(1.5) and bool(rep.variants["in_modelled_range"].iloc[0])
    assert pd.read_csv(tmp_path / "rep" / "measure_kernels.csv")["ncu_dram_bytes"].notna().all()


# ------------------------------------------------------------------------------------------ calibration

def test_the_fit_recovers_known_coefficients_within_their_bounds():
    from explorer.measure.fit import energy_paths, features, fit_figures, predict

    gpu = data_target("gpu")
    rng = np.random.default_rng(1)
    rows = [features(one_kernel(*(10 ** rng.uniform(6, 10, 7))), gpu, 10 ** rng.uniform(-5, -2)) for _ in range(14)]
    used = [p for p in energy_paths(gpu) if any(r[p] > 0 for r in rows)]
    assert len(used) == 8  # static power, fp32 mac and add, fp16 mac, the four memory levels
    truth = _truth(gpu, rng, used)
    fit = fit_figures(rows, predict(rows, {p: truth[p] for p in energy_paths(gpu)}), gpu, ridge=1e-9, min_share=0.0)
    assert sorted(fit.fitted) == sorted(used)
    figs = gpu.figures()
    for p in used:
        assert figs[p].low <= fit.values[p] <= figs[p].high
        assert fit.values[p] == pytest.approx(truth[p], rel=1e-4)
    unused = next(p for p in energy_paths(gpu) if p not in used)
    assert fit.values[unused] == figs[unused].value


def test_a_measurement_outside_the_cited_range_is_fitted_to_the_bound():
    from explorer.measure.fit import features, fit_figures

    gpu = data_target("gpu")
    rows = [features(one_kernel(0, 0, 0, 1e9, 0, 0, 0), gpu, 1e-3)]
    hbm = "memory.hbm.energy_pj_per_byte"
    fit = fit_figures(rows, [1e9 * 500 * 1e-12 + 0.075], gpu, ridge=1e-9)  # 500 pJ/B: far above the cited 60
    assert fit.values[hbm] == gpu.figures()[hbm].high


def test_calibration_writes_a_separate_target_file_and_never_the_cited_one(tmp_path):
    from explorer.measure.fit import calibrate_target, energy_paths

    gpu = data_target("gpu")
    cited = Path(gpu.path)
    before = hashlib.sha256(cited.read_bytes()).hexdigest()
    used = ["static_power_w", "compute.float32.energy_pj.mac", "compute.float32.energy_pj.add",
            "compute.float16.energy_pj.mac", "memory.hbm.energy_pj_per_byte", "memory.l2.energy_pj_per_byte",
            "memory.shared.energy_pj_per_byte", "memory.registers.energy_pj_per_byte"]
    truth = _truth(gpu, np.random.default_rng(3), used)
    bundle, results = fake_bundle(tmp_path, {p: truth[p] for p in energy_paths(gpu)}, gpu)
    out = tmp_path / "gpu-h200.toml"
    cal = calibrate_target(bundle, results, gpu, out=out, ridge=1e-9, min_share=0.0)
    assert hashlib.sha256(cited.read_bytes()).hexdigest() == before
    written = load_target(out)
    assert written.name == "gpu-calibrated"
    for p in used:
        assert written.figures()[p].value == pytest.approx(truth[p], rel=1e-3)
        assert "Calibrated on NVIDIA H200 (driver 580.95.05, clocks SM 1980 MHz, memory 3201 MHz" in written.figures()[p].note
    untouched = "compute.int8.energy_pj.mac"
    assert written.figures()[untouched] == gpu.figures()[untouched]
    text = out.read_text()
    assert text.startswith("# Calibrated copy of gpu.toml") and "[calibration]" in text and 'gpu = "NVIDIA H200"' in text
    assert cal.summary["mean_abs_error_pct_lomo"] < 1 < cal.summary["mean_abs_error_pct_cited"]
    assert cal.summary["spearman_lomo"] == pytest.approx(1.0)
    with pytest.raises(ExplorerError, match="cited file"):
        calibrate_target(bundle, results, gpu, out=cited)
    assert hashlib.sha256(cited.read_bytes()).hexdigest() == before


def test_spearman_ranks_ties_together():
    from explorer.measure.agreement import spearman

    assert spearman([3, 1, 3, 2], [4, 1, 4, 2]) == pytest.approx(1.0)  # the tied pair ranks 3.5 on both sides
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [1, 2]))
