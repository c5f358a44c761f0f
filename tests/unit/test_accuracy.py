"""Accuracy of an output against fp32, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.scoring.accuracy import accuracy_metrics


def test_accuracy_metrics_by_hand():
    ref = [np.array([[3.0, 4.0, 0.0]])]
    m = accuracy_metrics([np.array([[3.0, 4.0, 0.5]])], ref)
    assert m["max_abs_error"] == 0.5
    assert m["accuracy_loss_pct"] == pytest.approx(100 * 0.5 / 5.0)
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(25 / 0.25))
    assert m["argmax_agreement"] == 1.0
    assert accuracy_metrics([np.array([[3.0, 5.0, 0.0]])], [np.array([[3.5, 1.0, 0.0]])])["argmax_agreement"] == 0.0


