"""Measurement bundles (explorer measure), their runtime-only runner, ncu parsing, calibration."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cost_models.targets import load_target
from explorer.core.errors import ExplorerError


def clean_env(**extra) -> dict:
    """The environment of a process outside the project: no PYTHONPATH, TVM runtime-only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TVM_USE_RUNTIME_LIB")}
    return {**env, "TVM_USE_RUNTIME_LIB": "1", **extra}


def run_runner(bundle: Path, cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle / "measure_runner.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env or clean_env(), timeout=300)


@pytest.fixture(scope="module")
def cpu_bundle(matmul_onnx, tmp_path_factory):
    from explorer.measure.bundle import build_bundle

    out = tmp_path_factory.mktemp("bundles") / "cpu"
    return build_bundle(str(matmul_onnx), target="cpu", strategies="fused,baseline", out=out, wheel=None, progress=False)


def test_a_cpu_bundle_holds_the_runtime_but_no_compiler(cpu_bundle):
    b = cpu_bundle
    m = json.loads((b.out / "manifest.json").read_text())
    assert [v["id"] for v in m["variants"]] == ["matmul__fused", "matmul__baseline"]
    assert m["device"] == "cpu" and m["host_code"].endswith("-mcpu=x86-64")
    for v in m["variants"]:
        assert (b.out / v["library"]).is_file() and v["predicted"]["energy_j"] > 0 and v["kernels"]
        assert v["args"] == ["matmul:x"] and not v["lifted"]
    assert (b.out / "python" / "tvm" / "lib" / "libtvm_runtime.so").is_file()
    assert not list(b.out.rglob("libtvm_compiler*")) and not (b.out / "python" / "tvm" / "relax").exists()
    assert (b.out / "inputs" / "matmul" / "x.npy").is_file() and (b.out / "predictions" / "kernels.csv").is_file()
    assert b.size_bytes < 64 * 2**20 and m["size_bytes"] <= b.size_bytes


def test_the_runner_times_a_cpu_variant_runtime_only_in_a_fresh_process(cpu_bundle, tmp_path):
    ran = run_runner(cpu_bundle.out, tmp_path, "--device", "cpu", "--out", str(tmp_path / "r.json"),
                     "--variant", "*fused", "--outputs", str(tmp_path / "outs"))
    assert ran.returncode == 0, ran.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["tvm"]["runtime_only"] is True and "tvm_compiler" not in r["tvm"]["loaded"]
    assert Path(r["tvm"]["file"]).resolve().is_relative_to(cpu_bundle.out.resolve())
    assert not any("compiler" in lib for lib in r["loaded_libraries"])
    (v,) = r["variants"]
    assert v["status"] == "ok" and v["latency_s"] > 0 and len(v["latency_runs_s"]) == 5
    assert [k for k, _ in v["kernel_calls_s"]] == ["matmul"] and v["kernel_calls_s"][0][1] > 0
    x = np.load(cpu_bundle.out / "inputs" / "matmul" / "x.npy")
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)  # the fixture's weight
    np.testing.assert_allclose(np.load(tmp_path / "outs" / "matmul__fused.npz")["output_0"], x @ w, rtol=1e-4, atol=1e-4)


def test_run_bundle_and_the_report_read_back_the_runner(cpu_bundle, tmp_path):
    from explorer.measure.report import measure_report
    from explorer.measure.run import run_bundle

    results = run_bundle(cpu_bundle.out, device="cpu", out=tmp_path / "r.json", runner_args=["--repeat", "2"],
                         progress=False)
    assert all(v["status"] == "ok" for v in results["variants"]) and len(results["variants"]) == 2
    rep = measure_report(cpu_bundle.out, results, out=tmp_path / "report")
    assert rep.variants["measured_latency_s"].gt(0).all() and rep.kernels["measured_s"].notna().all()
    assert (tmp_path / "report" / "measure_variants.csv").is_file() and (tmp_path / "report" / "measure.html").is_file()


