"""Choosing the best variant under latency and accuracy limits, on hand-made rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from explorer.core.errors import ExplorerError
from explorer.deploy.best import Limits, choose, rank_candidates


def variants(*rows) -> pd.DataFrame:
    """Variant rows of model m on target cpu: (strategy, precision, energy_j, latency_s, accuracy_loss_pct)."""
    return pd.DataFrame([{"model": "m", "target": "cpu", "strategy": s, "precision": p, "energy_j": e,
                          "latency_s": lat, "measured_latency_s": math.nan, "accuracy_loss_pct": acc,
                          "status": "ok", "status_kind": "ok"} for s, p, e, lat, acc in rows])


CANDIDATES = variants(("fused", "fp32", 2e-3, 5e-3, 0.0), ("fused-int8", "int8", 1e-3, 6e-3, 0.5),
                      ("lossy-int8", "int8", 0.5e-3, 3e-3, 3.0))


def test_energy_picks_the_least_energy_within_the_default_accuracy_limit():
    assert choose(CANDIDATES, "m", "cpu", "energy")["strategy"] == "fused-int8"  # lossy-int8 is 3% off


def test_a_looser_accuracy_limit_admits_the_lossier_build():
    assert choose(CANDIDATES, "m", "cpu", "energy", Limits(max_accuracy_loss_pct=5))["strategy"] == "lossy-int8"


def test_the_latency_limit_excludes_slower_builds():
    assert choose(CANDIDATES, "m", "cpu", "energy", Limits(max_latency_s=5.5e-3))["strategy"] == "fused"


def test_latency_and_edp_objectives():
    assert choose(CANDIDATES, "m", "cpu", "latency")["strategy"] == "fused"  # 5 ms; lossy-int8 is not eligible
    # edp: fused 2e-3 x 5e-3 = 1.0e-5, fused-int8 1e-3 x 6e-3 = 6e-6
    assert choose(CANDIDATES, "m", "cpu", "edp")["strategy"] == "fused-int8"


def test_measured_latency_is_used_where_there_is_one():
    v = CANDIDATES.copy()
    v.loc[v.strategy == "fused", "measured_latency_s"] = 9e-3
    ranked = rank_candidates(v, "m", "cpu", "latency", Limits())
    assert ranked.iloc[0]["strategy"] == "fused-int8"
    assert ranked.set_index("strategy").loc["fused", "latency_used_s"] == 9e-3


def test_a_reduced_precision_without_measured_accuracy_is_never_chosen():
    v = variants(("fused", "fp32", 2e-3, 5e-3, math.nan), ("fused-int8", "int8", 1e-3, 6e-3, math.nan))
    assert choose(v, "m", "cpu", "energy")["strategy"] == "fused"


def test_no_eligible_variant_names_the_closest_miss():
    # the fastest usable variant, with every limit it misses
    with pytest.raises(ExplorerError, match=r"closest: lossy-int8 \(accuracy loss 3% over the limit of 1%; "
                                            r"latency 3 ms over the limit of 1 ms\)$"):
        choose(CANDIDATES, "m", "cpu", "energy", Limits(max_latency_s=1e-3))


# --- end to end --------------------------------------------------------------------------------

