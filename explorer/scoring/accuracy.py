"""How far a variant's outputs are from the fp32 reference (pure numpy).

The zoo's weights are seeded random numbers and no labelled data is reachable, so accuracy is
measured against the reference outputs themselves (onnxruntime, fp32) on the same inputs:

- ``max_abs_error``: the largest absolute difference over every output element;
- ``sqnr_db``: signal-to-quantization-noise ratio, ``10 log10(sum(ref^2) / sum((out - ref)^2))``
  over all outputs (``inf`` when they are identical);
- ``accuracy_loss_pct``: the relative error ``100 * ||out - ref|| / ||ref||`` (the quantity
  ``--max-accuracy-loss`` limits; 1% is an SQNR of 40 dB);
- ``argmax_agreement``: the share of output rows (the last axis, e.g. the classes of one image)
  whose arg-max matches the reference's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: The accuracy loss (percent relative L2 error; 1% is an SQNR of 40 dB) within which ``explorer best``
#: chooses a build and reports rank targets, unless a user sets another.
DEFAULT_MAX_ACCURACY_LOSS_PCT = 1.0


def within_accuracy(variants: pd.DataFrame, limit_pct: float = DEFAULT_MAX_ACCURACY_LOSS_PCT) -> pd.Series:
    """Which rows' builds are not known to lose more than ``limit_pct``: a strategy's accuracy is the
    model's under that strategy wherever it ran (analysis-only targets compile the same weights), and
    a row whose strategy never ran is kept."""
    if "accuracy_loss_pct" not in variants:
        return pd.Series(True, index=variants.index)
    worst = variants.groupby(["model", "strategy"])["accuracy_loss_pct"].transform("max")
    return ~(worst > limit_pct)


def accuracy_metrics(outputs: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float]:
    """Accuracy of ``outputs`` against ``reference`` (same order); a shape mismatch is total loss."""
    if len(outputs) != len(reference) or any(o.shape != r.shape for o, r in zip(outputs, reference)):
        return {"max_abs_error": math.inf, "sqnr_db": -math.inf, "accuracy_loss_pct": math.inf,
                "argmax_agreement": 0.0}
    signal = noise = 0.0
    max_abs = 0.0
    agree = rows = 0
    for out, ref in zip(outputs, reference):
        o, r = out.astype(np.float64), ref.astype(np.float64)
        if not r.size:
            continue
        diff = o - r
        max_abs = max(max_abs, float(np.max(np.abs(diff))))
        signal += float(np.sum(r * r))
        noise += float(np.sum(diff * diff))
        if r.ndim and r.shape[-1] > 1:
            agree += int(np.sum(np.argmax(o, axis=-1) == np.argmax(r, axis=-1)))
            rows += int(r.size // r.shape[-1])
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    loss = 0.0 if noise == 0 else (100 * math.sqrt(noise / signal) if signal > 0 else math.inf)
    return {"max_abs_error": max_abs, "sqnr_db": sqnr, "accuracy_loss_pct": loss,
            "argmax_agreement": agree / rows if rows else math.nan}
