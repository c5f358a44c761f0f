"""The shipped hardware targets load, are cited, and a malformed target is rejected by name."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from cost_models.spec import OP_KINDS
from cost_models.target_file import TargetError
from cost_models.targets import TARGETS_DIR, list_targets, load_target, resolve_name
from cost_models.workload import dtype_bytes

SHIPPED = ["b200", "cpu", "cpu-cascadelake", "cpu-graniterapids", "cpu-zen4", "cpu-zen5", "gpu", "h200", "mi300x", "npu",
           "phone-npu", "tpu"]
#: The targets that describe a whole device with a power limit (the CPU files describe a 2-core slice).
DEVICES = ["b200", "gpu", "h200", "mi300x", "npu", "phone-npu", "tpu"]


def _toml_value(value) -> str:
    """A TOML literal for ``value`` (inline tables and arrays, on one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _write_target(tmp_path: Path, data: dict, name: str = "broken") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text("".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in data.items()))
    return path


def _raw(name: str) -> dict:
    return tomllib.loads((TARGETS_DIR / f"{resolve_name(name)}.toml").read_text())


def _gemm(dtype: str, n: int = 8192) -> dict:
    """One n x n x n GEMM in ``dtype`` as a tiled kernel moves it: each operand and the fp32 result once
    through DRAM, operand tiles re-read on chip once per 128 multiply-adds, an eighth of an operand per
    multiply-add through registers."""
    b = dtype_bytes(dtype)
    return dict(kernel="gemm", call_index=0, macs=float(n ** 3), tensorized_macs=float(n ** 3), flops=2.0 * n ** 3,
                read_bytes=2 * n * n * b, write_bytes=4 * n * n, weight_bytes=n * n * b, model_input_bytes=0.0,
                scratch_bytes=0.0, access_bytes=n ** 3 * 2 * b / 128, shared_access_bytes=n ** 3 * 2 * b / 128,
                local_access_bytes=n ** 3 * b / 8, traffic_curve=f"0:{int((2 * b + 4) * n * n)}",
                unit_traffic_curve=f"0:{int((2 * b + 4) * n * n)}", **{f"op_mac_{dtype}": float(n ** 3)})


def _copy(nbytes: int = 1 << 30) -> dict:
    return dict(kernel="copy", call_index=0, macs=0.0, flops=0.0, read_bytes=nbytes, write_bytes=nbytes, weight_bytes=0.0,
                model_input_bytes=0.0, scratch_bytes=0.0, access_bytes=2.0 * nbytes, shared_access_bytes=0.0,
                local_access_bytes=0.0, traffic_curve=f"0:{2 * nbytes}", unit_traffic_curve=f"0:{2 * nbytes}")


def _modelled_power_w(row: dict, spec) -> float:
    import pandas as pd

    from cost_models import energy

    scored = energy.score(pd.DataFrame([row]), spec).iloc[0]
    return scored.energy_j / scored.latency_s


def test_list_targets():
    assert list_targets() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_target_loads(name):
    spec = load_target(name)
    assert spec.name == name
    assert spec.description
    assert spec.compute and len(spec.memory) >= 2
    assert Path(spec.path).name == f"{resolve_name(name)}.toml" == f"{spec.file}.toml"


def test_compile_settings():
    cpu, gpu, npu = (load_target(n) for n in ("cpu", "gpu", "npu"))
    assert (cpu.tvm, cpu.runs_here, cpu.builds) == ("llvm", True, True)
    assert (gpu.tvm, gpu.arch, gpu.runs_here, gpu.builds) == ("cuda", "sm_90", False, True)
    assert (npu.tvm, npu.runs_here, npu.builds) == ("none", False, False)


def test_dtypes():
    assert set(load_target("cpu-zen4").dtypes) == {"float32", "bfloat16", "int8", "int32"}  # no native fp16
    assert set(load_target("cpu-cascadelake").dtypes) == {"float32", "int8", "int32"}  # no AVX512-BF16 either
    assert set(load_target("gpu").dtypes) == {"float32", "float16", "bfloat16", "int8", "int32", "float8_e4m3fn"}
    assert set(load_target("npu").dtypes) == {"int8", "bfloat16", "float32", "int32"}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_figure_is_cited_and_ranged(name):
    figures = load_target(name).figures()
    assert figures
    for key, fig in figures.items():
        assert fig.source.strip(), key
        assert fig.note.strip(), key
        assert all(math.isfinite(x) for x in (fig.low, fig.value, fig.high)), key
        assert 0 < fig.low <= fig.value <= fig.high, key