def test_run_bundle_refuses_cuda_on_a_machine_without_a_gpu(cpu_bundle, monkeypatch):
    from explorer.measure import run

    monkeypatch.setattr(run, "local_gpu", lambda: "no NVIDIA driver here (libcuda.so.1 does not load)")
    with pytest.raises(ExplorerError, match=r"cannot measure on cuda here: no NVIDIA driver .*\(not done here\)"):
        run.run_bundle(cpu_bundle.out, device="cuda")


def test_lifted_zoo_weights_are_regenerated_exactly_by_the_runner(tmp_path):
    """mlp with every weight lifted out of the library: the runner replays the zoo's seeded draws
    (transposed, cast to fp16, packed) and its outputs are onnxruntime's."""
    from explorer.measure.bundle import build_bundle
    from explorer.model.prepare import prepare
    from explorer.sweep.reference import reference

    b = build_bundle("mlp", target="cpu", strategies="fused,fused-fp16", out=tmp_path / "b", wheel=None,
                     inline_limit_bytes=0, progress=False)
    params = {k: a for k, a in b.manifest["arrays"].items() if a["role"] == "param"}
    assert len(params) == 6 and {a["kind"] for a in params.values()} == {"zoo"}
    # Gemm's [N, K] weights, transposed and packed in blocks of one 128-bit vector of fp32 outputs (the
    # bundle's CPU libraries are built for any x86-64): 512 and 256 columns in blocks of 4, 10 in blocks of 2
    assert {a["transform"] for a in params.values()} == {"transpose,pack4", "transpose,pack2",
                                                         "transpose,float16,pack4", "transpose,float16,pack2"}
    assert all(v["lifted"] and v["exact_weights"] and v["library_bytes"] < 200_000 for v in b.manifest["variants"])
    ran = run_runner(b.out, tmp_path, "--device", "cpu", "--out", str(tmp_path / "r.json"), "--repeat", "1",
                     "--outputs", str(tmp_path / "o"))
    assert ran.returncode == 0, ran.stderr
    want = reference(prepare("mlp"), 0, None).outputs[0]
    np.testing.assert_allclose(np.load(tmp_path / "o" / "mlp__fused.npz")["output_0"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "mlp__fused-fp16.npz")["output_0"], want, rtol=0, atol=0.05)


