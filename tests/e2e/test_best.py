"""explorer best end to end: the exported library, its manifest and its runtime-only runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from explorer.scoring.accuracy import accuracy_metrics


@pytest.fixture(scope="module")
def exported(cli, conv16_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("best") / "build"
    done = cli("best", str(conv16_onnx), "--target", "cpu", "--objective", "energy",
               "--strategies", "fused,fused-int8", "--quiet", "-o", str(out))
    return done, out


def test_best_exports_a_library_manifest_and_runner(exported):
    done, out = exported
    assert done.returncode == 0, done.stderr
    assert {"model.so", "manifest.json", "run.py"} <= {p.name for p in out.iterdir()}
    m = json.loads((out / "manifest.json").read_text())
    assert m["strategy"]["name"] in ("fused", "fused-int8") and m["target"]["name"] == "cpu"
    assert m["inputs"] == [{"name": "x", "shape": [1, 8, 6, 6], "dtype": "float32"}] and m["outputs"] == ["y"]
    assert m["tvm_version"] == "0.27.0.post1" and len(m["model"]["sha256"]) == 64
    assert m["energy_p05_j"] <= m["energy_j"] <= m["energy_p95_j"]
    assert m["measured_latency_s"] > 0 and m["max_accuracy_loss_pct"] == 1.0
    assert m["accuracy_loss_pct"] <= m["max_accuracy_loss_pct"] and m["accuracy_inputs"] == 4
    assert f"best by energy: {m['strategy']['name']}" in done.stdout


def test_run_py_matches_onnxruntime_in_a_fresh_runtime_only_process(exported, conv16_onnx, tmp_path):
    done, out = exported
    assert done.returncode == 0, done.stderr
    m = json.loads((out / "manifest.json").read_text())
    x = np.load(out / "inputs" / "x.npy")  # the check input, the first of those the stated accuracy covers
    np.save(tmp_path / "x.npy", x)
    # outside the project, without its path: run.py, then which TVM libraries the process loaded
    probe = ("import runpy, sys, json\n"
             f"sys.argv = ['run.py', '--input', 'x={tmp_path / 'x.npy'}', '--output', '{tmp_path / 'y.npz'}']\n"
             "try:\n"
             f"    runpy.run_path({str(out / 'run.py')!r}, run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    assert not e.code, e.code\n"
             "import tvm\n"
             "print(json.dumps({'runtime_only': bool(tvm.base._RUNTIME_ONLY), 'libs': sorted(map(str, tvm.base._LOADED_LIBS)),\n"
             "                  'explorer': 'explorer' in sys.modules}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TVM_USE_RUNTIME_LIB")}
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr
    loaded = json.loads(ran.stdout.strip().splitlines()[-1])
    assert loaded["runtime_only"] and not loaded["explorer"]
    assert not any("compiler" in lib for lib in loaded["libs"])
    import onnxruntime as ort

    ref = ort.InferenceSession(str(conv16_onnx), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y = np.load(tmp_path / "y.npz")["y"]
    assert accuracy_metrics([y], [ref])["accuracy_loss_pct"] <= m["max_accuracy_loss_pct"]


def test_run_py_refuses_an_input_of_the_wrong_shape_in_one_line(exported, tmp_path):
    done, out = exported
    assert done.returncode == 0, done.stderr
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 6, 5), "float32"))
    ran = subprocess.run([sys.executable, str(out / "run.py"), "--input", f"x={tmp_path / 'x.npy'}",
                          "--output", str(tmp_path / "y.npz")], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 2
    assert ran.stderr.strip() == (f"run.py: --input x: {tmp_path / 'x.npy'} holds float32[1, 8, 6, 5]; "
                                  "the build takes float32[1, 8, 6, 6]")


def test_best_for_a_target_that_does_not_run_here_is_one_line(cli, conv16_onnx, tmp_path):
    done = cli("best", str(conv16_onnx), "--target", "gpu", "--quiet", "-o", str(tmp_path / "b"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "exports builds for CPU targets that run here" in done.stderr


def test_best_from_a_directory_that_is_no_sweep_is_one_line(cli, conv16_onnx, tmp_path):
    done = cli("best", str(conv16_onnx), "--from", str(tmp_path), "--quiet", "-o", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "is not a sweep's --out directory" in done.stderr and done.stderr.count("\n") == 1


def test_a_portable_build_runs_and_says_it_is_for_generic_x86_64(cli, conv16_onnx, tmp_path):
    out = tmp_path / "portable"
    done = cli("best", str(conv16_onnx), "--strategies", "fused", "--portable", "--quiet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["target"]["mcpu"] == "x86-64" and m["target"]["portable"] is True
    ran = subprocess.run([sys.executable, str(out / "run.py"), "--input", f"x={out / 'inputs' / 'x.npy'}",
                          "--output", str(tmp_path / "y.npz")], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    # no AVX in a generic x86-64 library: its code is SSE2 at most
    assert b"vfmadd" not in subprocess.run(["objdump", "-d", str(out / "model.so")], capture_output=True).stdout


def test_best_from_a_sweep_reads_its_store_and_leaves_its_tables(cli, conv16_onnx, tmp_path):
    run = tmp_path / "run"
    swept = cli("sweep", str(conv16_onnx), "--targets", "cpu", "--strategies", "fused,nhwc", "--out", str(run), "--quiet")
    assert swept.returncode == 0, swept.stderr
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    done = cli("best", str(conv16_onnx), "--from", str(run), "--objective", "latency", "-o", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert "stored" in done.stdout + done.stderr and "compiled in" not in done.stdout + done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name in before and p.suffix != ".sqlite"} == \
        {k: v for k, v in before.items() if not k.startswith("results.sqlite")}
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["strategy"]["name"] in ("fused", "nhwc")
