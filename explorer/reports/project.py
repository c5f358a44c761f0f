"""``explorer project RUN``: what serving each variant of a sweep costs a data centre per day.

A request is one inference of a model (one sample of its batch); for a decoder swept in phases it is
one prompt's prefill plus ``tokens_per_request`` decode steps (each at the context the sweep's decode
phase has), paired by strategy, target and batch. Its energy and device time come from the sweep's
rows (the time static power was charged over: measured where the variant ran on its own hardware),
and the hardware's idle power is the static power the row was charged (its static energy over that
time). :mod:`cost_models.datacentre` turns them into a day: kWh at the IT equipment and the wall,
litres of water, kg of CO2 and dollars.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd

from cost_models.datacentre import DataCentre, load_datacentre, project_day
from cost_models.target_file import TargetError
from explorer.core.errors import ExplorerError
from explorer.reports.compare import read_run
from explorer.reports.markdown import markdown_table

#: Status kinds whose rows carry modelled energy.
SCORED_KINDS = ("ok", "analysed", "built-not-run", "codegen-failed", "emulated")
_PHASE = re.compile(r"@(prefill|decode)\d+")
COLUMNS = ["model", "strategy", "target", "batch", "request", "energy_per_request_j", "device_s_per_request",
           "devices", "it_kwh_per_day", "wall_kwh_per_day", "water_l_per_day", "co2_kg_per_day", "usd_per_day"]


@dataclasses.dataclass
class Projection:
    """A sweep's variants projected over a day of serving: one row per variant (or per decoder request)."""

    table: pd.DataFrame
    datacentre: DataCentre
    requests_per_day: float
    tokens_per_request: int | None


@dataclasses.dataclass(frozen=True)
class _Request:
    energy_j: float
    device_s: float
    idle_power_w: float
    label: str


def _charged_s(row: pd.Series) -> float:
    measured = row.get("measured_latency_s")
    return float(measured) if row.get("latency_source") == "measured" and pd.notna(measured) else float(row["latency_s"])


def _idle_power_w(row: pd.Series) -> float:
    charged = _charged_s(row)
    return float(row["energy_static_j"]) / charged if charged > 0 and pd.notna(row.get("energy_static_j")) else 0.0


def _one_inference(row: pd.Series) -> _Request:
    batch = max(int(row.get("batch") or 1), 1)
    return _Request(float(row["energy_j"]) / batch, _charged_s(row) / batch, _idle_power_w(row), "1 inference")


def _decoder_request(prefill: pd.Series | None, decode: pd.Series | None, tokens: int) -> _Request:
    energy = seconds = 0.0
    parts = []
    for row, steps in ((prefill, 1), (decode, tokens)):
        if row is None:
            continue
        batch = max(int(row.get("batch") or 1), 1)
        energy += steps * float(row["energy_j"]) / batch
        seconds += steps * _charged_s(row) / batch
        parts.append(row["phase"] if steps == 1 else f"{steps} x {row['phase']}")
    label = " + ".join(parts) + ("" if prefill is not None else " (prompt not swept: not counted)")
    return _Request(energy, seconds, _idle_power_w(decode if decode is not None else prefill), label)


def _requests(variants: pd.DataFrame, tokens: int | None) -> list[tuple[dict, _Request]]:
    scored = variants[variants["status_kind"].isin(SCORED_KINDS) & variants["energy_j"].notna()]
    out = []
    phased = scored["phase"].notna() if "phase" in scored else pd.Series(False, scored.index)
    for _, row in scored[~phased].iterrows():
        out.append(({"model": row["model"], "strategy": row["strategy"], "target": row["target"],
                     "batch": int(row.get("batch") or 1)}, _one_inference(row)))
    if not phased.any():
        return out
    if not tokens:
        raise ExplorerError("this sweep has decoder phases: give --tokens-per-request T (the tokens a request "
                            "generates after its prompt)")
    decoders = scored[phased].assign(base=lambda d: d["model"].str.replace(_PHASE, "", regex=True),
                                     kind=lambda d: d["phase"].str.split(":").str[0])
    for (base, strategy, target, batch), group in decoders.groupby(["base", "strategy", "target", "batch"], sort=False):
        by_kind = {k: g.iloc[0] for k, g in group.groupby("kind")}
        out.append(({"model": base, "strategy": strategy, "target": target, "batch": int(batch)},
                    _decoder_request(by_kind.get("prefill"), by_kind.get("decode"), tokens)))
    return out


