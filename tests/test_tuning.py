"""MetaSchedule tuning end to end on a tiny model: records kept, reused, and applied.

This test guards the pinned apache-tvm-ffi: with 0.1.15 MetaSchedule's tune context segfaults."""

from __future__ import annotations

import pytest

import explorer
from explorer.tuning import tune_model


@pytest.fixture(scope="module")
def records(matmul_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("records")
    first = tune_model(str(matmul_onnx), strategy="fused-tuned", trials=4, records=path, progress=False)
    return path, first


def test_tuning_measures_candidates_and_keeps_records(records):
    path, first = records
    assert first.tasks == 1 and first.tuned == 1 and first.trials >= 4
    assert (path / "database_tuning_record.json").stat().st_size > 0


def test_a_second_tuning_run_reuses_the_records(records, matmul_onnx):
    path, _ = records
    again = tune_model(str(matmul_onnx), strategy="fused-tuned", trials=4, records=path, progress=False)
    assert (again.tuned, again.reused, again.trials) == (0, 1, 0)


def test_tuned_variants_build_run_and_report_their_schedule_choice(records, matmul_onnx):
    path, _ = records
    result = explorer.run_sweep([str(matmul_onnx)], targets=["cpu"], strategies=["fused-tuned", "fused-tuned-energy"],
                                progress=False, isolate=False, tuning_records=path)
    v = result.variants.set_index("strategy")
    assert v.within_tolerance.all() and (v.tuned_kernels == 0).all() and (v.reused_kernels == 1).all()
    assert (v.measured_latency_s > 0).all() and (v.onnxruntime_latency_s > 0).all()
    s = result.schedules
    assert list(s.kernel) == ["fused_matmul"] or len(s) == 1
    assert s.iloc[0].candidates >= 1 and s.iloc[0].energy_best_energy_j <= s.iloc[0].latency_best_energy_j


def test_untuned_all_excludes_tuned_strategies():
    assert not any(s.tuned for s in explorer.strategies.parse_strategies("all"))
