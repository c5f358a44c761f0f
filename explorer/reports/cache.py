"""``explorer cache``'s text: the cache per folder, and what a prune removed."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd

from explorer.core.units import fmt_bytes
from explorer.reports.markdown import markdown_table
from explorer.store.eviction import PRUNABLE, Entry, Pruned


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def cache_info_text(root: Path, listed: list[Entry], cap_bytes: int) -> str:
    """Per evictable folder: entries, bytes, oldest and newest use; the total against the cap."""
    rows = []
    for folder in PRUNABLE:
        mine = [e for e in listed if e.folder == folder]
        if mine:
            rows.append({"folder": folder, "entries": len(mine), "size": fmt_bytes(sum(e.size_bytes for e in mine)),
                         "oldest use": _when(min(e.last_use for e in mine)),
                         "newest use": _when(max(e.last_use for e in mine))})
    total = sum(e.size_bytes for e in listed)
    cap = f"its cap {fmt_bytes(cap_bytes)}" if cap_bytes > 0 else "no cap"
    head = f"cache {root}: {fmt_bytes(total)} in {len(listed)} entries, {cap} (tuning records are never evicted)"
    return head + ("\n\n" + markdown_table(pd.DataFrame(rows)) if rows else "")


def pruned_text(done: Pruned) -> str:
    """One line: what a prune removed, what is left, and what a running sweep kept."""
    held = f"; {done.held} entries kept: a running sweep uses them" if done.held else ""
    return (f"removed {len(done.removed)} entries ({fmt_bytes(done.removed_bytes)}); "
            f"{fmt_bytes(done.kept_bytes)} left{held}")