def project(run: str | Path, requests_per_day: float, tokens_per_request: int | None = None,
            **overrides: float | None) -> Projection:
    """Each variant of the sweep in ``run`` (its ``--out``) serving ``requests_per_day`` requests a day;
    ``overrides`` replace the data-centre figures by name (``pue``, ``wue_l_per_kwh``,
    ``electricity_water_l_per_kwh``, ``grid_g_co2_per_kwh``, ``usd_per_kwh``, ``utilization``)."""
    if not requests_per_day > 0:
        raise ExplorerError(f"--requests-per-day must be positive, got {requests_per_day:g}")
    if tokens_per_request is not None and tokens_per_request < 1:
        raise ExplorerError(f"--tokens-per-request must be at least 1, got {tokens_per_request}")
    try:
        dc = load_datacentre(**overrides)
    except TargetError as err:
        raise ExplorerError(str(err)) from None
    variants, _ = read_run(run)
    rows = []
    for identity, req in _requests(variants, tokens_per_request):
        day = project_day(requests_per_day, req.energy_j, req.device_s, req.idle_power_w, dc)
        rows.append({**identity, "request": req.label, "energy_per_request_j": req.energy_j,
                     "device_s_per_request": req.device_s, "devices": day.devices, "it_kwh_per_day": day.it_kwh,
                     "wall_kwh_per_day": day.wall_kwh, "water_l_per_day": day.water_l, "co2_kg_per_day": day.co2_kg,
                     "usd_per_day": day.usd})
    if not rows:
        raise ExplorerError(f"{run} has no scored variant to project")
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values(["model", "wall_kwh_per_day"], kind="stable")
    return Projection(table.reset_index(drop=True), dc, requests_per_day, tokens_per_request)


def assumptions_lines(p: Projection) -> list[str]:
    """One line per data-centre figure: its value and where it comes from."""
    units = {"pue": "", "wue_l_per_kwh": " L/kWh of IT energy", "electricity_water_l_per_kwh": " L/kWh generated",
             "grid_g_co2_per_kwh": " g CO2/kWh", "usd_per_kwh": " USD/kWh", "utilization": " of the powered time"}
    return [f"- {name} = {fig.value:g}{units[name]} (range {fig.low:g}-{fig.high:g}): {fig.source}"
            for name, fig in p.datacentre.figures().items()]


def projection_text(p: Projection) -> str:
    """The projection as the terminal shows it: the assumptions with their sources, then the table."""
    per = f"{p.requests_per_day:,.0f} requests a day" + (f", {p.tokens_per_request} tokens each" if p.tokens_per_request else "")
    shown = p.table.assign(**{c: p.table[c].map(lambda x: f"{x:.4g}") for c in COLUMNS[5:]})
    return "\n".join([f"Serving {per}:", *assumptions_lines(p), "", shown.to_string(index=False)])


def projection_markdown(p: Projection) -> str:
    """The report section (``project.md``)."""
    per = f"{p.requests_per_day:,.0f} requests a day" + (f", {p.tokens_per_request} tokens each" if p.tokens_per_request else "")
    shown = pd.DataFrame([[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r]
                          for r in p.table[COLUMNS].itertuples(index=False)], columns=COLUMNS)
    return "\n".join([f"# A day of serving: {per}", "", "Assumptions (override any with the command's flags):", "",
                      *assumptions_lines(p), "", "Energy per request and device time are the sweep's modelled figures "
                      "(measured time where the variant ran on its own hardware); idle power is the static power each "
                      "row was charged.", "", markdown_table(shown), ""])


def projection_json(p: Projection) -> str:
    """The projection as one JSON object: the assumptions with their sources, and the rows."""
    return json.dumps({"requests_per_day": p.requests_per_day, "tokens_per_request": p.tokens_per_request,
                       "assumptions": {k: dataclasses.asdict(f) for k, f in p.datacentre.figures().items()},
                       "rows": p.table.to_dict(orient="records")}, indent=1)
