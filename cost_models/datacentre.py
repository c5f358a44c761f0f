"""What serving a compiled variant costs a data centre per day: energy at the wall, water, CO2 and money.

The figures are cited data (``datacentre.toml`` beside this module, in the targets' figure convention:
value, low, high, source, note); a user replaces any value. The arithmetic, per day, for N requests of
E_req joules and t_req device-seconds each on hardware whose idle power is P_idle and which is busy a
share U of the time it is powered:

    E_IT   = N E_req + P_idle T_idle,  T_idle = N t_req (1 - U) / U
    E_wall = E_IT x PUE
    water  = WUE x E_IT (on site) + electricity water x E_wall (off site, where the power is generated)
    CO2    = E_wall x grid intensity;  cost = E_wall x price
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from .spec import Figure
from .target_file import TargetError, parse_figure

DATACENTRE_FILE = Path(__file__).resolve().parent / "datacentre.toml"
J_PER_KWH = 3.6e6
S_PER_DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class DataCentre:
    """The figures a day's projection uses, each with its source."""

    pue: Figure
    wue_l_per_kwh: Figure
    electricity_water_l_per_kwh: Figure
    grid_g_co2_per_kwh: Figure
    usd_per_kwh: Figure
    utilization: Figure

    def figures(self) -> dict[str, Figure]:
        """Every figure by name, in the order of the fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def load_datacentre(path: str | Path = DATACENTRE_FILE, **overrides: float | None) -> DataCentre:
    """The cited figures of ``path``, with each non-None override (by field name) as the value a user
    gave (its source then says so)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise TargetError(f"{path.name}: cannot be read as TOML: {err}") from None
    figures = {}
    for field in dataclasses.fields(DataCentre):
        given = overrides.get(field.name)
        figures[field.name] = (parse_figure(data, field.name, path.name) if given is None
                               else Figure(float(given), float(given), float(given), "given on the command line"))
    if not 0 < figures["utilization"].value <= 1:
        raise TargetError(f"utilization must be in (0, 1], got {figures['utilization'].value:g}")
    if figures["pue"].value < 1:
        raise TargetError(f"a PUE below 1 is impossible (facility energy includes the IT energy), got {figures['pue'].value:g}")
    for name in ("wue_l_per_kwh", "electricity_water_l_per_kwh", "grid_g_co2_per_kwh", "usd_per_kwh"):
        if figures[name].value < 0:
            raise TargetError(f"{name} must not be negative, got {figures[name].value:g}")
    return DataCentre(**figures)


@dataclasses.dataclass(frozen=True)
class Day:
    """One variant's day of serving: device time, energy at the IT equipment and the wall, water, CO2, cost."""

    busy_device_s: float
    devices: float          # devices powered around the clock to serve the day at the utilization
    it_kwh: float
    wall_kwh: float
    water_onsite_l: float
    water_offsite_l: float
    co2_kg: float
    usd: float

    @property
    def water_l(self) -> float:
        return self.water_onsite_l + self.water_offsite_l


def project_day(requests_per_day: float, energy_per_request_j: float, device_s_per_request: float,
                idle_power_w: float, dc: DataCentre) -> Day:
    """A day of ``requests_per_day`` requests of ``energy_per_request_j`` joules and
    ``device_s_per_request`` seconds of a device each, on hardware idling at ``idle_power_w`` (see the
    module doc for the formulas)."""
    u = dc.utilization.value
    busy_s = requests_per_day * device_s_per_request
    idle_s = busy_s * (1 - u) / u
    it_kwh = (requests_per_day * energy_per_request_j + idle_power_w * idle_s) / J_PER_KWH
    wall_kwh = it_kwh * dc.pue.value
    return Day(busy_device_s=busy_s, devices=(busy_s + idle_s) / S_PER_DAY, it_kwh=it_kwh, wall_kwh=wall_kwh,
               water_onsite_l=dc.wue_l_per_kwh.value * it_kwh,
               water_offsite_l=dc.electricity_water_l_per_kwh.value * wall_kwh,
               co2_kg=wall_kwh * dc.grid_g_co2_per_kwh.value / 1000, usd=wall_kwh * dc.usd_per_kwh.value)