def test_the_runner_regenerates_inputs_as_the_explorer_samples_them(matmul_onnx):
    from explorer.measure.runner.arrays import sample_inputs
    from explorer.model.prepare import prepare

    p = prepare("mlp")
    specs = [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype, "high": i.high, "fill": i.fill} for i in p.inputs]
    got, want = sample_inputs(specs, 3), p.sample_inputs(3)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def _stub_libcuda(folder: Path) -> Path | None:
    """A stand-in for the driver's libcuda.so.1 (every call: no device), so TVM's CUDA runtime library
    loads on a machine without a GPU; None where there is no C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    names = ["cuDeviceGetName", "cuFuncSetAttribute", "cuLaunchKernelEx", "cuModuleGetFunction", "cuModuleLoadData",
             "cuModuleUnload", "cuTensorMapEncodeTiled", "cuProfilerStart", "cuProfilerStop"]
    src = "\n".join([f"int {n}(void) {{ return 100; }}" for n in names] +
                    ["int cuGetErrorName(int e, const char **s) { *s = \"stub\"; return 0; }",
                     "int cuGetErrorString(int e, const char **s) { *s = \"stub\"; return 0; }"])
    (folder / "stub.c").write_text(src)
    lib = folder / "libcuda.so.1"
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(lib), str(folder / "stub.c")], check=True)
    return lib


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_a_gpu_bundle_carries_cubins_that_the_runtime_only_cuda_runtime_loads(matmul_onnx, tmp_path):
    from explorer.measure.bundle import MAX_BUNDLE_BYTES, build_bundle
    from explorer.tvm.library_format import library_modules

    b = build_bundle(str(matmul_onnx), target="gpu", strategies="fused", out=tmp_path / "gpu", wheel=None, micro=False,
                     progress=False)
    (v,) = b.manifest["variants"]
    assert b.manifest["device"] == "cuda" and v["device_kernels"] and v["cubin_bytes"] > 0
    kinds = library_modules(b.out / v["library"])
    cuda = [(fmt, size) for kind, fmt, size in kinds if kind == "cuda"]
    assert [k for k, _, _ in kinds] == ["relax.VMExecutable", "_lib", "cuda"] and cuda[0][0] == "cubin"
    assert b.size_bytes < MAX_BUNDLE_BYTES
    lib = b.out / "python" / "tvm" / "lib"
    assert (lib / "libtvm_runtime_cuda.so").is_file() and list(lib.glob("libcudart.so.*"))
    assert (b.out / "python" / "pynvml.py").is_file() and (b.out / "runner" / "nvml.py").is_file()
    assert not list(b.out.rglob("libtvm_compiler*"))
    stub = _stub_libcuda(tmp_path)
    if stub is None:
        pytest.skip("no C compiler for the stub driver")
    probe = (f"import ctypes, json, sys; ctypes.CDLL({str(stub)!r}, mode=ctypes.RTLD_GLOBAL); "
             f"sys.path.insert(0, {str(b.out)!r}); from runner import environment as r; "
             f"m = json.load(open({str(b.out / 'manifest.json')!r})); r.setup_imports(m); tvm = r.import_tvm('cuda'); "
             f"mod = tvm.runtime.load_module({str(b.out / v['library'])!r}); "
             "print(json.dumps({'runtime_only': tvm.base._RUNTIME_ONLY, 'libs': r.loaded_libraries(), "
             "'kinds': [mod.kind, mod.imports[0].kind, mod.imports[0].imports[0].kind]}))")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=clean_env(),
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["runtime_only"] and out["kinds"] == ["relax.VMExecutable", "library", "cuda"]
    assert "libtvm_runtime_cuda.so" in out["libs"] and not any("compiler" in x for x in out["libs"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_a_zoo_gpu_bundle_with_microbenchmarks_and_the_tvm_ffi_wheel_fits_a_device_call(tmp_path):
    from explorer.measure.bundle import MAX_BUNDLE_BYTES, build_bundle
    from explorer.tvm.library_format import library_modules

    b = build_bundle("resnet18", target="gpu", strategies="fused,fused-fp16", out=tmp_path / "gpu", progress=False)
    ids = [v["id"] for v in b.manifest["variants"]]
    assert ids == ["resnet18__fused", "resnet18__fused-fp16", "micro-stream__fused", "micro-matmul__fused",
                   "micro-matmul__fused-fp16"]
    assert all(library_modules(b.out / v["library"])[-1][1] == "cubin" for v in b.manifest["variants"])
    assert b.manifest["variants"][0]["lifted"] and b.size_bytes < MAX_BUNDLE_BYTES
    assert b.manifest["wheels"] and "cp312" in b.manifest["wheels"][0]


# ------------------------------------------------------------------------------------------------- ncu

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

def _workload(macs32, macs16, adds, dram, l2, shared, local) -> pd.DataFrame:
    return pd.DataFrame([{"kernel": "k", "call_index": 0, "macs": macs32 + macs16, "flops": 2 * (macs32 + macs16),
                          "read_bytes": dram, "write_bytes": 0.0, "weight_bytes": 0.0, "model_input_bytes": 0.0,
                          "access_bytes": l2, "shared_access_bytes": shared, "local_access_bytes": local,
                          "traffic_curve": f"0:{dram}", "unit_traffic_curve": f"0:{l2}", "op_mac_float32": macs32,
                          "op_mac_float16": macs16, "op_add_float32": adds}])


def _truth(target, rng, paths):
    figs = target.figures()
    truth = {p: f.value for p, f in figs.items()}
    for p in paths:
        truth[p] = figs[p].low + rng.uniform(0.2, 0.8) * (figs[p].high - figs[p].low)
    return truth


def test_the_fit_recovers_known_coefficients_within_their_bounds():
    from explorer.measure.fit import energy_paths, features, fit_figures, predict

    gpu = load_target("gpu")
    rng = np.random.default_rng(1)
    rows = [features(_workload(*(10 ** rng.uniform(6, 10, 7))), gpu, 10 ** rng.uniform(-5, -2)) for _ in range(14)]
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

    gpu = load_target("gpu")
    rows = [features(_workload(0, 0, 0, 1e9, 0, 0, 0), gpu, 1e-3)]
    hbm = "memory.hbm.energy_pj_per_byte"
    fit = fit_figures(rows, [1e9 * 500 * 1e-12 + 0.075], gpu, ridge=1e-9)  # 500 pJ/B: far above the cited 60
    assert fit.values[hbm] == gpu.figures()[hbm].high


def _fake_bundle(tmp_path: Path, truth: dict, gpu, noise: float = 0.0) -> tuple[Path, Path]:
    """A bundle and results whose energies come from ``truth``: three models of several variants."""
    from explorer.measure.fit import features, predict

    rng = np.random.default_rng(7)
    bundle = tmp_path / "bundle"
    (bundle / "predictions").mkdir(parents=True)
    variants, kernels, measured = [], [], []
    for model in ("alpha", "beta", "gamma", "micro-stream"):
        for s in range(4):
            vid = f"{model}__s{s}"
            w = _workload(*(10 ** rng.uniform(6, 10, 7))).assign(variant=vid, model=model, strategy=f"s{s}", target="gpu")
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


def test_calibration_writes_a_separate_target_file_and_never_the_cited_one(tmp_path):
    from explorer.measure.fit import calibrate_target, energy_paths

    gpu = load_target("gpu")
    cited = Path(gpu.path)
    before = hashlib.sha256(cited.read_bytes()).hexdigest()
    used = ["static_power_w", "compute.float32.energy_pj.mac", "compute.float32.energy_pj.add",
            "compute.float16.energy_pj.mac", "memory.hbm.energy_pj_per_byte", "memory.l2.energy_pj_per_byte",
            "memory.shared.energy_pj_per_byte", "memory.registers.energy_pj_per_byte"]
    truth = _truth(gpu, np.random.default_rng(3), used)
    bundle, results = _fake_bundle(tmp_path, {p: truth[p] for p in energy_paths(gpu)}, gpu)
    out = tmp_path / "gpu-h200.toml"
    cal = calibrate_target(bundle, results, out=out, ridge=1e-9, min_share=0.0)
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
        calibrate_target(bundle, results, out=cited)
    assert hashlib.sha256(cited.read_bytes()).hexdigest() == before


def test_calibrate_cli_writes_the_file_and_refuses_bad_input_in_one_line(tmp_path):
    from explorer.cli.main import main
    from explorer.measure.fit import energy_paths

    gpu = load_target("gpu")
    bundle, results = _fake_bundle(tmp_path, {p: f.value * 1.1 if p == "static_power_w" else f.value
                                              for p, f in gpu.figures().items() if p in energy_paths(gpu)}, gpu,
                                   noise=0.01)
    assert main(["calibrate", str(results), "-o", str(tmp_path / "cal.toml"), "--report", str(tmp_path / "rep")]) == 0
    assert load_target(tmp_path / "cal.toml").figures()["static_power_w"].value == pytest.approx(82.5, rel=0.05)
    assert (tmp_path / "rep" / "measure_variants.csv").is_file()
    ran = subprocess.run([sys.executable, "-m", "explorer.cli", "calibrate", str(tmp_path / "none.json"), "-o",
                          str(tmp_path / "x.toml")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert ran.returncode == 2 and len(ran.stderr.strip().splitlines()) == 1


def test_measure_cli_refuses_a_target_it_cannot_build_in_one_line(matmul_onnx, tmp_path):
    ran = subprocess.run([sys.executable, "-m", "explorer.cli", "measure", str(matmul_onnx), "--target", "npu", "-o",
                          str(tmp_path / "b")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert ran.returncode == 2 and "cuda and llvm targets" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_spearman_ranks_ties_together():
    from explorer.measure.agreement import spearman

    assert spearman([3, 1, 3, 2], [4, 1, 4, 2]) == pytest.approx(1.0)  # the tied pair ranks 3.5 on both sides
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [1, 2]))
