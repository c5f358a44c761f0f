"""How well predictions agree with measurements: rank correlation and ratios, with missing values left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def spearman(a, b) -> float:
    """Spearman's rank correlation of the pairs where both are finite (ties share their average rank);
    NaN with fewer than 3 such pairs or where either side has no spread."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def ratio(measured, predicted) -> pd.Series:
    """``measured / predicted`` element by element, NaN where either is missing or the prediction is not positive."""
    m, p = pd.to_numeric(measured, errors="coerce"), pd.to_numeric(predicted, errors="coerce")
    return m / p.where(p > 0)
