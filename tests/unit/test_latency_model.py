"""The latency model: the cycles a core spends on a schedule, the cpu alias, and static power over measured time. Exact numbers by hand."""

from __future__ import annotations

import dataclasses
import tomllib

import pandas as pd
import pytest

from cost_models import energy, host, latency, targets
from cost_models.host import HostCPU
from cost_models.spec import Figure, Pipe
from cost_models.target_file import parse_target
from cost_models.targets import load_target
from explorer.scoring.rows import run_times
from tests.conftest import data_target

N = 4096  # elements per kernel below


def _scored(target, **extra):
    row = dict(kernel="k", call_index=0, macs=float(N), flops=2.0 * N, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
               model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0,
               local_access_bytes=0.0, traffic_curve="0:0", unit_traffic_curve="0:0", op_mac_float32=float(N),
               schedule=f"mac:float32:16:2:0={N}")
    row.update(extra)
    return energy.score(pd.DataFrame([row]), target).iloc[0]


def test_a_gathered_lane_is_one_load_and_one_insert():
    # cpu-cascadelake: two load ports, one port-5 insert per cycle, so the inserts bound a gather
    core = data_target("cpu-cascadelake").core
    assert latency.kernel_cycles("gather:int8:16:1:0=1600", core, 1).cycles == 1600
    assert latency.kernel_cycles("gather:int8:16:2:0=1600", core, 2).cycles == 800  # over two cores


def test_parallel_2_vector_16_runs_at_the_rate_the_target_gives():
    # cpu-zen4: two 256-bit FMA pipes, so a 16-lane fp32 FMA takes both for one cycle; two cores
    core = data_target("cpu-zen4").core
    k = latency.kernel_cycles(f"mac:float32:16:2:0={N}", core, threads=2)
    assert k.cycles == N / 16 / 2  # one instruction per cycle per core, 2 cores
    assert k.parallel


def test_zen4_runs_8_and_16_fp32_lanes_at_the_same_rate():
    core = data_target("cpu-zen4").core
    eight = latency.kernel_cycles(f"mac:float32:8:1:0={N}", core, threads=1).cycles
    sixteen = latency.kernel_cycles(f"mac:float32:16:1:0={N}", core, threads=1).cycles
    assert eight == sixteen == N / 16


def test_zen5_runs_16_fp32_lanes_twice_as_fast_as_zen4():
    fast = latency.kernel_cycles(f"mac:float32:16:1:0={N}", data_target("cpu-zen5").core, threads=1).cycles
    assert fast == N / 32


def test_one_accumulator_runs_at_the_fma_latency():
    core = data_target("cpu-zen4").core
    assert latency.kernel_cycles(f"mac:float32:1:1:1={N}", core, threads=1).cycles == N * 4


def test_an_accumulating_kernels_epilogue_runs_after_its_reduction():
    # cpu-zen4: the reduction's 16-lane FMAs take 1 cycle each, the epilogue's 16-lane adds 1 on the alu
    # pipes; they run one after the other, not side by side on their own pipes
    core = data_target("cpu-zen4").core
    text = f"mac:float32:16:1:8={16 * 1000} add:float32:16:1:0={16 * 300}"
    assert latency.kernel_cycles(text, core, threads=1).cycles == 1000 + 300


def test_a_kernel_without_an_accumulation_is_one_phase():
    core = data_target("cpu-zen4").core
    text = f"mul:float32:16:1:0={16 * 1000} add:float32:16:1:0={16 * 300}"
    assert latency.kernel_cycles(text, core, threads=1).cycles == 1000


def test_parallel_extent_3_keeps_2_threads_busy_for_two_rounds():
    assert latency.thread_share(3, 2) == 1.5
    assert latency.thread_share(1, 2) == 1.0
    assert latency.thread_share(64, 2) == 2.0


def test_front_end_bounds_many_cheap_instructions():
    # cpu-zen4 issues 6 per cycle: 12 one-lane ops of four classes are 2 cycles, more than any pipe's
    core = data_target("cpu-zen4").core
    text = "add:float32:1:1:0=4 cast:int32:1:1:0=2 load:float32:1:1:0=3 store:float32:1:1:0=1 mul:int32:1:1:0=2"
    assert latency.kernel_cycles(text, core, threads=1).cycles == max(6 / 2, 3 / 2, 1 / 1, 2 / 2, 12 / 6)


def test_kernel_latency_adds_the_call_and_fork_overheads():
    t = data_target("cpu-zen4")
    s = _scored(t)
    compute_s = N / 16 / 2 / t.core.clock_hz.value
    assert s.latency_s == pytest.approx(compute_s + t.core.call_overhead_s.value + t.core.parallel_overhead_s.value)
    assert s.latency_source == "modelled"


def test_static_power_is_charged_over_the_measured_time_where_there_is_one():
    t = data_target("cpu-zen4")
    s = _scored(t, run_time_s=1e-3)
    assert s.energy_static_j == pytest.approx(t.static_power_w.value * 1e-3)
    assert s.latency_s < 1e-4  # the modelled figure stays what it was
    assert s.latency_source == "measured"