@pytest.mark.parametrize("name", SHIPPED)
def test_every_figure_has_all_five_fields_in_the_file(name):
    """The loader lets low/high default to value; the shipped files state them explicitly."""
    data = _raw(name)
    tables = [("static_power_w", data["static_power_w"])]
    for i, unit in enumerate(data["compute"]):
        tables.append((f"compute[{i}].peak_ops_per_s", unit["peak_ops_per_s"]))
        tables += [(f"compute[{i}].energy_pj.{k}", v) for k, v in unit["energy_pj"].items()]
    for i, level in enumerate(data["memory"]):
        tables.append((f"memory[{i}].bandwidth_bytes_per_s", level["bandwidth_bytes_per_s"]))
        tables.append((f"memory[{i}].energy_pj_per_byte", level["energy_pj_per_byte"]))
    for where, fig in tables:
        assert set(fig) == {"value", "low", "high", "source", "note"}, where


@pytest.mark.parametrize("name", SHIPPED)
def test_every_unit_prices_every_op_kind(name):
    for unit in load_target(name).compute:
        assert {kind for kind, _ in unit.energy_pj} == set(OP_KINDS), unit.dtype


@pytest.mark.parametrize("name", SHIPPED)
def test_dram_byte_costs_10_to_1000_cheapest_macs(name):
    spec = load_target(name)
    # of byte-wide or wider operands: a DRAM byte carries two int4 weights, each multiply-add of which is cheaper
    cheapest_mac = min(unit.energy_of("mac").value for unit in spec.compute if dtype_bytes(unit.dtype) >= 1)
    dram = spec.memory[0]
    assert dram.capacity_bytes == max(level.capacity_bytes for level in spec.memory)
    ratio = dram.energy_pj_per_byte.value / cheapest_mac
    assert 10 <= ratio <= 1000, (name, ratio)


@pytest.mark.parametrize("name", SHIPPED)
def test_memory_energy_grows_outwards(name):
    levels = load_target(name).memory
    energies = [level.energy_pj_per_byte.value for level in levels]
    assert energies == sorted(energies, reverse=True), energies


@pytest.mark.parametrize("name", SHIPPED)
def test_peak_rate_times_mac_energy_is_a_plausible_power(name):
    """Peak rate (2 ops per mac) x mac energy stays below 1 kW: catches unit slips (ops vs macs, pJ vs nJ)."""
    spec = load_target(name)
    for unit in spec.compute:
        watts = unit.peak_ops_per_s.value / 2 * unit.energy_of("mac").value * 1e-12
        assert watts < 1000, (unit.dtype, watts)


def test_gpu_whole_device_figures():
    gpu = load_target("gpu")
    assert gpu.unit_for("bfloat16").peak_ops_per_s.value == pytest.approx(989.4e12)
    # HBM at what a tuned streaming kernel achieves (FlashMLA's 3 TB/s), the datasheet's 3.35 TB/s its high end
    assert gpu.memory[0].bandwidth_bytes_per_s.value == pytest.approx(3.0e12)
    assert gpu.memory[0].bandwidth_bytes_per_s.high == pytest.approx(3.35e12)
    # No tensor MAC may cost more than the whole 700 W board spread over the peak MAC rate.
    for dtype in ("float16", "bfloat16", "int8"):
        unit = gpu.unit_for(dtype)
        bound = 700.0 / (unit.peak_ops_per_s.value / 2) * 1e12
        assert unit.energy_of("mac").high <= bound * 1.01, dtype


def test_each_nvidia_target_says_what_a_kernel_launch_in_a_cuda_graph_costs():
    for name in ("gpu", "h200", "b200"):
        launch = load_target(name).kernel_launch_s
        assert launch.value == 1.35e-6 and launch.low <= launch.value <= launch.high, name
    assert load_target("cpu").kernel_launch_s is None  # a CPU's calls are its [core]'s


def test_unlisted_dtype_falls_back_to_costliest_unit():
    assert load_target("cpu-zen4").unit_for("float16").dtype == "int32"
    assert load_target("gpu").unit_for("float64").dtype == "float32"
    assert load_target("npu").unit_for("float16").dtype == "float32"


def test_copy_of_shipped_target_loads_from_path(tmp_path):
    path = _write_target(tmp_path, _raw("gpu"), name="copy")
    assert load_target(path) == load_target("gpu")


def test_missing_source_is_named(tmp_path):
    data = _raw("cpu-zen4")
    del data["compute"][0]["energy_pj"]["mac"]["source"]
    with pytest.raises(TargetError, match=r"broken\.toml\.compute\[0\]\.energy_pj\.mac\.source"):
        load_target(_write_target(tmp_path, data))


