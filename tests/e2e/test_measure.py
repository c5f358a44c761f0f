"""Measurement bundles: built here, run by their runtime-only runner in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cost_models.targets import load_target
from explorer.core.errors import ExplorerError
from tests.fake_measurements import fake_bundle


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

def test_calibrate_cli_writes_the_file_and_refuses_bad_input_in_one_line(cli, tmp_path):
    from explorer.cli.main import main
    from explorer.measure.fit import energy_paths

    gpu = load_target("gpu")
    bundle, results = fake_bundle(tmp_path, {p: f.value * 1.1 if p == "static_power_w" else f.value
                                              for p, f in gpu.figures().items() if p in energy_paths(gpu)}, gpu,
                                   noise=0.01)
    assert main(["calibrate", str(results), "-o", str(tmp_path / "cal.toml"), "--report", str(tmp_path / "rep")]) == 0
    assert load_target(tmp_path / "cal.toml").figures()["static_power_w"].value == pytest.approx(82.5, rel=0.05)
    assert (tmp_path / "rep" / "measure_variants.csv").is_file()
    ran = cli("calibrate", str(tmp_path / "none.json"), "-o", str(tmp_path / "x.toml"), timeout=120)
    assert ran.returncode == 2 and len(ran.stderr.strip().splitlines()) == 1


def test_measure_cli_refuses_a_target_it_cannot_build_in_one_line(cli, matmul_onnx, tmp_path):
    ran = cli("measure", str(matmul_onnx), "--target", "npu", "-o", str(tmp_path / "b"), timeout=120)
    assert ran.returncode == 2 and "cuda and llvm targets" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


