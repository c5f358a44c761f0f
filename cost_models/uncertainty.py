"""How far energy rankings hold when every figure may lie anywhere in its cited range.

Each figure of a target has a ``low``-``value``-``high`` range. A sample draws every figure
independently from a triangular distribution on those three points, on a log scale when
``low > 0`` (ranges span factors, e.g. 64-260 pJ per DRAM byte), so the cited value is the most
likely one and each end is reached with vanishing probability. All variants on a target are scored
under the *same* samples, so a comparison shares whatever the figures get wrong: the share of
samples in which variant A uses less energy than B says whether their ranking depends on figures
that nobody knows precisely.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from . import energy
from .spec import TargetSpec

#: Samples drawn per target unless a caller asks otherwise.
SAMPLES = 1000


def sample_figures(target: TargetSpec, samples: int = SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """``samples`` joint draws of every figure of ``target``, each an array of shape ``(samples, 1)``."""
    rng = np.random.default_rng(seed)
    out = {}
    for path, fig in sorted(target.figures().items()):
        if fig.high == fig.low:
            draw = np.full(samples, fig.value)
        elif fig.low > 0:
            draw = np.exp(rng.triangular(np.log(fig.low), np.log(fig.value), np.log(fig.high), samples))
        else:
            draw = rng.triangular(fig.low, fig.value, fig.high, samples)
        out[path] = draw[:, None]
    return out


def compare(workloads: dict[str, pd.DataFrame], target: TargetSpec, samples: int = SAMPLES,
            seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score several variants of one model on ``target`` under shared coefficient samples.

    Returns ``(spread, pairs)``: per variant the nominal energy and its 5th/50th/95th percentiles;
    per ordered pair (a, b) with a ranked below b nominally, the share of samples in which a uses
    less energy than b (1.0: the ranking holds for every plausible set of figures)."""
    figures = sample_figures(target, samples, seed)
    at_value = energy.nominal_figures(target)
    draws, nominal = {}, {}
    for name, wl in workloads.items():
        if not len(wl):
            draws[name], nominal[name] = np.full(samples, np.nan), np.nan
            continue
        q = energy.quantities(wl, target)  # once per variant, for the nominal and the sampled figures
        draws[name] = energy.evaluate(q, target, figures)["energy_j"].sum(axis=1)
        nominal[name] = float(energy.evaluate(q, target, at_value)["energy_j"].sum())
    spread = pd.DataFrame([{"variant": name, "energy_j": nominal[name],
                            "energy_p05_j": np.percentile(d, 5), "energy_p50_j": np.percentile(d, 50),
                            "energy_p95_j": np.percentile(d, 95)} for name, d in draws.items()])
    rows = []
    for a, b in itertools.combinations(sorted(draws, key=lambda n: nominal[n]), 2):
        rows.append({"lower": a, "higher": b, "nominal_ratio": nominal[b] / nominal[a],
                     "share_lower_wins": float(np.mean(draws[a] < draws[b]))})
    return spread, pd.DataFrame(rows, columns=["lower", "higher", "nominal_ratio", "share_lower_wins"])