def test_run_times_add_up_to_the_measured_inference():
    scored = pd.DataFrame({"latency_s": [1.0, 3.0]})
    assert list(run_times(scored, [2e-3, 6e-3], 1e-2)) == pytest.approx([2.5e-3, 7.5e-3])
    assert list(run_times(scored, [2e-3, float("nan")], 1e-2)) == pytest.approx([2.5e-3, 7.5e-3])  # by the model


def test_roofline_without_a_schedule_column():
    t = data_target("cpu-zen4")
    row = dict(kernel="k", call_index=0, macs=float(N), flops=2.0 * N, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
               model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0,
               local_access_bytes=0.0, traffic_curve="0:0", unit_traffic_curve="0:0", op_mac_float32=float(N))
    s = energy.score(pd.DataFrame([row]), t).iloc[0]
    assert s.latency_s == pytest.approx(2 * N / t.compute[0].peak_ops_per_s.value)


@pytest.mark.parametrize(("cpu", "expected"), [
    (HostCPU("AuthenticAMD", 26, 2), "cpu-zen5"),
    (HostCPU("AuthenticAMD", 25, 17), "cpu-zen4"),
    (HostCPU("GenuineIntel", 6, 85), "cpu-cascadelake"),
    (HostCPU("GenuineIntel", 6, 173), "cpu-graniterapids"),
    (HostCPU("GenuineIntel", 6, 143), "cpu-zen4"),  # no file describes it: the project's default
])
def test_cpu_names_the_file_describing_this_host(monkeypatch, cpu, expected):
    monkeypatch.setattr(host, "host_cpu", lambda: cpu)
    assert targets.resolve_name("cpu") == expected
    spec = load_target("cpu")
    assert (spec.name, spec.file) == ("cpu", expected)
    assert spec.describes_host == (expected != "cpu-zen4" or cpu.family == 25)


def test_a_core_table_lacking_a_work_class_is_named(tmp_path):
    data = tomllib.loads((targets.TARGETS_DIR / "cpu-zen4.toml").read_text())
    data["core"]["pipes"] = [p for p in data["core"]["pipes"] if p["work"] != "dot"]
    with pytest.raises(targets.TargetError, match=r"core.pipes lacks the work classes \['dot'\]"):
        parse_target(data, "x.toml")


@pytest.mark.parametrize("name", ["cpu-zen4", "cpu-zen5", "cpu-cascadelake", "cpu-graniterapids"])
def test_every_cpu_file_has_a_core_and_private_caches(name):
    t = load_target(name)
    assert t.core is not None and t.host is not None
    assert [lvl.name for lvl in t.memory if lvl.private] == ["l2", "l1"]
    core_figures = {k: f for k, f in t.figures().items() if k.startswith("core.")}
    required = ["core.call_overhead_s", "core.clock_hz", "core.emulated_cycles", "core.parallel_overhead_s",
                "core.special_cycles"]
    assert sorted(set(core_figures) - {"core.float8_widen_cycles"}) == required  # that one is optional
    assert all(f.source and f.low <= f.value <= f.high for f in core_figures.values())


def test_bf16_runs_at_fp32_lanes_with_two_conversions_each():
    # cpu-zen4: 16 bf16 adds are one 512-bit fp32 add (both 256-bit alu pipes, 1 cycle) + 2 conversions
    core = data_target("cpu-zen4").core
    assert latency.kernel_cycles(f"add:bfloat16:16:1:0={N}", core, threads=1).cycles == N / 16 * 3


def test_fp16_arithmetic_costs_the_emulated_cycles_per_element():
    t = data_target("cpu-zen4")
    k = latency.kernel_cycles(f"add:float16:16:2:0={N}", t.core, threads=2)
    assert k.emulated_elements == N / 2  # per thread
    q = latency.core_quantities([f"add:float16:16:2:0={N}"], t)
    seconds = latency.compute_seconds(q, energy.nominal_figures(t))
    assert seconds[0] == pytest.approx((k.cycles + N / 2 * t.core.emulated_cycles.value) / t.core.clock_hz.value)


def test_an_int8_mac_that_is_not_a_dot_product_runs_widened():
    # 16 lanes at 32 bits: one zmm multiply on the two 256-bit imul pipes (1 cycle), 3 alu instructions
    # of 2 slots each on 2 pipes (3 cycles)
    core = data_target("cpu-zen4").core
    assert latency.kernel_cycles(f"mac:int8:16:1:0={N}", core, threads=1).cycles == N / 16 * 3


def _with_convert_pipe(core, count: int = 1, width_bits: int = 256):
    return dataclasses.replace(core, pipes=(*core.pipes, Pipe("convert", count, width_bits, 4)))


