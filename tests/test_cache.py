"""Scores are never stale and nothing is compiled twice: the lowering cache and the TVM boundary."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import explorer
from explorer.core.strategies import AXES, Strategy, get_strategy
from explorer.core.variant import Failure, KernelCall, Lowering, Measurement, Status, StatusKind
from explorer.store import lowerings
from explorer.store.results_db import SQLiteStore
from tests.conftest import TOY_TARGET

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or os.getcwd(), env={**os.environ, "PYTHONPATH": cwd or os.getcwd()})


def test_the_tests_never_touch_the_users_cache():
    from tests.conftest import USER_CACHE

    cache = Path(os.environ["EXPLORER_CACHE"])
    assert str(cache) != USER_CACHE and cache.name.startswith("explorer-test-cache-")


def test_cost_models_never_imports_tvm():
    probe = "import sys, cost_models.energy, cost_models.uncertainty, cost_models.targets, cost_models.workload\n" \
            "print(sorted(m for m in sys.modules if m == 'tvm' or m.startswith(('tvm.', 'tvm_ffi'))))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_only_the_tvm_subpackage_imports_tvm():
    offenders = []
    for path in sorted((ROOT / "explorer").glob("*.py")):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if words[:2] in (["import", "tvm"], ["import", "tvm_ffi"]) or (words[:1] == ["from"] and len(words) > 1
                                                                           and words[1].split(".")[0] in ("tvm", "tvm_ffi")):
                offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []


def test_pipeline_factory_maps_are_the_strategy_axes():
    from explorer.tvm import pipeline

    assert {"fusion": list(pipeline.FUSION), "layout": list(pipeline.LAYOUT),
            "precision": list(pipeline.PRECISION)} == {k: list(v) for k, v in AXES.items()}
    assert list(pipeline.PRECISION_AFTER_LEGALIZE) == list(pipeline.PRECISION)


def test_an_unknown_axis_value_lists_the_known_ones():
    from explorer.tvm import pipeline

    with pytest.raises(KeyError, match="unknown layout 'nchw16c'; known: native, nhwc"):
        pipeline.lookup(pipeline.LAYOUT, "layout", "nchw16c")


def _toy_copy(tmp_path, dram_pj: float) -> str:
    text = Path(TOY_TARGET).read_text()
    old = "energy_pj_per_byte = { value = 100.0, low = 100.0, high = 100.0"
    assert old in text
    path = tmp_path / "mytoy.toml"
    path.write_text(text.replace(old, f"energy_pj_per_byte = {{ value = {dram_pj}, low = {dram_pj}, high = {dram_pj}"))
    return str(path)


def test_editing_a_target_figure_changes_the_energies_and_compiles_nothing(conv_add_relu_onnx, tmp_path):
    run = lambda target: explorer.run_sweep([str(conv_add_relu_onnx)], targets=[target],  # noqa: E731
                                            strategies=["baseline", "fused"], progress=False, isolate=False)
    first = run(_toy_copy(tmp_path, 100.0))
    again = run(_toy_copy(tmp_path, 200.0))  # the same file, DRAM energy per byte doubled
    assert (again.compiled, again.cached) == (0, 2)
    a, b = first.variants.set_index("strategy"), again.variants.set_index("strategy")
    assert list(b.energy_dram_j) == [2 * x for x in a.energy_dram_j]
    assert list(b.energy_j - b.energy_dram_j) == pytest.approx(list(a.energy_j - a.energy_dram_j), rel=1e-12)
    assert list(b.compile_s) == list(a.compile_s)


def test_editing_the_energy_code_changes_the_energies_and_compiles_nothing(conv_add_relu_onnx, tmp_path):
    copy = tmp_path / "repo"
    for d in ("explorer", "cost_models", "models"):
        shutil.copytree(ROOT / d, copy / d, ignore=shutil.ignore_patterns("__pycache__"))
    args = ["sweep", str(conv_add_relu_onnx), "--targets", TOY_TARGET, "--strategies", "baseline", "--quiet"]
    first = cli(*args, "--out", str(tmp_path / "a"), cwd=str(copy))
    assert first.returncode == 0, first.stderr
    energy_py = copy / "cost_models" / "energy.py"
    energy_py.write_text(energy_py.read_text().replace("PJ = 1e-12", "PJ = 2e-12"))  # every pJ figure doubles
    again = cli(*args, "--out", str(tmp_path / "b"), cwd=str(copy))
    assert again.returncode == 0, again.stderr
    assert "compiled 0 lowerings, 1 read back" in again.stdout
    a, b = pd.read_csv(tmp_path / "a" / "variants.csv"), pd.read_csv(tmp_path / "b" / "variants.csv")
    assert b.energy_compute_j.item() == pytest.approx(2 * a.energy_compute_j.item(), rel=1e-12)
    assert b.energy_memory_j.item() == pytest.approx(2 * a.energy_memory_j.item(), rel=1e-12)
    assert b.energy_static_j.item() == a.energy_static_j.item()  # watts x seconds: no pJ in it


class _AbortingStrategy(Strategy):
    """A strategy whose unpickling in the worker process kills that process, as a segfault would."""

    def __reduce__(self):
        return (os.abort, ())


def test_a_worker_crash_costs_one_row(matmul_onnx):
    crash = _AbortingStrategy("crash", fusion="tvm", layout="nhwc")
    result = explorer.run_sweep([str(matmul_onnx)], targets=[TOY_TARGET], strategies=[crash, "baseline", "fused"],
                                progress=False)
    v = result.variants.set_index("strategy")
    assert v.loc["crash", "status_kind"] == "crashed"
    assert v.loc["crash", "status"].startswith("failed: the TVM worker process crashed")
    assert list(v.loc[["baseline", "fused"], "status_kind"]) == ["analysed", "analysed"]
    assert (v.loc[["baseline", "fused"], "energy_j"] > 0).all()


class _HangingStrategy(Strategy):
    """A strategy whose unpickling in the worker process hangs, as a compile that never ends would."""

    def __reduce__(self):
        return (time.sleep, (600,))


def test_a_variant_past_its_time_limit_costs_one_row_and_the_others_complete(matmul_onnx):
    hang = _HangingStrategy("hang", fusion="tvm", layout="nhwc")
    start = time.monotonic()
    result = explorer.run_sweep([str(matmul_onnx)], targets=[TOY_TARGET], strategies=[hang, "baseline", "fused"],
                                progress=False, jobs=2, variant_timeout=8)
    assert time.monotonic() - start < 90
    v = result.variants.set_index("strategy")
    assert v.loc["hang", "status_kind"] == "timed-out"
    assert v.loc["hang", "status"] == "failed: ran past its time limit of 8 s (--variant-timeout)"
    assert list(v.loc[["baseline", "fused"], "status_kind"]) == ["analysed", "analysed"]


def test_parallel_workers_give_the_rows_of_one_worker(conv_add_relu_onnx, tmp_path, monkeypatch):
    rows = []
    for jobs in (1, 2):
        monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / f"cache{jobs}"))
        v = explorer.sweep(str(conv_add_relu_onnx), targets=[TOY_TARGET], strategies=["baseline", "fused", "nhwc"],
                           progress=False, jobs=jobs)
        rows.append(v.drop(columns=["compile_s"]))
    pd.testing.assert_frame_equal(rows[0], rows[1])


def test_an_interrupted_sweep_resumes_and_recompiles_nothing_it_finished(conv_add_relu_onnx, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "EXPLORER_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "explorer.cli", "sweep", str(conv_add_relu_onnx), "--targets", TOY_TARGET,
           "--quiet", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    entries = cache / "lowerings"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len([p for p in entries.glob("*") if not p.name.startswith(".")]) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, as kill -9 would
    proc.wait()
    finished = sorted(p.name for p in entries.glob("*") if not p.name.startswith("."))
    assert 2 <= len(finished) < 9
    from explorer.store.results_db import SQLiteStore

    stored = SQLiteStore(tmp_path / "out" / "results.sqlite")
    kept = stored.counts()[0]  # every finished lowering is in --out's store (written first) too
    stored.close()
    assert kept in (len(finished), len(finished) + 1)
    shutil.rmtree(cache / "lowerings")  # the results store alone keeps what finished
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"compiled {9 - kept} lowerings, {kept} read back" in again.stdout
    v = pd.read_csv(tmp_path / "out" / "variants.csv")
    assert len(v) == 9 and v.energy_j.gt(0).all() and set(v.status_kind) == {"analysed", "emulated"}


def test_a_gpu_sweep_builds_cuda_with_nvcc(matmul_onnx):
    v = explorer.sweep(str(matmul_onnx), targets=["gpu"], strategies=["fused"], progress=False, isolate=False)
    r = v.iloc[0]
    assert (r.status, r.status_kind, bool(r.built), bool(r.ran)) == (
        "ok: built with nvcc (not run: no GPU here)", "built-not-run", True, False)
    assert r.macs == 64 * 32


def test_a_lowering_round_trips_through_the_cache_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    workload = pd.DataFrame({"call_index": [0, 1], "kernel": ["a", "b"], "macs": [1 / 3, 2e-17],
                             "traffic_curve": ["0:10 64:5", "0:1"], "op_mac_float32": [1 / 3, np.nan]})
    lowering = Lowering("llvm:znver4", workload, [KernelCall(0, "a", ("x", "y"), ("t",)), KernelCall(1, "b", ("b",), ())],
                        1024, 1.5, True, analyse_s=0.125, node="n1")
    run = Measurement([np.arange(6, dtype=np.float32).reshape(2, 3)], 0.25, [0.1, 0.3], threads=2, node="n1")
    for store in (lowerings.DirectoryStore(), SQLiteStore(tmp_path / "out" / "results.sqlite")):
        store.put_lowering("k", lowering)
        store.put_measurement("m", run)
        back = store.get_lowering("k")
        pd.testing.assert_frame_equal(back.workload, workload)
        fields = [f.name for f in dataclasses.fields(Lowering) if f.name != "workload"]
        assert [getattr(back, f) for f in fields] == [getattr(lowering, f) for f in fields]
        again = store.get_measurement("m")
        assert (again.latency_runs_s, again.threads, again.node) == ([0.1, 0.3], 2, "n1")
        assert again.outputs[0].tolist() == run.outputs[0].tolist() and again.outputs[0].dtype == np.float32
        assert store.get_lowering("missing") is None and store.get_measurement("missing") is None


def test_status_text_keeps_the_columns_users_script_against():
    assert Status(StatusKind.OK).text == "ok"
    analysed = Status(StatusKind.ANALYSED, "analysed from lowered TIR (not built)")
    emulated = analysed.emulated("npu has no float16 unit")
    assert (emulated.kind, emulated.text) == (StatusKind.EMULATED,
                                             "ok: analysed from lowered TIR (not built); npu has no float16 unit")
    mismatch = Status(StatusKind.MISMATCH, "max abs error 1 > tolerance 0.001").emulated("x")
    assert (mismatch.kind, mismatch.text) == (StatusKind.MISMATCH, "MISMATCH: max abs error 1 > tolerance 0.001; x")
    assert Failure(Status(StatusKind.CRASHED, "boom")).status.text == "failed: boom"
    assert not Status(StatusKind.TIMED_OUT).has_numbers and emulated.has_numbers


def test_keys_separate_strategies_lowerings_and_runs(matmul_onnx):
    from explorer.core.variant import LoweringRequest
    from explorer.model.prepare import prepare

    m = prepare(str(matmul_onnx))
    req = LoweringRequest(str(m.path), m.sha256, get_strategy("fused"), "generic", mcpu="haswell", build=True)
    variants = [req, replace(req, strategy=get_strategy("baseline")),
                replace(req, mcpu="znver4"), replace(req, build=False)]
    keys = [lowerings.lowering_key(r) for r in variants]
    assert len(set(keys)) == 4
    # the export path and the scoring target of an untuned strategy do not change what is compiled
    assert lowerings.lowering_key(replace(req, export="/x.so", scoring="npu")) == keys[0]


def _put_many(args):
    cache, key, n = args
    os.environ["EXPLORER_CACHE"] = cache
    workload = pd.DataFrame({"call_index": list(range(200)), "kernel": ["k"] * 200, "macs": [float(n)] * 200})
    for _ in range(20):
        lowerings.put(key, Lowering("llvm:x", workload, [], 0, 0.0, False))
        got = lowerings.get(key)
        assert got is not None and len(got.workload) == 200
    return True


def test_processes_filling_one_key_at_once_leave_one_whole_entry(tmp_path, monkeypatch):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(_put_many, [(str(tmp_path), "same", 1)] * 3)) == [True] * 3
    assert [p.name for p in (tmp_path / "lowerings").iterdir()] == ["same"]  # no temporary left behind
    assert lowerings.get("same").workload.macs.tolist() == [1.0] * 200


def test_a_strict_sweep_stops_at_the_first_failure_and_keeps_what_finished(matmul_onnx, tmp_path, monkeypatch):
    from explorer.core.errors import SweepStopped

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    crash = _AbortingStrategy("crash", fusion="tvm", layout="nhwc")
    with pytest.raises(SweepStopped, match="matmul / crash / toy: failed: the TVM worker process crashed"):
        explorer.run_sweep([str(matmul_onnx)], targets=[TOY_TARGET], strategies=["baseline", crash, "fused"],
                           progress=False, jobs=1, strict=True)
    again = explorer.run_sweep([str(matmul_onnx)], targets=[TOY_TARGET], strategies=["baseline"], progress=False)
    assert (again.compiled, again.cached) == (0, 1)  # baseline finished before the crash and was kept


def test_real_inputs_from_files_are_the_check_input_of_every_run(conv_add_relu_onnx, tmp_path, monkeypatch):
    from explorer.model.prepare import prepare
    from explorer.sweep.reference import reference, reference_outputs

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "inputs").mkdir()
    x = np.linspace(-3, 3, 4 * 6 * 6, dtype=np.float32).reshape(1, 4, 6, 6)
    np.save(tmp_path / "inputs" / "a.npy", x)
    ref = reference(prepare(str(conv_add_relu_onnx)), inputs_dir=tmp_path / "inputs")
    assert ref.source.startswith("files:") and np.array_equal(ref.inputs[0], x)
    np.testing.assert_array_equal(ref.outputs[0], reference_outputs(prepare(str(conv_add_relu_onnx)), {"x": x})[0])
    explorer.run_sweep([str(conv_add_relu_onnx)], targets=["cpu"], strategies=["fused"], progress=False)
    real = explorer.run_sweep([str(conv_add_relu_onnx)], targets=["cpu"], strategies=["fused"], progress=False,
                              inputs=tmp_path / "inputs")
    assert real.variants.within_tolerance.all() and real.variants.ran.all()
    # the same build, run and timed again on the other input
    assert real.compiled == 0 and real.worker_s["run"] > 0
