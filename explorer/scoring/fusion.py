"""Fusion savings: per fused kernel, the intermediate tensors that no longer go through memory.

Compares a fused strategy with its unfused counterpart on one target. For each fused kernel call,
the operator kernels it absorbed are matched to their calls in the unfused variant (in order), and
the saving at each memory level is the unfused calls' traffic there minus the fused call's; the
energy column is the whole modelled energy difference (compute, memory and static). Where the
intermediates fit in a cache, fusion saves little DRAM traffic but much traffic in the caches.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from explorer.core.errors import UnknownName
from explorer.core.strategies import Strategy, list_strategies


def unfused_counterpart(strategy: Strategy) -> Strategy:
    """The registered strategy equal to ``strategy`` except for ``fusion='none'``."""
    want = dataclasses.replace(strategy, name="", fusion="none")
    for s in list_strategies():
        if dataclasses.replace(s, name="") == want:
            return s
    raise UnknownName(f"no registered unfused counterpart of {strategy.name!r}")


def level_columns(kernels: pd.DataFrame, target: str) -> list[str]:
    """The per-level traffic columns (``dram_bytes``, then each on-chip level) of ``target``."""
    from cost_models.targets import load_target

    spec = load_target(target)
    return ["dram_bytes"] + [f"{lvl.name}_bytes" for lvl in spec.memory[1:] if f"{lvl.name}_bytes" in kernels]


def fusion_table(kernels: pd.DataFrame, fused: str, unfused: str, levels: tuple[str, ...] = ("dram_bytes",)) -> pd.DataFrame:
    """One row per fused kernel call (a call that absorbed more than one operator), with the
    traffic saved at each memory level in ``levels`` (column names of ``kernels``)."""
    f = kernels[kernels["strategy"] == fused].sort_values("call_index")
    u = kernels[kernels["strategy"] == unfused].sort_values("call_index")
    queue = {}
    for _, r in u.iterrows():
        queue.setdefault(r["kernel"], []).append(r)
    rows = []
    for _, r in f.iterrows():
        ops = str(r["ops"]).split(" + ")
        matched = [queue[op].pop(0) for op in ops if queue.get(op)]
        if len(ops) < 2:
            continue
        before_bytes = sum(m["dram_bytes"] for m in matched)
        before_j = sum(m["energy_j"] for m in matched)
        saved = {f"{col[:-len('_bytes')]}_bytes_saved": sum(m[col] for m in matched) - r[col] for col in levels}
        rows.append({
            "kernel": r["kernel"],
            "ops": len(ops),
            "eliminated_tensors": len(str(r["eliminated"]).split()) if isinstance(r["eliminated"], str) and r["eliminated"] else 0,
            "eliminated_bytes": r["eliminated_bytes"],
            "dram_bytes_unfused": before_bytes,
            "dram_bytes_fused": r["dram_bytes"],
            **saved,
            "energy_unfused_j": before_j,
            "energy_fused_j": r["energy_j"],
            "energy_saved_j": before_j - r["energy_j"],
            "matched": len(matched) == len(ops),
        })
    return pd.DataFrame(rows)
