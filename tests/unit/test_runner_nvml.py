"""The measurement runner's NVML wrapper, against a stand-in ``pynvml`` with round-number answers."""

from __future__ import annotations

import sys
import types

import pytest

from explorer.measure.runner import nvml


class FakeNVMLError(Exception):
    pass


def _fake_pynvml(answers: dict) -> types.ModuleType:
    """A ``pynvml`` whose device queries return ``answers[name]``; a query it lacks raises NVMLError, as a
    driver that does not support it does."""
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"

    def query(name):
        def answer(*args):
            if name not in answers:
                raise FakeNVMLError(f"{name}: not supported")
            value = answers[name]
            return value(*args) if callable(value) else value
        return answer

    for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature",
                 "nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetName",
                 "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion_v2",
                 "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPerformanceState"):
        setattr(module, name, query(name))
    return module


@pytest.fixture
def fake(monkeypatch):
    def install(**answers):
        monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(answers))
        return nvml.NVML(0)
    return install


def test_the_energy_counter_reads_millijoules_as_joules(fake):
    assert fake(nvmlDeviceGetTotalEnergyConsumption=123_456).energy_j() == 123.456


def test_power_reads_milliwatts_as_watts(fake):
    assert fake(nvmlDeviceGetPowerUsage=350_000).power_w() == 350.0


def test_a_query_the_driver_does_not_answer_reads_as_none(fake):
    gpu = fake()
    assert gpu.power_w() is None and gpu.temperature_c() is None
    assert gpu.clocks_mhz() == {"sm": None, "mem": None}


def test_clocks_ask_for_the_sm_and_memory_domains(fake):
    gpu = fake(nvmlDeviceGetClockInfo=lambda handle, domain: {nvml.CLOCK_SM: 1980, nvml.CLOCK_MEM: 2619}[domain])
    assert gpu.clocks_mhz() == {"sm": 1980, "mem": 2619}


def test_info_decodes_names_and_writes_the_cuda_version_as_major_minor(fake):
    info = fake(nvmlDeviceGetName=b"NVIDIA H100 80GB HBM3", nvmlSystemGetDriverVersion="550.54.15",
                nvmlSystemGetCudaDriverVersion_v2=12040, nvmlDeviceGetEnforcedPowerLimit=700_000,
                nvmlDeviceGetPerformanceState=0).info()
    assert (info["name"], info["driver"], info["cuda_driver_version"]) == ("NVIDIA H100 80GB HBM3", "550.54.15", "12.4")
    assert (info["power_limit_w"], info["pstate"], info["temperature_c"]) == (700.0, 0, None)


def test_idle_power_is_the_energy_counter_over_the_window(fake, monkeypatch):
    counter_mj = iter([1_000_000, 1_060_000])  # 60 J over the window
    clock_s = iter([10.0, 12.0])  # a 2 s window
    gpu = fake(nvmlDeviceGetTotalEnergyConsumption=lambda handle: next(counter_mj))
    monkeypatch.setattr(nvml.time, "sleep", lambda s: None)
    monkeypatch.setattr(nvml.time, "perf_counter", lambda: next(clock_s))
    idle = nvml.idle_power(gpu, window_s=2.0, settle_s=1.0)
    assert (idle["power_w"], idle["window_s"], idle["energy_j"]) == (30.0, 2.0, 60.0)
