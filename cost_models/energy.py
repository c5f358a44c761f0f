"""Energy of a workload on a target: compute + memory traffic + static power (pure numpy/pandas).

For each kernel call (one workload row):

- **compute**: every counted operation times the target's energy for that operation kind in that
  dtype (``TargetSpec.unit_for`` picks the compute unit; a kind the unit does not list is charged as
  an ``add`` there, the cheapest ALU operation every unit has);
- **DRAM traffic**: the kernel's input and output tensors, each moved once (``read_bytes`` +
  ``write_bytes``), plus twice its scratch buffers when they do not fit the largest on-chip level;
- **on-chip traffic**: every load and store the loop nest performs, charged at the level the target
  says serves that kind of access (``serves`` in the target file: global arguments and scratch,
  GPU shared memory, registers/local buffers);
- **latency**: a roofline, the largest of compute time at the dtype's peak rate, DRAM time and
  on-chip time; ``bound`` names which. **Static** energy is static power times that latency.

The model uses DRAM and one on-chip level: reuse inside on-chip levels is not modelled here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .targets import TargetSpec
from .workload import check_workload, op_columns

PJ = 1e-12

ENERGY_COLUMNS = ("energy_j", "energy_compute_j", "energy_memory_j", "energy_dram_j", "energy_onchip_j",
                  "energy_static_j", "latency_s")


def _op_energy_pj(target: TargetSpec, kind: str, dtype: str) -> float:
    unit = target.unit_for(dtype)
    for name in (kind, "add", "mac"):
        try:
            return unit.energy_of(name).value
        except KeyError:
            continue
    raise AssertionError("every compute unit has a mac energy")  # enforced by the target loader


def score(workload: pd.DataFrame, target: TargetSpec) -> pd.DataFrame:
    """Per-kernel energy (J), its breakdown, roofline latency (s) and bound, appended to ``workload``."""
    check_workload(workload)
    df = workload.copy()
    n = len(df)
    compute_pj = np.zeros(n)
    compute_s = np.zeros(n)
    for col, kind, dtype in op_columns(df):
        counts = df[col].fillna(0.0).to_numpy(dtype=float)
        compute_pj += counts * _op_energy_pj(target, kind, dtype)
        if kind != "cast":
            ops = counts * (2.0 if kind == "mac" else 1.0)
            compute_s += ops / target.unit_for(dtype).peak_ops_per_s.value

    dram, onchip_levels = target.memory[0], target.memory[1:]
    largest_onchip = max(lvl.capacity_bytes for lvl in onchip_levels)

    scratch = df["scratch_bytes"].to_numpy(float) if "scratch_bytes" in df else np.zeros(n)
    spills = scratch > largest_onchip
    dram_bytes = df["read_bytes"].to_numpy(float) + df["write_bytes"].to_numpy(float) + 2 * scratch * spills
    dram_pj = dram_bytes * dram.energy_pj_per_byte.value
    dram_s = dram_bytes / dram.bandwidth_bytes_per_s.value

    # each kind of on-chip access is charged at the level the target says serves it
    level_bytes: dict[str, np.ndarray] = {}
    for access, column in (("global", "access_bytes"), ("shared", "shared_access_bytes"),
                           ("local", "local_access_bytes")):
        level = target.level_for(access)
        level_bytes[level.name] = level_bytes.get(level.name, np.zeros(n)) + df[column].to_numpy(float)
    levels = {lvl.name: lvl for lvl in onchip_levels}
    onchip_pj = sum(b * levels[name].energy_pj_per_byte.value for name, b in level_bytes.items())
    onchip_s = np.max([b / levels[name].bandwidth_bytes_per_s.value for name, b in level_bytes.items()], axis=0)
    onchip_total = sum(level_bytes.values())

    times = np.stack([compute_s, dram_s, onchip_s])
    latency = times.max(axis=0)
    bound = np.array(["compute", dram.name, "on-chip"])[times.argmax(axis=0)]

    df["dram_bytes"] = dram_bytes
    df["onchip_bytes"] = onchip_total
    df["energy_compute_j"] = compute_pj * PJ
    df["energy_dram_j"] = dram_pj * PJ
    df["energy_onchip_j"] = onchip_pj * PJ
    df["energy_memory_j"] = (dram_pj + onchip_pj) * PJ
    df["latency_s"] = latency
    df["energy_static_j"] = target.static_power_w.value * latency
    df["energy_j"] = df["energy_compute_j"] + df["energy_memory_j"] + df["energy_static_j"]
    df["bound"] = bound
    return df


def totals(scored: pd.DataFrame) -> dict[str, float]:
    """Whole-variant sums of a scored workload (kernels run one after another)."""
    out = {c: float(scored[c].sum()) for c in ENERGY_COLUMNS}
    for c in ("flops", "macs", "dram_bytes", "onchip_bytes", "read_bytes", "write_bytes", "weight_bytes"):
        out[c] = float(scored[c].sum())
    out["kernels"] = int(len(scored))
    by_bound = scored.groupby("bound")["latency_s"].sum()
    out["bound"] = str(by_bound.idxmax()) if len(by_bound) else ""
    return out