def test_missing_static_power_source_is_named(tmp_path):
    data = _raw("npu")
    del data["static_power_w"]["source"]
    with pytest.raises(TargetError, match=r"static_power_w\.source"):
        load_target(_write_target(tmp_path, data))


def test_empty_source_is_rejected(tmp_path):
    data = _raw("gpu")
    data["memory"][1]["bandwidth_bytes_per_s"]["source"] = "   "
    with pytest.raises(TargetError, match=r"memory\[1\]\.bandwidth_bytes_per_s\.source is empty"):
        load_target(_write_target(tmp_path, data))


def test_missing_memory_energy_is_named(tmp_path):
    data = _raw("gpu")
    del data["memory"][0]["energy_pj_per_byte"]
    with pytest.raises(TargetError, match=r"memory\[0\]\.energy_pj_per_byte"):
        load_target(_write_target(tmp_path, data))


def test_bad_compile_tvm_is_named(tmp_path):
    data = _raw("cpu-zen4")
    data["compile"]["tvm"] = "vulkan"
    with pytest.raises(TargetError, match=r"compile\.tvm") as err:
        load_target(_write_target(tmp_path, data))
    assert "vulkan" in str(err.value)


def test_range_outside_value_is_rejected(tmp_path):
    data = _raw("npu")
    data["compute"][0]["energy_pj"]["mac"]["low"] = 10.0
    with pytest.raises(TargetError, match=r"compute\[0\]\.energy_pj\.mac"):
        load_target(_write_target(tmp_path, data))


def test_unknown_op_kind_is_rejected(tmp_path):
    data = _raw("cpu-zen4")
    data["compute"][0]["energy_pj"]["fma"] = dict(data["compute"][0]["energy_pj"]["mac"])
    with pytest.raises(TargetError, match=r"unknown operation kinds \['fma'\]"):
        load_target(_write_target(tmp_path, data))


def test_memory_out_of_order_is_rejected(tmp_path):
    data = _raw("cpu-zen4")
    data["memory"].reverse()
    with pytest.raises(TargetError, match=r"outermost"):
        load_target(_write_target(tmp_path, data))


def test_invalid_toml_is_rejected(tmp_path):
    path = tmp_path / "garbled.toml"
    path.write_text("name = \n")
    with pytest.raises(TargetError, match=r"garbled\.toml: not valid TOML"):
        load_target(path)


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match=r"unknown target 'abacus'") as err:
        load_target("abacus")
    assert ", ".join(SHIPPED) in str(err.value)


def test_missing_target_file(tmp_path):
    with pytest.raises(TargetError, match=r"does not exist"):
        load_target(tmp_path / "absent.toml")


def test_figure_without_range_is_rejected(tmp_path):
    from tests.conftest import TOY_TARGET

    text = open(TOY_TARGET).read().replace("low = 100.0, high = 100.0, ", "", 1)
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(TargetError, match=r"memory\[0\].energy_pj_per_byte.low is missing"):
        load_target(tmp_path / "t.toml")


def test_unknown_access_kind_in_serves_is_rejected(tmp_path):
    from tests.conftest import TOY_TARGET

    text = open(TOY_TARGET).read().replace('name = "sram"', 'name = "sram"\nserves = ["texture"]')
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(TargetError, match=r"memory\[1\].serves has unknown access kinds \['texture'\]"):
        load_target(tmp_path / "t.toml")


def test_global_accesses_are_charged_where_the_target_says():
    gpu = load_target("gpu")
    assert gpu.level_for("global").name == "shared"
    assert gpu.level_for("local").name == "registers"
    assert load_target("npu").level_for("global").name == "scratchpad"


@pytest.mark.parametrize("name", DEVICES)
def test_a_gemm_at_peak_and_a_copy_at_peak_bandwidth_stay_under_the_device_power_limit(name):
    spec = load_target(name)
    limit = spec.power_limit_w.value
    for unit in spec.compute:
        assert _modelled_power_w(_gemm(unit.dtype), spec) <= 1.01 * limit, unit.dtype
    assert _modelled_power_w(_copy(), spec) <= limit


@pytest.mark.parametrize(("name", "dtype"), [("gpu", "float32"), ("tpu", "bfloat16")])
def test_a_gemm_at_peak_draws_near_the_published_full_load_power(name, dtype):
    spec = load_target(name)
    measured = spec.full_load_power_w.value
    assert 0.7 * measured <= _modelled_power_w(_gemm(dtype), spec) <= 1.15 * measured
