"""Choosing the build to deploy: the best variant of a model on one target under latency and accuracy
limits (``explorer best``).

The candidates are a sweep's variants of the model on the target, scored now (the sweep's store or
the cache holds their lowerings; nothing is compiled twice). A variant is eligible when it has
numbers and no problem status, when its latency (measured where it ran here, else modelled) is
within ``max_latency_s``, and, for a reduced precision, when its measured relative output error
against the fp32 reference (``accuracy_loss_pct``, see :mod:`explorer.scoring.accuracy`) is within
``max_accuracy_loss_pct``: a reduced-precision build whose accuracy was not measured is never chosen.
Among the eligible ones the objective decides: least energy, least latency, or least energy x latency.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from explorer.core.errors import ExplorerError
from explorer.scoring.accuracy import DEFAULT_MAX_ACCURACY_LOSS_PCT
from explorer.scoring.rows import PROBLEM_KINDS

#: What ``--objective`` minimises.
OBJECTIVES = ("energy", "latency", "edp")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a chosen build must meet."""

    max_latency_s: float | None = None
    max_accuracy_loss_pct: float = DEFAULT_MAX_ACCURACY_LOSS_PCT


def _ineligible_because(row: pd.Series, limits: Limits, latency_s: float) -> str:
    """Why a variant cannot be chosen (every reason, joined by '; '), or '' if it can."""
    if row["status_kind"] in PROBLEM_KINDS or pd.isna(row["energy_j"]):
        return f"no usable numbers ({row['status']})"
    reasons = []
    if row["precision"] != "fp32":
        loss = row["accuracy_loss_pct"]
        if pd.isna(loss):
            reasons.append("accuracy against fp32 not measured (it did not run here)")
        elif loss > limits.max_accuracy_loss_pct:
            reasons.append(f"accuracy loss {loss:.3g}% over the limit of {limits.max_accuracy_loss_pct:g}%")
    if limits.max_latency_s is not None and latency_s > limits.max_latency_s:
        reasons.append(f"latency {latency_s * 1e3:.3g} ms over the limit of {limits.max_latency_s * 1e3:g} ms")
    return "; ".join(reasons)


def rank_candidates(variants: pd.DataFrame, model: str, target: str, objective: str, limits: Limits) -> pd.DataFrame:
    """The variants of ``model`` on ``target``, eligible ones first in order of ``objective``, with
    ``latency_used_s`` (measured where measured, else modelled), ``objective_value`` and
    ``ineligible_because`` ('' for eligible ones)."""
    if objective not in OBJECTIVES:
        raise ExplorerError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    rows = variants[(variants["model"] == model) & (variants["target"] == target)].copy()
    if rows.empty:
        raise ExplorerError(f"no variants of {model} on {target} to choose from")
    measured = pd.to_numeric(rows["measured_latency_s"], errors="coerce")
    rows["latency_used_s"] = measured.where(measured.notna(), pd.to_numeric(rows["latency_s"], errors="coerce"))
    energy = pd.to_numeric(rows["energy_j"], errors="coerce")
    rows["objective_value"] = {"energy": energy, "latency": rows["latency_used_s"],
                               "edp": energy * rows["latency_used_s"]}[objective]
    rows["ineligible_because"] = [_ineligible_because(r, limits, r["latency_used_s"]) for _, r in rows.iterrows()]
    rows["eligible"] = rows["ineligible_because"] == ""
    return rows.sort_values(["eligible", "objective_value"], ascending=[False, True], na_position="last")


def choose(variants: pd.DataFrame, model: str, target: str, objective: str = "energy",
           limits: Limits = Limits()) -> pd.Series:
    """The best eligible variant (see :func:`rank_candidates`); :class:`ExplorerError` naming the
    closest miss when none is eligible."""
    ranked = rank_candidates(variants, model, target, objective, limits)
    best = ranked.iloc[0]
    if not best["eligible"]:
        usable = ranked[~ranked["ineligible_because"].str.startswith("no usable")]
        near = usable.sort_values("latency_used_s").iloc[0] if len(usable) else best
        raise ExplorerError(f"no variant of {model} on {target} meets the limits; closest: {near['strategy']} "
                            f"({near['ineligible_because']})")
    return best


def strategies_in_run(run: Path, model: str, target: str) -> list[str]:
    """The strategies a sweep's ``--out`` directory ``run`` holds for ``model`` on ``target``."""
    table = run / "variants.csv"
    if not table.is_file() or not (run / "results.sqlite").is_file():
        raise ExplorerError(f"{run} is not a sweep's --out directory (no variants.csv and results.sqlite)")
    variants = pd.read_csv(table)
    names = variants.loc[(variants["model"] == model) & (variants["target"] == target), "strategy"].tolist()
    if not names:
        raise ExplorerError(f"{run} has no variants of {model} on {target} "
                            f"(it has {', '.join(sorted(set(variants['model'])))} on {', '.join(sorted(set(variants['target'])))})")
    return list(dict.fromkeys(names))


def objective_text(objective: str, value: float) -> str:
    """The objective's value for a person: joules, milliseconds or joule-seconds."""
    if not math.isfinite(value):
        return "n/a"
    return {"energy": f"{value * 1e3:.4g} mJ", "latency": f"{value * 1e3:.4g} ms", "edp": f"{value * 1e6:.4g} mJ*ms"}[objective]
