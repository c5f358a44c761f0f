"""A measurement bundle and its runner's results made up from known energy figures, for the calibration
tests of both tiers: what the fit should recover is the truth the energies were made from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def one_kernel(macs32, macs16, adds, dram, l2, shared, local) -> pd.DataFrame:
    """One kernel call of fp32 and fp16 MACs, fp32 adds, and bytes at DRAM, L2, shared memory and registers."""
    return pd.DataFrame([{"kernel": "k", "call_index": 0, "macs": macs32 + macs16, "flops": 2 * (macs32 + macs16),
                          "read_bytes": dram, "write_bytes": 0.0, "weight_bytes": 0.0, "model_input_bytes": 0.0,
                          "access_bytes": l2, "shared_access_bytes": shared, "local_access_bytes": local,
                          "traffic_curve": f"0:{dram}", "unit_traffic_curve": f"0:{l2}", "op_mac_float32": macs32,
                          "op_mac_float16": macs16, "op_add_float32": adds}])


def fake_bundle(tmp_path: Path, truth: dict, gpu, noise: float = 0.0) -> tuple[Path, Path]:
    """A bundle and results whose energies come from ``truth``: three models and a microbenchmark, four variants each."""
    from explorer.measure.fit import features, predict

    rng = np.random.default_rng(7)
    bundle = tmp_path / "bundle"
    (bundle / "predictions").mkdir(parents=True)
    variants, kernels, measured = [], [], []
    for model in ("alpha", "beta", "gamma", "micro-stream"):
        for s in range(4):
            vid = f"{model}__s{s}"
            w = one_kernel(*(10 ** rng.uniform(6, 10, 7))).assign(variant=vid, model=model, strategy=f"s{s}", target="gpu")
            time_s = 10 ** rng.uniform(-5, -2)
            cited = float(predict([features(w, gpu, time_s)], {p: f.value for p, f in gpu.figures().items()})[0])
            true = float(predict([features(w, gpu, time_s)], truth)[0]) * (1 + noise * rng.standard_normal())
            variants.append({"id": vid, "model": model, "strategy": f"s{s}", "micro": model.startswith("micro"),
                             "predicted": {"energy_j": cited * 1.3, "latency_s": time_s}, "kernels": []})
            kernels.append(w)
            measured.append({"id": vid, "status": "ok", "energy_j": true, "latency_s": time_s,
                             "throughput_latency_s": time_s})
    (bundle / "manifest.json").write_text(json.dumps({"variants": variants, "target": {"name": "gpu"}}))
    pd.concat(kernels).to_csv(bundle / "predictions" / "kernels.csv", index=False)
    results = bundle / "results.json"
    results.write_text(json.dumps({
        "date": "2026-12-03T10:00:00+0000", "host": "h200-lent", "variants": measured,
        "idle": [{"power_w": 74.0}],
        "device": {"kind": "cuda", "name": "NVIDIA H200", "driver": "580.95.05", "clocks_mhz": {"sm": 1980, "mem": 3201},
                   "power_limit_w": 700.0}}))
    return bundle, results
