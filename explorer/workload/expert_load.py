"""A measured expert load, read from a file: how often a mixture's router picks each expert.

Uniform routing (each token picks k of E experts with equal chance) is what the traffic model assumes
without one. A serving engine's expert-load statistics (tokens routed to each expert over a trace, per
layer) give the real, skewed picture: fewer distinct experts a decode step, so fewer weight bytes.

The file is text: one line per MoE layer (or one line for all of them), each the E experts' loads as
non-negative numbers separated by commas or spaces (token counts or shares: each line is normalized);
``#`` starts a comment. A line's loads become, per expert, the chance that one token picks it
(``k x share``), which cannot exceed 1: a token runs an expert at most once.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from explorer.core.errors import ExplorerError
from explorer.workload.reuse import RowLoad


def parse_expert_load(text: str, experts: int, experts_per_token: int, layers: int, source: str = "") -> RowLoad:
    """The :class:`RowLoad` of a mixture of ``experts`` experts, ``experts_per_token`` a token, over
    ``layers`` layers, from the file's ``text`` (see the module docstring); ``source`` names it in
    errors and in the rows."""
    name = source or "the expert load"
    picks = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[,\s]+", line) if f]
        try:
            loads = [float(f) for f in fields]
        except ValueError:
            raise ExplorerError(f"{name}, line {number}: expected {experts} numbers, got {line[:60]!r}") from None
        if len(loads) != experts:
            raise ExplorerError(f"{name}, line {number}: {len(loads)} loads for a mixture of {experts} experts")
        if any(not math.isfinite(v) or v < 0 for v in loads) or sum(loads) <= 0:
            raise ExplorerError(f"{name}, line {number}: loads must be finite, non-negative and not all zero")
        total = sum(loads)
        layer = tuple(experts_per_token * v / total for v in loads)
        busiest = max(range(experts), key=lambda e: layer[e])
        if layer[busiest] > 1.0 + 1e-9:
            raise ExplorerError(f"{name}, line {number}: expert {busiest} takes {loads[busiest] / total:.1%} of the "
                                f"load, more than 1/{experts_per_token}: a token runs an expert at most once")
        picks.append(tuple(min(q, 1.0) for q in layer))
    if len(picks) not in (1, layers):
        raise ExplorerError(f"{name}: {len(picks)} lines of loads; give one for all layers or one for each of {layers}")
    return RowLoad(tuple(picks), source)


def read_expert_load(path: str | Path, experts: int, experts_per_token: int, layers: int) -> RowLoad:
    """:func:`parse_expert_load` of the file at ``path`` (one clear error if it cannot be read)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ExplorerError(f"cannot read the expert load {p}: {getattr(err, 'strerror', None) or err}") from None
    return parse_expert_load(text, experts, experts_per_token, layers, p.name)
