"""The stores of lowerings and measurements, and the status a row carries: round trips, concurrent writers, the session's own cache."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.core.variant import Failure, KernelCall, Lowering, Measurement, Status, StatusKind
from explorer.store import lowerings
from explorer.store.results_db import SQLiteStore


def _put_many(args):
    cache, key, n = args
    os.environ["EXPLORER_CACHE"] = cache
    workload = pd.DataFrame({"call_index": list(range(200)), "kernel": ["k"] * 200, "macs": [float(n)] * 200})
    for _ in range(20):
        lowerings.put(key, Lowering("llvm:x", workload, [], 0, 0.0, False))
        got = lowerings.get(key)
        assert got is not None and len(got.workload) == 200
    return True


def test_the_tests_never_touch_the_users_cache():
    from tests.conftest import USER_CACHE

    cache = Path(os.environ["EXPLORER_CACHE"])
    assert str(cache) != USER_CACHE and cache.name.startswith("explorer-test-cache-")


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


def test_processes_filling_one_key_at_once_leave_one_whole_entry(tmp_path, monkeypatch):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(_put_many, [(str(tmp_path), "same", 1)] * 3)) == [True] * 3
    assert [p.name for p in (tmp_path / "lowerings").iterdir()] == ["same"]  # no temporary left behind
    assert lowerings.get("same").workload.macs.tolist() == [1.0] * 200


