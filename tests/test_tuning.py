"""MetaSchedule tuning end to end on a tiny model: records kept, reused, extended and applied.

This test guards the pinned apache-tvm-ffi: with 0.1.15 MetaSchedule's tune context segfaults."""

from __future__ import annotations

import math
import shutil

import pytest

import explorer
from explorer import tuning
from explorer.strategies import Strategy
from explorer.tuning import tune_model

#: The zoo's tuned strategies spend 128 trials; these spend 4 on the one-kernel fixture.
TINY = Strategy("tiny-tuned", fusion="tvm", tuning="metaschedule:4")
TINY_ENERGY = Strategy("tiny-tuned-energy", fusion="tvm", tuning="metaschedule:4:energy")


@pytest.fixture(scope="module")
def records(matmul_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("records")
    first = tune_model(str(matmul_onnx), strategy=TINY, records=path, progress=False)
    return path, first


@pytest.fixture(scope="module")
def swept(records, matmul_onnx, tmp_path_factory):
    path, _ = records
    out = tmp_path_factory.mktemp("sweep")
    run = lambda: explorer.run_sweep([str(matmul_onnx)], targets=["cpu"], strategies=[TINY, TINY_ENERGY],  # noqa: E731
                                     progress=False, isolate=False, tuning_records=path, out=out)
    return run(), run


def test_tuning_measures_the_budget_and_keeps_records(records):
    path, first = records
    assert (first.tasks, first.tuned, first.reused, first.trials) == (1, 1, 0, 4)
    assert (path / "database_tuning_record.json").stat().st_size > 0


def test_a_second_tuning_run_reuses_the_records(records, matmul_onnx):
    path, _ = records
    again = tune_model(str(matmul_onnx), strategy=TINY, records=path, progress=False)
    assert (again.tuned, again.reused, again.trials) == (0, 1, 0)


def test_a_larger_budget_measures_only_the_missing_trials(records, matmul_onnx, tmp_path):
    path, _ = records
    copy = shutil.copytree(path, tmp_path / "records")
    more = tune_model(str(matmul_onnx), strategy=TINY, trials=6, records=copy, progress=False)
    assert (more.tuned, more.trials) == (1, 2)
    assert tune_model(str(matmul_onnx), strategy=TINY, trials=6, records=copy, progress=False).tuned == 0


def test_tuned_variants_reuse_records_build_and_run(swept):
    v = swept[0].variants.set_index("strategy")
    assert v.within_tolerance.all() and (v.tuned_kernels == 0).all() and (v.reused_kernels == 1).all()
    assert (v.measured_latency_s > 0).all() and (v.onnxruntime_latency_s > 0).all()


def test_every_measured_candidate_is_scored_and_each_pick_marked_once(swept):
    result = swept[0]
    s, c = result.schedules, result.candidates
    assert list(s.strategy) == ["tiny-tuned", "tiny-tuned-energy"] and set(s.kernel) == {"matmul"}
    mine = c[c.strategy == "tiny-tuned"]
    assert len(mine) == s.iloc[0].candidates >= 1
    assert (mine.energy_j == mine.dynamic_energy_j + mine.static_energy_j).all()
    for pick in tuning.PICKS:
        assert mine[f"{pick}_best"].sum() == 1
    assert mine.loc[mine.energy_best, "energy_j"].item() == mine.energy_j.min() == s.iloc[0].energy_best_energy_j
    assert mine.loc[mine.latency_best, "measured_latency_s"].item() == mine.measured_latency_s.min()


def test_candidates_are_lowered_once_and_scored_from_the_cache(records, swept, monkeypatch):
    from explorer.tvm_compile import host_target

    def fail(*_):
        raise AssertionError("lowered again")

    monkeypatch.setattr(tuning, "_candidate_workload", fail)
    choice = tuning.choose(records[0], host_target())
    assert len(choice.candidates) == swept[0].schedules.iloc[0].candidates


def test_a_cached_sweep_keeps_the_schedule_tables(swept):
    first, run = swept
    again = run()
    assert list(again.schedules.kernel) == list(first.schedules.kernel)
    assert list(again.schedules.energy_best_energy_j) == pytest.approx(list(first.schedules.energy_best_energy_j))
    assert len(again.candidates) == len(first.candidates)


def test_the_break_even_static_power_is_where_the_best_slower_candidate_ties():
    # fastest: 1 ms, 2 mJ dynamic; 1.5 ms saves 1 mJ over 0.5 ms (2 W); 3 ms saves 1.5 mJ over 2 ms (0.75 W)
    assert tuning.break_even_static_w([1.5e-3, 1e-3, 3e-3], [1e-3, 2e-3, 0.5e-3]) == pytest.approx(2.0)
    assert math.isnan(tuning.break_even_static_w([1e-3, 2e-3], [1e-3, 1e-3]))


def test_untuned_all_excludes_tuned_strategies():
    assert not any(s.tuned for s in explorer.strategies.parse_strategies("all"))
