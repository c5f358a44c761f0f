"""explorer run: build once, cache the library, time inferences with the runtime library only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TOY_TARGET


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A build cache of this module's own, so the first run always compiles."""
    return {"EXPLORER_CACHE": str(tmp_path_factory.mktemp("run-cache"))}


@pytest.fixture(scope="module")
def first_run(cli, matmul_onnx, cache):
    return cli("run", str(matmul_onnx), "--strategy", "fused", "--repeat", "3", "--json", env=cache)


def test_json_has_one_latency_per_run_and_the_predicted_figures(first_run):
    assert first_run.returncode == 0, first_run.stderr
    r = json.loads(first_run.stdout)
    for key in ("model", "strategy", "target", "mcpu", "repeat", "latency_ms", "latency_median_ms",
                "predicted_dram_bytes", "predicted_energy_j", "predicted_latency_s", "build_cached"):
        assert key in r
    assert (r["model"], r["strategy"], r["target"], r["repeat"]) == ("matmul", "fused", "cpu", 3)
    assert len(r["latency_ms"]) == 3 and all(t > 0 for t in r["latency_ms"])
    assert min(r["latency_ms"]) <= r["latency_median_ms"] <= max(r["latency_ms"])
    # x from DRAM (see the matmul_onnx fixture); W stays cached from the previous inference and y is written
    # into recycled, cached memory
    assert r["predicted_dram_bytes"] == 256
    assert r["predicted_energy_j"] > 0 and r["predicted_latency_s"] > 0
    assert r["build_cached"] is False
    assert r["library"].endswith(".so") and os.path.exists(r["library"])
    assert os.path.exists(r["library"][:-3] + ".json")


def test_second_run_uses_the_cached_build_with_the_runtime_library_only(cli, first_run, matmul_onnx, cache):
    assert first_run.returncode == 0, first_run.stderr
    # the same check a cached run makes for itself: after it, only libtvm_runtime is loaded
    probe = ("import json, sys, explorer, tvm_ffi\n"
             f"r = explorer.run_variant({str(matmul_onnx)!r}, strategy='fused', repeat=2)\n"
             "import tvm\n"
             "print(json.dumps({'cached': r['build_cached'], 'runtime_only': bool(tvm.base._RUNTIME_ONLY),\n"
             "  'libs': sorted(tvm.base._LOADED_LIBS), 'relax': 'tvm.relax' in sys.modules,\n"
             "  'dram': r['predicted_dram_bytes']}))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **cache})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"cached": True, "runtime_only": True, "libs": ["tvm_runtime"], "relax": False,
                   "dram": json.loads(first_run.stdout)["predicted_dram_bytes"]}

    again = cli("run", str(matmul_onnx), "--strategy", "fused", "--repeat", "3", "--json", "--cached-only", env=cache)
    assert again.returncode == 0, again.stderr
    r = json.loads(again.stdout)
    assert r["build_cached"] is True and len(r["latency_ms"]) == 3


def test_text_output_prints_latency_and_predictions(cli, first_run, matmul_onnx, cache):
    assert first_run.returncode == 0, first_run.stderr
    proc = cli("run", str(matmul_onnx), "--strategy", "fused", "--repeat", "3", env=cache)
    assert proc.returncode == 0, proc.stderr
    assert "cached build: 3 runs" in proc.stdout
    assert "latency: median" in proc.stdout and " ms, min " in proc.stdout and " ms, max " in proc.stdout
    assert "predicted: energy" in proc.stdout and "DRAM 256 B" in proc.stdout


def test_prepare_does_not_import_tvm(matmul_onnx):
    probe = ("import sys\nfrom explorer.model.prepare import prepare\nfrom explorer.deploy import run\n"
             f"prepare({str(matmul_onnx)!r})\nprint('tvm' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("args, message", [
    (["--target", "npu"], "target 'npu' cannot be run on this machine"),
    (["--target", TOY_TARGET], "target 'toy' cannot be run on this machine"),
    (["--strategy", "turbo"], "known strategies: baseline"),
    (["--repeat", "0"], "--repeat must be at least 1"),
])
def test_what_cannot_run_gets_one_line_and_exit_2(cli, matmul_onnx, cache, args, message):
    proc = cli("run", str(matmul_onnx), *args, env=cache)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cached_only_never_compiles(cli, conv_add_relu_onnx, tmp_path):
    proc = cli("run", str(conv_add_relu_onnx), "--cached-only", "--mcpu", "haswell",
               env={"EXPLORER_CACHE": str(tmp_path)})
    assert proc.returncode == 2
    assert "is not cached" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("strategy", ["fused", "fused-int8"])
def test_after_a_sweep_timed_a_variant_explorer_run_compiles_nothing(cli, conv_add_relu_onnx, tmp_path, strategy):
    # int8: run calibrates as the sweep did, so it finds the sweep's library
    env = {"EXPLORER_CACHE": str(tmp_path)}
    sweep = cli("sweep", str(conv_add_relu_onnx), "--targets", "cpu", "--strategies", strategy, "--quiet", timeout=600, env={**env})
    assert sweep.returncode == 0, sweep.stderr
    proc = cli("run", str(conv_add_relu_onnx), "--strategy", strategy, "--repeat", "2", "--json", "--cached-only",
               env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["build_cached"] is True and r["predicted_energy_j"] > 0
    assert r["threads"] == min(2, len(os.sched_getaffinity(0)))


