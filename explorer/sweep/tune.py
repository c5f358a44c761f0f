"""``explorer tune``: fill a model's MetaSchedule records on this CPU, without building."""

from __future__ import annotations

import os

from explorer.core.errors import ExplorerError
from explorer.core.strategies import Strategy, get_strategy
from explorer.model.int8_calibration import calibrate
from explorer.model.prepare import prepare


def tune_model(model: str, strategy: str | Strategy = "fused-tuned", trials: int | None = None,
               records: str | os.PathLike | None = None, input_shapes: dict | None = None, progress: bool = True,
               input_values: dict[str, float] | None = None, calibration: str | os.PathLike | None = None,
               space: str | None = None):
    """Fill the tuning-records database for ``model`` under a tuned ``strategy`` on this CPU, without
    building; later sweeps and builds reuse the records. ``strategy`` is a name or a :class:`Strategy`;
    ``trials`` overrides its budget; ``input_values`` freezes inputs (``--input-value``); an int8
    strategy is calibrated from ``calibration`` (default: seeded samples), as a sweep calibrates it. Tuning runs in this process, so Ctrl-C stops it after the batch
    being measured. ``space`` names the design space searched (``rules``, ``tvm`` or the default ``rules+tvm``:
    :data:`explorer.tvm.tuning.spaces.SPACES`). Returns :class:`explorer.tvm.tuning.search.TuneStats`."""
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    if not strat.tuned:
        raise ExplorerError(f"strategy {strat.name!r} does not tune; tuned strategies have tuning='metaschedule:N'")
    prepared = prepare(model, input_shapes, input_values=input_values)
    scales = calibrate(prepared, calibration).scales if strat.calibrated else None
    from explorer.tvm.tuning.apply import tune_prepared
    from explorer.tvm.tuning.spaces import DEFAULT_SPACE

    return tune_prepared(str(prepared.path), prepared.sha256, strat, trials or strat.trials, records, progress,
                         scales, space=space or DEFAULT_SPACE)
