"""What a calibration finds: the fitted figures (:class:`Fit`) and the calibration as a whole
(:class:`Calibration`). :mod:`explorer.measure.fit` makes them; :mod:`explorer.measure.target_file` writes
one as a target file."""

from __future__ import annotations

import dataclasses

import pandas as pd

from cost_models.spec import TargetSpec


@dataclasses.dataclass
class Fit:
    """A fitted set of figures."""

    values: dict[str, float]      # every energy figure: fitted, or cited where not fitted
    fitted: list[str]             # the figures the fit moved
    stderr_range: dict[str, float]  # per fitted figure: its standard error as a share of its range, for
                                    # measurements 1% off (above ~0.3 the cited value decides it)


@dataclasses.dataclass
class Calibration:
    """A calibration: the figures, every variant's error before and after, and where it was measured."""

    target: TargetSpec
    figures: pd.DataFrame    # path, cited, low, high, fitted, moved (%), stderr_range, fitted_here
    variants: pd.DataFrame   # id, model, strategy, micro, measured_j, cited_j, cited_measured_time_j, lomo_j,
                             # fitted_j and their errors in percent
    summary: dict
    provenance: dict
    fit: Fit
