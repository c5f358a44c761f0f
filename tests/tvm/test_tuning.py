"""MetaSchedule tuning end to end on a tiny model: records kept, reused, extended and applied."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import explorer
from cost_models.targets import load_target
from explorer.core.strategies import Strategy
from explorer.scoring import picks as schedules
from explorer.sweep.tune import tune_model
from explorer.tvm.tuning import candidates as candidates_module
from explorer.tvm.tuning import search as tuning
from explorer.tvm.tuning.spaces import default_schedule
from tests.conftest import ROOT

#: The zoo's tuned strategies spend 128 trials; these spend 4 on the one-kernel fixture.
TINY = Strategy("tiny-tuned", fusion="tvm", tuning="metaschedule:4")
TINY_ENERGY = Strategy("tiny-tuned-energy", fusion="tvm", tuning="metaschedule:4:energy")

slow = pytest.mark.slow


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


def _traces(path: Path) -> list[str]:
    db = candidates_module.database(path)
    return [str(rec.trace) for rec in db.get_all_tuning_records()]


def _matmul_task(matmul_onnx):
    import tvm

    from explorer.model.prepare import prepare
    from explorer.tvm import codegen
    from explorer.tvm.frontend import imported
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.pipeline import PipelineContext, strategy_passes

    model = prepare(str(matmul_onnx))
    target = codegen.llvm_target(host_llvm_cpu())
    with tvm.target.Target(target):
        mod = strategy_passes(PipelineContext(TINY, "generic"), schedule=False)(imported(str(model.path), model.sha256))
    (task,) = tuning.kernel_tasks(mod, target)
    return task


@slow
def test_metaschedule_tuning_measures_the_budget_and_keeps_records(records):
    path, first = records
    assert (first.tasks, first.tuned, first.reused, first.trials) == (1, 1, 0, 4)
    assert (path / "database_tuning_record.json").read_text().count("\n") == 4


@slow
def test_metaschedule_the_default_schedule_is_measured_as_one_of_the_budget(records, matmul_onnx):
    path, _ = records
    task = _matmul_task(matmul_onnx)
    default = str(default_schedule(task.dispatched[0]["main"], task.target).trace)
    assert "cache_write" in default and "vectorize" in default  # TiledReduction's tile, not a bare loop nest
    assert _traces(path).count(default) == 1


@slow
def test_metaschedule_the_default_schedules_nearest_neighbour_is_measured_next(records, matmul_onnx):
    from explorer.tvm.tuning.neighbors import neighbor_traces

    task = _matmul_task(matmul_onnx)
    (first, *_) = neighbor_traces(default_schedule(task.dispatched[0]["main"], task.target).trace)
    tiles = lambda trace: [[int(x) for x in trace.decisions[i]] for i in trace.insts  # noqa: E731
                           if i.kind.name == "SamplePerfectTile"]
    db = candidates_module.database(records[0])
    assert tiles(first) in [tiles(rec.trace) for rec in db.get_all_tuning_records()]
    assert '"measured": 1' in (records[0] / "neighbors.json").read_text()  # half of the 3 after the default


@slow
def test_metaschedule_a_changed_default_schedule_is_measured_again(records, matmul_onnx, tmp_path):
    copy = shutil.copytree(records[0], tmp_path / "records")
    seeds = copy / "seeds.json"
    seeds.write_text(re.sub(r'": "[0-9a-f]+"', '": "0000000000000000"', seeds.read_text()))
    again = tune_model(str(matmul_onnx), strategy=TINY, records=copy, progress=False)
    assert (again.tuned, again.reused, again.trials) == (0, 1, 1)  # the budget was met: only the seed


@slow
def test_metaschedule_second_tuning_run_reuses_the_records(records, matmul_onnx):
    path, _ = records
    again = tune_model(str(matmul_onnx), strategy=TINY, records=path, progress=False)
    assert (again.tuned, again.reused, again.trials) == (0, 1, 0)


@slow
def test_metaschedule_larger_budget_measures_only_the_missing_trials(records, matmul_onnx, tmp_path):
    path, _ = records
    copy = shutil.copytree(path, tmp_path / "records")
    more = tune_model(str(matmul_onnx), strategy=TINY, trials=6, records=copy, progress=False)
    assert (more.tuned, more.trials) == (1, 2)
    assert tune_model(str(matmul_onnx), strategy=TINY, trials=6, records=copy, progress=False).tuned == 0


@slow
def test_metaschedule_tuned_variants_reuse_records_build_and_run(swept):
    v = swept[0].variants.set_index("strategy")
    assert v.within_tolerance.all() and (v.tuned_kernels == 0).all() and (v.reused_kernels == 1).all()
    assert (v.measured_latency_s > 0).all() and (v.onnxruntime_latency_s > 0).all()


@slow
def test_metaschedule_every_measured_candidate_is_scored_and_each_pick_marked_once(swept):
    result = swept[0]
    s, c = result.schedules, result.candidates
    assert list(s.strategy) == ["tiny-tuned", "tiny-tuned-energy"] and set(s.kernel) == {"matmul"}
    mine = c[c.strategy == "tiny-tuned"]
    assert len(mine) == s.iloc[0].candidates == 4  # all four measured candidates, none dropped
    static_w = load_target("cpu").static_power_w.value
    assert list(mine.static_energy_j) == [static_w * t for t in mine.measured_latency_s]
    for pick in schedules.PICKS:
        assert mine[f"{pick}_best"].sum() == 1
    assert mine.loc[mine.energy_best, "energy_j"].item() == mine.energy_j.min() == s.iloc[0].energy_best_energy_j
    assert mine.loc[mine.latency_best, "measured_latency_s"].item() == mine.measured_latency_s.min()


@slow
def test_metaschedule_candidates_are_lowered_once_and_scored_from_the_cache(records, swept, monkeypatch):
    from explorer.tvm.compiler_facts import resolve_mcpu

    calls = []
    real = candidates_module._candidate_workload
    monkeypatch.setattr(candidates_module, "_candidate_workload", lambda *a: calls.append(a) or real(*a))
    candidates, _ = candidates_module.measured_candidates(records[0], {"kind": "llvm", "mcpu": resolve_mcpu()})
    assert calls == []
    assert len(candidates) == 4 and candidates.analysed.all()


@slow
def test_metaschedule_energy_pick_scores_on_the_target_being_built(records, matmul_onnx, tmp_path):
    # a copy of the host's CPU file whose static power is 1000x: the table's static energies follow it
    import re
    import tomllib

    cpu = load_target("cpu")
    text = Path(cpu.path).read_text()
    static = tomllib.loads(text)["static_power_w"]
    figure = re.search(r"\[static_power_w\]\nvalue = [^\n]+\nlow = [^\n]+\nhigh = [^\n]+", text).group(0)
    hot = tmp_path / "hot.toml"
    hot.write_text(re.sub(r'^name = "[^"]+"', 'name = "hot"', text, count=1, flags=re.M).replace(
        figure, f"[static_power_w]\nvalue = {1000 * static['value']}\nlow = {1000 * static['low']}\n"
                f"high = {1000 * static['high']}"))
    spec = load_target(str(hot))
    result = explorer.run_sweep([str(matmul_onnx)], targets=[str(hot)], strategies=[TINY_ENERGY], progress=False,
                                isolate=False, tuning_records=records[0])
    c = result.candidates
    assert list(c.static_energy_j) == [spec.static_power_w.value * t for t in c.measured_latency_s]


@slow
def test_metaschedule_cached_sweep_keeps_the_schedule_tables(swept):
    first, run = swept
    again = run()
    assert (again.compiled, again.cached) == (0, 2)
    pd_equal = __import__("pandas").testing.assert_frame_equal
    pd_equal(again.schedules, first.schedules)
    pd_equal(again.candidates, first.candidates)


@slow
def test_metaschedule_ctrl_c_stops_after_the_batch_and_the_rerun_measures_only_what_is_missing(matmul_onnx, tmp_path):
    records = tmp_path / "records"
    cmd = [sys.executable, "-m", "explorer.cli", "tune", str(matmul_onnx), "--trials", "32", "--quiet",
           "--tuning-records", str(records)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    log = records / "logs" / "tvm.s_tir.meta_schedule.logging.task_scheduler.log"
    while time.monotonic() < deadline and not (log.exists() and "to builder" in log.read_text()):
        time.sleep(0.2)  # until the first batch is being built and measured
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    kept = (records / "database_tuning_record.json").read_text().count("\n")
    # the default schedule, its 6 neighbours (all the fixture's tiles have) and the search's first batch
    assert kept == 1 + 6 + tuning.TRIALS_PER_BATCH
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert re.search(r"1 tuned now \(9 trials in \d+ s, [\d.]+ trials/min\)", again.stdout), again.stdout


@slow
def test_metaschedule_the_rules_space_measures_other_tiles_of_the_default_schedule(matmul_onnx, tmp_path):
    stats = tuning.tune([_matmul_task(matmul_onnx)], 4, tmp_path, progress=False, space="rules")
    traces = _traces(tmp_path)
    assert stats.trials == len(traces) == len(set(traces)) == 4  # the default and three other tilings
    assert not any("meta_schedule." in trace for trace in traces)  # nothing from MetaSchedule's own rules


def test_an_unknown_tuning_space_is_one_clear_line_and_exit_2(matmul_onnx):
    out = subprocess.run([sys.executable, "-m", "explorer.cli", "tune", str(matmul_onnx), "--space", "nope", "--quiet"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["explorer: error: unknown tuning space 'nope'; known: rules, tvm, rules+tvm"]


@pytest.mark.parametrize("trials, population, generations", [(1, 64, 1), (4, 128, 1), (8, 256, 1), (16, 512, 2),
                                                             (64, 512, 4)])
def test_the_search_is_sized_to_the_trials_each_kernel_gets(trials, population, generations, monkeypatch):
    made = {}
    monkeypatch.setattr(tuning.ms.search_strategy, "EvolutionarySearch", lambda **kw: made.update(kw) or kw)
    tuning.search_strategy(trials)
    assert made == {"population_size": population, "genetic_num_iters": generations}
