"""The report's tuned-schedule section and candidate plot, on hand-made tables."""

from __future__ import annotations

import pandas as pd
import pytest

from explorer.reports.markdown import schedules_section
from explorer.reports.plots import candidates_plot


def _candidates() -> pd.DataFrame:
    # kernel a: the fastest candidate (1 ms, 5 mJ) is not the cheapest (1.1 ms, 4 mJ); kernel b: it is
    rows = [("a", 0, 1e-3, 5e-3), ("a", 1, 1.1e-3, 4e-3), ("a", 2, 4e-3, 16e-3), ("b", 0, 2e-3, 1e-3), ("b", 1, 3e-3, 2e-3)]
    c = pd.DataFrame(rows, columns=["kernel", "candidate", "measured_latency_s", "energy_j"]).assign(strategy="t")
    c["latency_best"] = c.candidate.eq(0)
    c["energy_best"] = (c.kernel.eq("a") & c.candidate.eq(1)) | (c.kernel.eq("b") & c.candidate.eq(0))
    return c


def _schedules() -> pd.DataFrame:
    return pd.DataFrame({
        "model": "m", "strategy": "t", "kernel": ["b", "a"], "candidates": [2, 3], "differ": [False, True],
        "latency_best_s": [2e-3, 1e-3], "latency_best_energy_j": [1e-3, 5e-3], "latency_best_dram_bytes": [1e6, 2e6],
        "energy_best_s": [2e-3, 1.1e-3], "energy_best_energy_j": [1e-3, 4e-3], "energy_best_dram_bytes": [1e6, 1e6],
        "switch_static_w": [float("nan"), 12.0], "static_w": 4.0})


def test_the_schedule_section_counts_and_lists_differing_kernels_first():
    text = "\n".join(schedules_section(_schedules(), "report.html#candidates-section"))
    assert "They differ for 1 of 2 kernels." in text and "](report.html#candidates-section)" in text
    assert "the target charges 4 W." in text
    rows = [line for line in text.splitlines() if line.startswith("| m |")]
    assert rows[0] == "| m | t | a | 3 | 1 ms, 5 mJ | 1.1 ms, 4 mJ | 20.0% | 10.0% | 2.00 MB / 1.00 MB | 12 W |"
    assert rows[1].endswith("| never |")


def test_the_candidate_plot_places_every_candidate_and_rings_energy_best_ones_that_are_not_fastest():
    plot = candidates_plot(_candidates())
    dots, rings = [tr for tr in plot.traces if tr["marker"]["size"] == 6], [tr for tr in plot.traces if tr["marker"]["size"] == 14]
    points = [(x, y) for tr in dots for x, y in zip(tr["x"], tr["y"])]
    assert len(points) == 5 and len(rings) == 1
    # the ring sits on kernel a's candidate 1: 1.1x the fastest's latency, 0.8x its energy
    assert list(zip(rings[0]["x"], rings[0]["y"])) == [pytest.approx((1.1, 0.8))]
    assert points.count((1.0, 1.0)) == 2  # both kernels' fastest sit at (1x, 1x)
    assert plot.layout["xaxis"]["type"] == plot.layout["yaxis"]["type"] == "log"


def test_the_candidate_plot_escapes_a_model_name_as_text():
    plot = candidates_plot(_candidates().assign(model="<b>m</b>"))
    assert [tr["name"] for tr in plot.traces][0] == "&lt;b&gt;m&lt;/b&gt;"


def test_strategies_tuned_from_the_same_records_share_one_row_per_kernel():
    both = pd.concat([_schedules(), _schedules().assign(strategy="u")], ignore_index=True)
    rows = [line for line in "\n".join(schedules_section(both)).splitlines() if line.startswith("| m |")]
    assert len(rows) == 2 and rows[0].startswith("| m | t, u | a |")


def test_the_rankings_line_counts_the_pairs_that_hold_in_95_percent_of_samples():
    from explorer.reports.markdown import rankings_section

    rankings = pd.DataFrame({"model": "m", "target": "cpu", "lower": ["a", "a", "b"], "higher": ["b", "c", "c"],
                             "nominal_ratio": [1.1, 1.5, 1.36], "share_lower_wins": [1.0, 0.95, 0.94]})
    text = "\n".join(rankings_section(rankings))
    assert "**m on cpu**: 2 of 3 pairwise rankings hold in at least 95% of samples." in text
    assert "| b | c | 1.360 | 94.0% |" in text


def test_the_fusion_table_charges_each_fused_call_against_the_unfused_calls_it_absorbed():
    from explorer.scoring.fusion import fusion_table

    # unfused: conv (100 B DRAM, 10 J), add (40 B, 2 J), relu (30 B, 1 J), then another conv;
    # fused: conv+add+relu in one call (60 B, 9 J), the second conv alone
    k = pd.DataFrame([
        ("base", 0, "conv", "conv", "", 0, 100.0, 500.0, 10.0), ("base", 1, "add", "add", "", 0, 40.0, 80.0, 2.0),
        ("base", 2, "relu", "relu", "", 0, 30.0, 60.0, 1.0), ("base", 3, "conv", "conv", "", 0, 100.0, 500.0, 10.0),
        ("fused", 0, "fused_conv_add_relu", "conv + add + relu", "c a", 2304, 60.0, 400.0, 9.0),
        ("fused", 1, "conv", "conv", "", 0, 100.0, 500.0, 10.0)],
        columns=["strategy", "call_index", "kernel", "ops", "eliminated", "eliminated_bytes", "dram_bytes",
                 "l2_bytes", "energy_j"])
    t = fusion_table(k, "fused", "base", ("dram_bytes", "l2_bytes"))
    assert t.to_dict("records") == [{
        "kernel": "fused_conv_add_relu", "ops": 3, "eliminated_tensors": 2, "eliminated_bytes": 2304,
        "dram_bytes_unfused": 170.0, "dram_bytes_fused": 60.0, "dram_bytes_saved": 110.0, "l2_bytes_saved": 240.0,
        "energy_unfused_j": 13.0, "energy_fused_j": 9.0, "energy_saved_j": 4.0, "matched": True}]


def test_the_report_says_per_target_whether_static_energy_is_over_measured_time():
    from explorer.reports.markdown import static_time_lines

    v = pd.DataFrame({"target": ["cpu", "cpu", "npu"], "energy_j": [1.0, 2.0, 3.0],
                      "latency_source": ["measured", "modelled", "modelled"]})
    cpu, npu, _ = static_time_lines(v)
    assert cpu.startswith("- **cpu**: static energy of 1 of 2 variants is charged over the time their builds measured")
    assert npu.startswith("- **npu**: static energy is charged over the modelled latency")
