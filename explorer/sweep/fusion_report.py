"""``explorer fusion``: a fused strategy swept beside its unfused counterpart on one target, and the
savings of each fused kernel (:func:`explorer.scoring.fusion.fusion_table`) with the totals."""

from __future__ import annotations

import pandas as pd

from explorer.core.errors import ExplorerError, UnknownName
from explorer.core.strategies import get_strategy, list_strategies
from explorer.core.variant import FAILURE_KINDS
from explorer.scoring.fusion import fusion_table, level_columns, unfused_counterpart
from explorer.sweep.sweep import run_sweep


def fusion_report(model: str, target: str = "cpu", strategy: str = "fused", out: str | None = None,
                  input_shapes: dict | None = None, progress: bool = True,
                  input_values: dict[str, float] | None = None,
                  calibration: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-fused-kernel savings of ``strategy`` against its unfused counterpart, and the totals
    (``input_values`` freezes inputs; ``calibration`` is the int8 calibration folder, as for a sweep)."""
    fused = get_strategy(strategy)
    if fused.fusion == "none":
        raise UnknownName(f"strategy {strategy!r} does not fuse; pick one of "
                          f"{', '.join(s.name for s in list_strategies() if s.fusion != 'none')}")
    unfused = unfused_counterpart(fused)
    result = run_sweep([model], targets=[target], strategies=[unfused.name, fused.name], out=out,
                       input_shapes=input_shapes, check=False, build=False, progress=progress,
                       input_values=input_values, calibration=calibration)
    v = result.variants.set_index("strategy")
    for name in (unfused.name, fused.name):
        if v.loc[name, "status_kind"] in {k.value for k in FAILURE_KINDS}:
            raise ExplorerError(f"{name}: {v.loc[name, 'status']}")
    levels = level_columns(result.kernels, target)
    table = fusion_table(result.kernels, fused.name, unfused.name, tuple(levels))
    by_strategy = result.kernels.groupby("strategy")[levels].sum()
    totals = {
        "levels": levels,
        "level_bytes_unfused": by_strategy.loc[unfused.name].to_dict(),
        "level_bytes_fused": by_strategy.loc[fused.name].to_dict(),
        "model": model, "target": target, "fused": fused.name, "unfused": unfused.name,
        "kernels_unfused": int(v.loc[unfused.name, "kernels"]), "kernels_fused": int(v.loc[fused.name, "kernels"]),
        "dram_bytes_unfused": float(v.loc[unfused.name, "dram_bytes"]),
        "dram_bytes_fused": float(v.loc[fused.name, "dram_bytes"]),
        "energy_unfused_j": float(v.loc[unfused.name, "energy_j"]),
        "energy_fused_j": float(v.loc[fused.name, "energy_j"]),
    }
    return table, totals