def test_a_16_bit_float_widened_for_a_wmac_runs_on_the_convert_pipes_where_the_core_has_them():
    # 2N fp16 values widened at 8 lanes: 2N/8 instructions of one 256-bit slot on one pipe; the N
    # multiply-adds take N/8 instructions on the two FMA pipes (N/16 cycles), so the widening bounds it
    core = _with_convert_pipe(data_target("cpu-zen4").core)
    text = f"wmac:float16:8:1:0={N} widen:float16:8:1:0={2 * N}"
    assert latency.kernel_cycles(text, core, threads=1).cycles == 2 * N / 8
    assert latency.kernel_cycles(text.replace("float16", "bfloat16"), core, threads=1).cycles == 2 * N / 8


def test_a_widening_falls_back_to_the_alu_pipes_on_a_core_without_convert_pipes():
    core = data_target("cpu-zen4").core  # two 256-bit alu pipes, no convert pipes
    assert core.runs_on("convert") == "alu"
    assert latency.kernel_cycles(f"widen:float16:8:1:0={2 * N}", core, threads=1).cycles == 2 * N / 8 / 2


def test_a_cast_into_an_emulated_dtype_is_one_conversion_not_emulated_arithmetic():
    # fp16 is emulated on Zen 4: rounding N fp32 values into it is N/16 conversions of 16 32-bit lanes,
    # two 256-bit slots each on the one convert pipe
    core = _with_convert_pipe(data_target("cpu-zen4").core)
    k = latency.kernel_cycles(f"cast:float16:16:1:0={N}", core, threads=1)
    assert k.emulated_elements == 0 and k.cycles == N / 16 * 2


def test_an_integer_widening_stays_on_the_alu_pipes():
    core = _with_convert_pipe(data_target("cpu-zen4").core)
    assert latency.kernel_cycles(f"widen:int8:8:1:0={2 * N}", core, threads=1).cycles == 2 * N / 8 / 2


def test_a_float8_widening_costs_the_cores_float8_widen_cycles_a_vector():
    t = data_target("cpu-zen4")
    core = dataclasses.replace(t.core, float8_widen_cycles=Figure(2.5, 1.0, 5.0, "test"))
    k = latency.kernel_cycles(f"widen:float8_e4m3fn:16:1:0={N}", core, threads=1)
    assert k.float8_widened == N / 16 and k.cycles == 0
    q = latency.core_quantities([f"widen:float8_e4m3fn:16:1:0={N}"], dataclasses.replace(t, core=core))
    figures = {"core.clock_hz": 1.0, "core.special_cycles": 0.0, "core.emulated_cycles": 0.0, "core.float8_widen_cycles": 2.5}
    assert latency.compute_seconds(q, figures)[0] == N / 16 * 2.5


def test_the_load_store_level_has_no_bandwidth_time_of_its_own_under_the_core_model():
    t = data_target("cpu-zen4")
    s = _scored(t, access_bytes=1e12)  # a terabyte through the L1 would take seconds at its bandwidth
    assert s.latency_s < 1e-4 and s.bound != "l1"


def test_a_14_lane_load_is_three_accesses():
    core = data_target("cpu-zen5").core  # two 512-bit load pipes: 8 + 4 + 2 lanes are 3 loads
    assert latency.kernel_cycles(f"load:float32:14:1:0={14 * 64}", core, threads=1).cycles == 64 * 3 / 2


def test_intel_512_bit_fmas_and_vector_alu_work_take_turns_on_the_same_ports():
    # 16-lane fp32 FMAs and adds, N of each: Zen 4's adds run on pipes of their own (the FMAs set the
    # cycles); Granite Rapids issues both on ports 0 and 5, so their cycles add
    text = f"mac:float32:16:1:0={N} add:float32:16:1:0={N}"
    zen4, gnr = data_target("cpu-zen4").core, data_target("cpu-graniterapids").core
    assert latency.kernel_cycles(text, zen4, threads=1).cycles == N / 16 * 2 / 2  # 512-bit FMA on two 256-bit pipes
    assert latency.kernel_cycles(text, gnr, threads=1).cycles == N / 16 / 2 + N / 16 / 2


def test_a_special_function_costs_its_measured_multiple_of_exp():
    # cpu-graniterapids measured erf at 3.32 and sqrt at 0.08 times exp's cycles; exp itself counts once
    gnr = data_target("cpu-graniterapids").core
    assert latency.kernel_cycles(f"special-erf:float32:16:1:0={N}", gnr, threads=1).special_elements == N * 3.32
    assert latency.kernel_cycles(f"special-sqrt:float32:16:1:0={N}", gnr, threads=1).special_elements == N * 0.08
    assert latency.kernel_cycles(f"special-exp:float32:16:1:0={N}", gnr, threads=1).special_elements == N


def test_special_relative_must_map_functions_to_positive_numbers():
    data = tomllib.loads((targets.TARGETS_DIR / "cpu-graniterapids.toml").read_text())
    data["core"]["special_relative"] = {"erf": -1}
    with pytest.raises(targets.TargetError, match="core.special_relative must be a table"):
        parse_target(data, "x.toml")
