"""The GPU's energy counter and facts through NVML, with nvidia-ml-py's ``pynvml`` (the bundle carries it).

Every query but the energy counter may be missing on a driver or board: those read as ``None``.
"""

from __future__ import annotations

import time

#: NVML's clock domains and temperature sensor (``nvmlClockType_t``, ``nvmlTemperatureSensors_t``).
CLOCK_SM, CLOCK_MEM, TEMPERATURE_GPU = 1, 2, 0


class NVML:
    """One GPU's NVML handle: its total-energy counter, power, clocks and what it is."""

    def __init__(self, index: int = 0):
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def _query(self, fn: str, *args):
        """``pynvml.<fn>(*args)``, or None where this driver or board does not answer it."""
        try:
            return getattr(self.nvml, fn)(*args)
        except (self.nvml.NVMLError, AttributeError):
            return None

    def energy_j(self) -> float:
        """The board's total energy since the driver loaded, in joules (a millijoule counter)."""
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3

    def power_w(self) -> float | None:
        """The board's power now, in watts."""
        mw = self._query("nvmlDeviceGetPowerUsage", self.handle)
        return None if mw is None else mw / 1e3

    def temperature_c(self) -> int | None:
        """The GPU's temperature in degrees Celsius."""
        return self._query("nvmlDeviceGetTemperature", self.handle, TEMPERATURE_GPU)

    def clocks_mhz(self, query: str = "nvmlDeviceGetClockInfo") -> dict:
        """SM and memory clocks in MHz: current (what a window ran at), or through another clock query."""
        return {"sm": self._query(query, self.handle, CLOCK_SM), "mem": self._query(query, self.handle, CLOCK_MEM)}

    def info(self) -> dict:
        """The GPU, its driver, clocks, power limit, temperature and performance state."""
        name, driver = self._query("nvmlDeviceGetName", self.handle), self._query("nvmlSystemGetDriverVersion")
        cuda = self._query("nvmlSystemGetCudaDriverVersion_v2")
        limit = self._query("nvmlDeviceGetEnforcedPowerLimit", self.handle)
        return {
            "name": name.decode(errors="replace") if isinstance(name, bytes) else name,
            "driver": driver.decode(errors="replace") if isinstance(driver, bytes) else driver,
            "cuda_driver_version": None if cuda is None else f"{cuda // 1000}.{cuda % 1000 // 10}",
            "clocks_mhz": self.clocks_mhz(),
            "max_clocks_mhz": self.clocks_mhz("nvmlDeviceGetMaxClockInfo"),
            "application_clocks_mhz": self.clocks_mhz("nvmlDeviceGetApplicationsClock"),
            "power_limit_w": None if limit is None else limit / 1e3,
            "temperature_c": self.temperature_c(),
            "pstate": self._query("nvmlDeviceGetPerformanceState", self.handle),
        }


def idle_power(nvml: NVML, window_s: float, settle_s: float) -> dict:
    """Board power with the GPU idle, from the energy counter over ``window_s`` (after ``settle_s``)."""
    time.sleep(settle_s)
    e0, t0 = nvml.energy_j(), time.perf_counter()
    time.sleep(window_s)
    e1, t1 = nvml.energy_j(), time.perf_counter()
    return {"power_w": (e1 - e0) / (t1 - t0), "window_s": t1 - t0, "energy_j": e1 - e0, "at": time.time(),
            "temperature_c": nvml.temperature_c(), "clocks_mhz": nvml.clocks_mhz()}
