"""The latency model that reads the schedule: what the TIR walker finds, the cycles a core spends on
it, the ``cpu`` alias, and static power over measured time. Exact numbers by hand."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest
from tvm.script import tirx as T

from cost_models import energy, host, latency, targets
from cost_models.host import HostCPU
from cost_models.target_file import parse_target
from cost_models.targets import load_target
from cost_models.workload import ScheduleKey, format_schedule, parse_schedule
from explorer.scoring.rows import run_times
from explorer.tvm.tir import walker as tir_analysis

N = 4096  # elements per kernel below


@T.prim_func
def parallel_vector_fma(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32"), C: T.Buffer((N,), "float32")):
    # C = C * A + B over 2 parallel chunks of 128 vectors of 16 lanes
    for p in T.parallel(2):
        for i in range(N // 32):
            for v in T.vectorized(16):
                C[p * 2048 + i * 16 + v] = C[p * 2048 + i * 16 + v] + A[p * 2048 + i * 16 + v] * B[p * 2048 + i * 16 + v]


@T.prim_func
def scalar_dot(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32"), C: T.Buffer((1,), "float32")):
    # one accumulator: every multiply-add waits for the one before it
    for k in range(N):
        C[0] = C[0] + A[k] * B[k]


@T.prim_func
def gathered_copy(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32")):
    # a vectorized loop whose index is not contiguous along it: loaded lane by lane
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = A[(i * 16 + v) % 64 * 64 + (i * 16 + v) // 64]


def schedule_of(func) -> dict[ScheduleKey, float]:
    return dict(parse_schedule(format_schedule(tir_analysis.analyse_primfunc(func, "k").schedule)))


def test_walker_reads_parallel_extent_and_vector_lanes():
    s = schedule_of(parallel_vector_fma)
    assert s[ScheduleKey("mac", "float32", 16, 2, 0)] == N  # every C element is updated once: no chain
    assert s[ScheduleKey("load", "float32", 16, 2)] == 3 * N
    assert s[ScheduleKey("store", "float32", 16, 2)] == N


def test_walker_counts_one_chain_for_a_scalar_accumulator():
    assert schedule_of(scalar_dot)[ScheduleKey("mac", "float32", 1, 1, 1)] == N


@T.prim_func
def strided_copy(A: T.Buffer((2 * N,), "float32"), B: T.Buffer((N,), "float32")):
    # every other element: TVM's codegen loads and inserts it lane by lane
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = A[i * 32 + v * 2]


def test_walker_reads_a_stride_2_vector_access_as_a_gather():
    s = schedule_of(strided_copy)
    assert s[ScheduleKey("gather", "float32", 16, 1)] == N
    assert s[ScheduleKey("store", "float32", 16, 1)] == N  # contiguous


def test_walker_reads_a_non_contiguous_vector_access_as_a_gather():
    s = schedule_of(gathered_copy)
    assert s[ScheduleKey("gather", "float32", 16, 1)] == N


def test_a_gathered_lane_is_one_load_and_one_insert():
    # cpu-cascadelake: two load ports, one port-5 insert per cycle, so the inserts bound a gather
    core = load_target("cpu-cascadelake").core
    assert latency.kernel_cycles("gather:int8:16:1:0=1600", core, 1).cycles == 1600
    assert latency.kernel_cycles("gather:int8:16:2:0=1600", core, 2).cycles == 800  # over two cores


def test_parallel_2_vector_16_runs_at_the_rate_the_target_gives():
    # cpu-zen4: two 256-bit FMA pipes, so a 16-lane fp32 FMA takes both for one cycle; two cores
    core = load_target("cpu-zen4").core
    k = latency.kernel_cycles(f"mac:float32:16:2:0={N}", core, threads=2)
    assert k.cycles == N / 16 / 2  # one instruction per cycle per core, 2 cores
    assert k.parallel


def test_zen4_runs_8_and_16_fp32_lanes_at_the_same_rate():
    core = load_target("cpu-zen4").core
    eight = latency.kernel_cycles(f"mac:float32:8:1:0={N}", core, threads=1).cycles
    sixteen = latency.kernel_cycles(f"mac:float32:16:1:0={N}", core, threads=1).cycles
    assert eight == sixteen == N / 16


def test_zen5_runs_16_fp32_lanes_twice_as_fast_as_zen4():
    fast = latency.kernel_cycles(f"mac:float32:16:1:0={N}", load_target("cpu-zen5").core, threads=1).cycles
    assert fast == N / 32


def test_one_accumulator_runs_at_the_fma_latency():
    core = load_target("cpu-zen4").core
    assert latency.kernel_cycles(f"mac:float32:1:1:1={N}", core, threads=1).cycles == N * 4


def test_parallel_extent_3_keeps_2_threads_busy_for_two_rounds():
    assert latency.thread_share(3, 2) == 1.5
    assert latency.thread_share(1, 2) == 1.0
    assert latency.thread_share(64, 2) == 2.0


def test_front_end_bounds_many_cheap_instructions():
    # cpu-zen4 issues 6 per cycle: 12 one-lane ops of four classes are 2 cycles, more than any pipe's
    core = load_target("cpu-zen4").core
    text = "add:float32:1:1:0=4 cast:int32:1:1:0=2 load:float32:1:1:0=3 store:float32:1:1:0=1 mul:int32:1:1:0=2"
    assert latency.kernel_cycles(text, core, threads=1).cycles == max(6 / 2, 3 / 2, 1 / 1, 2 / 2, 12 / 6)


def _scored(target, **extra):
    row = dict(kernel="k", call_index=0, macs=float(N), flops=2.0 * N, read_bytes=0.0, write_bytes=0.0, weight_bytes=0.0,
               model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=0.0, shared_access_bytes=0.0,
               local_access_bytes=0.0, traffic_curve="0:0", unit_traffic_curve="0:0", op_mac_float32=float(N),
               schedule=f"mac:float32:16:2:0={N}")
    row.update(extra)
    return energy.score(pd.DataFrame([row]), target).iloc[0]


def test_kernel_latency_adds_the_call_and_fork_overheads():
    t = load_target("cpu-zen4")
    s = _scored(t)
    compute_s = N / 16 / 2 / t.core.clock_hz.value
    assert s.latency_s == pytest.approx(compute_s + t.core.call_overhead_s.value + t.core.parallel_overhead_s.value)
    assert s.latency_source == "modelled"


def test_static_power_is_charged_over_the_measured_time_where_there_is_one():
    t = load_target("cpu-zen4")
    s = _scored(t, run_time_s=1e-3)
    assert s.energy_static_j == pytest.approx(t.static_power_w.value * 1e-3)
    assert s.latency_s < 1e-4  # the modelled figure stays what it was
    assert s.latency_source == "measured"


def test_run_times_add_up_to_the_measured_inference():
    scored = pd.DataFrame({"latency_s": [1.0, 3.0]})
    assert list(run_times(scored, [2e-3, 6e-3], 1e-2)) == pytest.approx([2.5e-3, 7.5e-3])
    assert list(run_times(scored, [2e-3, float("nan")], 1e-2)) == pytest.approx([2.5e-3, 7.5e-3])  # by the model


def test_roofline_without_a_schedule_column():
    t = load_target("cpu-zen4")
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
    assert sorted(core_figures) == ["core.call_overhead_s", "core.clock_hz", "core.emulated_cycles", "core.parallel_overhead_s",
                                    "core.special_cycles"]
    assert all(f.source and f.low <= f.value <= f.high for f in core_figures.values())


def test_bf16_runs_at_fp32_lanes_with_two_conversions_each():
    # cpu-zen4: 16 bf16 adds are one 512-bit fp32 add (both 256-bit alu pipes, 1 cycle) + 2 conversions
    core = load_target("cpu-zen4").core
    assert latency.kernel_cycles(f"add:bfloat16:16:1:0={N}", core, threads=1).cycles == N / 16 * 3


def test_fp16_arithmetic_costs_the_emulated_cycles_per_element():
    t = load_target("cpu-zen4")
    k = latency.kernel_cycles(f"add:float16:16:2:0={N}", t.core, threads=2)
    assert k.emulated_elements == N / 2  # per thread
    q = latency.core_quantities([f"add:float16:16:2:0={N}"], t)
    seconds = latency.compute_seconds(q, energy.nominal_figures(t))
    assert seconds[0] == pytest.approx((k.cycles + N / 2 * t.core.emulated_cycles.value) / t.core.clock_hz.value)


def test_an_int8_mac_that_is_not_a_dot_product_runs_widened():
    # 16 lanes at 32 bits: one zmm multiply on the two 256-bit imul pipes (1 cycle), 3 alu instructions
    # of 2 slots each on 2 pipes (3 cycles)
    core = load_target("cpu-zen4").core
    assert latency.kernel_cycles(f"mac:int8:16:1:0={N}", core, threads=1).cycles == N / 16 * 3


def test_the_load_store_level_has_no_bandwidth_time_of_its_own_under_the_core_model():
    t = load_target("cpu-zen4")
    s = _scored(t, access_bytes=1e12)  # a terabyte through the L1 would take seconds at its bandwidth
    assert s.latency_s < 1e-4 and s.bound != "l1"


def test_a_14_lane_load_is_three_accesses():
    core = load_target("cpu-zen5").core  # two 512-bit load pipes: 8 + 4 + 2 lanes are 3 loads
    assert latency.kernel_cycles(f"load:float32:14:1:0={14 * 64}", core, threads=1).cycles == 64 * 3 / 2


@T.prim_func
def fp16_into_fp32(A: T.Buffer((N,), "float16"), B: T.Buffer((N,), "float16"), C: T.Buffer((16,), "float32")):
    for k in range(N // 16):
        for v in T.vectorized(16):
            C[v] = C[v] + T.Cast("float32", A[k * 16 + v]) * T.Cast("float32", B[k * 16 + v])


def test_a_multiply_add_into_a_wider_accumulator_is_a_wmac_and_its_operands_are_widened_by_casts():
    s = schedule_of(fp16_into_fp32)
    assert s[ScheduleKey("wmac", "float16", 16, 1, 1)] == N
    assert s[ScheduleKey("cast", "float32", 16, 1)] == 2 * N  # both operands, every element
    k = latency.kernel_cycles(f"wmac:float16:16:1:0={N} cast:float32:16:1:0={2 * N}", load_target("cpu-zen4").core,
                              threads=1)
    # not emulated; the 2 conversions per fp32 FMA's worth of lanes on the alu pipes (2 slots each) bound it
    assert k.emulated_elements == 0 and k.cycles == N / 16 * 2


@T.prim_func
def fp16_tile(A: T.Buffer((4 * 64,), "float16"), B: T.Buffer((64 * 16,), "float16"), C: T.Buffer((4 * 16,), "float32")):
    # a register tile of 4 rows x 16 lanes: B[k, v] is loaded, and widened, once for the 4 rows
    for k in range(64):
        for i in range(4):
            for v in T.vectorized(16):
                C[i * 16 + v] = C[i * 16 + v] + T.Cast("float32", A[i * 64 + k]) * T.Cast("float32", B[k * 16 + v])


def test_a_register_tile_widens_an_operand_once_for_the_rows_that_share_it():
    s = schedule_of(fp16_tile)
    # A: one broadcast per (row, k), 16 lanes each; B: one vector per k for all 4 rows
    assert s[ScheduleKey("cast", "float32", 16, 1)] == 4 * 64 * 16 + 64 * 16


@T.prim_func
def dequantized_tile(A: T.Buffer((4 * 64,), "float32"), Q: T.Buffer((64 * 16,), "int8"), S: T.Buffer((16,), "float32"),
                     C: T.Buffer((4 * 16,), "float32")):
    # a weight dequantized in the matmul: its cast and multiply do not depend on the tile's row
    for k in range(64):
        for i in range(4):
            for v in T.vectorized(16):
                C[i * 16 + v] = C[i * 16 + v] + A[i * 64 + k] * (T.Cast("float32", Q[k * 16 + v]) * S[v])


def test_an_operand_dequantized_in_a_register_tile_is_computed_once_for_its_rows():
    ops = tir_analysis.analyse_primfunc(dequantized_tile, "k").ops
    assert ops[("mac", "float32")] == 4 * 64 * 16
    assert ops[("cast", "float32")] == ops[("mul", "float32")] == 64 * 16  # not 4 x 64 x 16


@T.prim_func
def broadcast_weight(A: T.Buffer((64 * 14,), "float32"), W: T.Buffer((64,), "float32"), C: T.Buffer((14,), "float32")):
    # C[v] += A[k, v] * W[k]: W[k] is one element for all 14 lanes
    for k in range(64):
        for v in T.vectorized(14):
            C[v] = C[v] + A[k * 14 + v] * W[k]


def test_a_load_invariant_along_the_vector_is_one_broadcast():
    s = schedule_of(broadcast_weight)
    assert s[ScheduleKey("broadcast", "float32", 14, 1)] == 64 * 14
    core = load_target("cpu-zen5").core
    both = latency.kernel_cycles(f"broadcast:float32:14:1:0={64 * 14} load:float32:14:1:0={64 * 14}", core, 1)
    assert both.cycles == (64 + 64 * 3) / 2  # one load per broadcast, three per 14-lane vector (8 + 4 + 2)


@T.prim_func
def transposed_tile(C: T.Buffer((8 * 32,), "float32")):
    # a 32 x 8 register tile written row by row and read across its rows (stride 32 along the vector)
    acc = T.alloc_buffer((8 * 32,), "float32")
    for i in range(8):
        for v in T.vectorized(32):
            acc[i * 32 + v] = T.float32(1)
    for j in range(32):
        for v in T.vectorized(8):
            C[j * 8 + v] = acc[v * 32 + j]


def test_a_register_tile_read_across_its_rows_is_assembled_lane_by_lane():
    s = schedule_of(transposed_tile)
    assert s[ScheduleKey("gather", "float32", 8, 1)] == 256  # the tile's loads, one per element
    assert ScheduleKey("scatter", "float32", 32, 1) not in s  # its contiguous writes stay in registers


@T.prim_func
def strided_tile(A: T.Buffer((2 * 64 * 16,), "float32"), W: T.Buffer((8 * 64,), "float32"),
                 C: T.Buffer((8 * 16,), "float32")):
    # an 8-accumulator tile (output channels) over a 16-lane row read with stride 2 (a stride-2 conv)
    for k in range(64):
        for c in T.unroll(8):
            for v in T.vectorized(16):
                C[c * 16 + v] = C[c * 16 + v] + A[k * 32 + v * 2] * W[c * 64 + k]


def test_a_gather_the_tile_shares_is_assembled_once_per_tile():
    s = schedule_of(strided_tile)
    assert s[ScheduleKey("mac", "float32", 16, 1, 8)] == 64 * 8 * 16
    assert s[ScheduleKey("gather", "float32", 16, 1)] == 64 * 16  # the same input row for all 8 channels
    assert s[ScheduleKey("broadcast", "float32", 16, 1)] == 64 * 8 * 16  # one weight per channel


def test_intel_512_bit_fmas_and_vector_alu_work_take_turns_on_the_same_ports():
    # 16-lane fp32 FMAs and adds, N of each: Zen 4's adds run on pipes of their own (the FMAs set the
    # cycles); Granite Rapids issues both on ports 0 and 5, so their cycles add
    text = f"mac:float32:16:1:0={N} add:float32:16:1:0={N}"
    zen4, gnr = load_target("cpu-zen4").core, load_target("cpu-graniterapids").core
    assert latency.kernel_cycles(text, zen4, threads=1).cycles == N / 16 * 2 / 2  # 512-bit FMA on two 256-bit pipes
    assert latency.kernel_cycles(text, gnr, threads=1).cycles == N / 16 / 2 + N / 16 / 2


@T.prim_func
def vector_erf(A: T.Buffer((N,), "float32"), B: T.Buffer((N,), "float32")):
    for i in range(N // 16):
        for v in T.vectorized(16):
            B[i * 16 + v] = T.erf(A[i * 16 + v])


def test_the_walker_names_each_special_function():
    assert schedule_of(vector_erf)[ScheduleKey("special-erf", "float32", 16, 1)] == N


def test_a_special_function_costs_its_measured_multiple_of_exp():
    # cpu-graniterapids measured erf at 3.32 and sqrt at 0.08 times exp's cycles; exp itself counts once
    gnr = load_target("cpu-graniterapids").core
    assert latency.kernel_cycles(f"special-erf:float32:16:1:0={N}", gnr, threads=1).special_elements == N * 3.32
    assert latency.kernel_cycles(f"special-sqrt:float32:16:1:0={N}", gnr, threads=1).special_elements == N * 0.08
    assert latency.kernel_cycles(f"special-exp:float32:16:1:0={N}", gnr, threads=1).special_elements == N


def test_special_relative_must_map_functions_to_positive_numbers():
    data = tomllib.loads((targets.TARGETS_DIR / "cpu-graniterapids.toml").read_text())
    data["core"]["special_relative"] = {"erf": -1}
    with pytest.raises(targets.TargetError, match="core.special_relative must be a table"):
        parse_target(data, "x.toml")
