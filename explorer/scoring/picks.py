"""Choosing among measured tuning candidates by latency, energy or EDP (pure pandas; no TVM here).

MetaSchedule measures candidates per kernel (:mod:`explorer.tvm.tuning`); each candidate's lowered
TIR gives a workload row. :func:`choose` scores them all on the target being built: dynamic energy
from the workload, static energy as the target's static power over the candidate's *measured*
latency. Per kernel it keeps:

- ``latency``: the fastest measured candidate (MetaSchedule's own choice);
- ``energy``: the candidate with the least energy;
- ``edp``: the least energy x measured latency.

The choice runs once in the worker (to pick what to build) and again in the parent on every run,
from the cached candidates, for the tables (energies are never cached).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from cost_models import energy
from cost_models.spec import TargetSpec

#: Per kernel, which candidate each pick keeps.
PICKS = ("latency", "energy", "edp")


def break_even_static_w(latency_s: list[float], dynamic_j: list[float]) -> float:
    """The static power (W) below which some slower candidate, saving more dynamic energy than the
    static power costs over its extra time, beats the fastest candidate on energy; NaN when no slower
    candidate has less dynamic energy (the fastest is the energy-best at any static power)."""
    fast = min(range(len(latency_s)), key=latency_s.__getitem__)
    return max(((dynamic_j[fast] - d) / (t - latency_s[fast]) for t, d in zip(latency_s, dynamic_j)
                if t > latency_s[fast] and d < dynamic_j[fast]), default=float("nan"))


@dataclasses.dataclass
class Choice:
    """Every scored candidate and, per kernel, the one each pick keeps."""

    picked: dict[str, dict[str, int]]  # kernel -> {pick: candidate index}
    table: pd.DataFrame                # one row per kernel: the latency-, energy- and EDP-best candidates
    candidates: pd.DataFrame           # one row per scored candidate


#: Columns of a candidates table besides the workload's (whose ``kernel`` names the tuned kernel).
CANDIDATE_COLUMNS = ("kernel", "candidate", "measured_latency_s", "analysed")


def choose(candidates: pd.DataFrame, target: TargetSpec) -> Choice:
    """Score ``candidates`` (one row per measured candidate: ``kernel``, ``candidate``,
    ``measured_latency_s``, ``analysed`` and, where analysed, the workload columns) on ``target``.

    A kernel none of whose candidates could be analysed keeps its fastest for every pick and gets
    no table row. ``switch_static_w`` in the per-kernel table is the static power below which a
    slower candidate with less dynamic energy would be the energy-best (NaN when no slower candidate
    has less): above it, racing to idle wins."""
    static_w = target.static_power_w.value
    rows, scored_frames, picked = [], [], {}
    for kernel, group in candidates.groupby("kernel", sort=False):
        group = group.sort_values("candidate", kind="stable")
        ok = group[group["analysed"].astype(bool)]
        if not len(ok):
            fastest = int(group.loc[group["measured_latency_s"].idxmin(), "candidate"])
            picked[kernel] = {p: fastest for p in PICKS}
            continue
        workload = ok.drop(columns=["candidate", "measured_latency_s", "analysed"]).dropna(axis=1, how="all")
        s = energy.score(workload.reset_index(drop=True), target)
        latency = ok["measured_latency_s"].to_numpy(float)
        dynamic = (s["energy_compute_j"] + s["energy_memory_j"]).to_numpy(float)
        c = pd.DataFrame({"kernel": kernel, "candidate": ok["candidate"].to_numpy(int), "measured_latency_s": latency,
                          "dynamic_energy_j": dynamic, "static_energy_j": static_w * latency,
                          "energy_j": dynamic + static_w * latency, "dram_bytes": s["dram_bytes"].to_numpy(float)})
        best = {"latency": int(c["measured_latency_s"].idxmin()), "energy": int(c["energy_j"].idxmin()),
                "edp": int((c["measured_latency_s"] * c["energy_j"]).idxmin())}
        picked[kernel] = {p: int(c.loc[i, "candidate"]) for p, i in best.items()}
        for p, i in best.items():
            c[f"{p}_best"] = c.index == i
        scored_frames.append(c)
        rows.append({"kernel": kernel, "candidates": len(c),
                     **{f"{p}_best_s": float(c.loc[best[p], "measured_latency_s"]) for p in PICKS},
                     **{f"{p}_best_energy_j": float(c.loc[best[p], "energy_j"]) for p in PICKS},
                     **{f"{p}_best_dram_bytes": float(c.loc[best[p], "dram_bytes"]) for p in PICKS},
                     "differ": best["energy"] != best["latency"],
                     "switch_static_w": break_even_static_w(list(latency), list(dynamic)), "static_w": static_w})
    scored = pd.concat(scored_frames, ignore_index=True) if scored_frames else pd.DataFrame()
    return Choice(picked, pd.DataFrame(rows), scored)
