"""What a bundle is built from: a sweep's ``--out`` directory (its variants on the target, zoo models
with their phase and batch) or a model with the strategies given."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd

import models as zoo
from cost_models.spec import TargetSpec
from explorer.core.errors import ExplorerError
from explorer.core.strategies import parse_strategies
from explorer.model.arguments import model_name
from explorer.model.phases import Phase


@dataclasses.dataclass(frozen=True)
class Instance:
    """One prepared model of a bundle and the strategies it is built under."""

    label: str           # the model's name in tables
    model: str           # zoo name or ONNX path
    phase: object        # explorer.model.phases.Phase or None
    batch: int | None
    kv_cache_dtype: str
    strategies: tuple[str, ...]
    micro: bool = False
    run: Path | None = None  # the sweep directory it comes from (its store holds the lowerings)


_SUFFIX = re.compile(r"^(?P<base>[^@]+)(?:@(?P<kind>prefill|decode)(?P<tokens>\d+))?(?:@kv-(?P<kv>[a-z0-9]+))?"
                     r"(?:@b(?P<batch>\d+))?$")


def instance_of(name: str, strategies: list[str], models: dict[str, str]) -> Instance:
    """The model a sweep's table names ``name`` (``gpt2@decode128@b8``), to be built again here."""
    m = _SUFFIX.match(name)
    if not m:
        raise ExplorerError(f"cannot tell which model {name!r} is; pass it as a model instead of a sweep")
    base = m["base"]
    source = models.get(base)
    if source is None:
        try:
            zoo.get_model(base)
        except KeyError:
            raise ExplorerError(f"the sweep's model {base!r} is not a zoo model: give its file "
                                f"(explorer measure {base}.onnx ...) instead of the sweep") from None
        source = base
    phase = Phase(m["kind"], int(m["tokens"])) if m["kind"] else None
    return Instance(name, source, phase, int(m["batch"]) if m["batch"] else None, m["kv"] or "auto",
                     tuple(strategies))


def instances_of(source: str | Path, spec: TargetSpec, strategies, models: dict[str, str]) -> list[Instance]:
    """What ``source`` (a sweep directory or a model) asks to build."""
    path = Path(source)
    if path.is_dir():
        table = path / "variants.csv"
        if not table.is_file() or not (path / "results.sqlite").is_file():
            raise ExplorerError(f"{path} is not a sweep's --out directory (no variants.csv and results.sqlite)")
        variants = pd.read_csv(table)
        rows = variants[variants["target"] == spec.name]
        if rows.empty:
            raise ExplorerError(f"{path} has no variants on {spec.name} (it has "
                                f"{', '.join(sorted(set(variants['target'].astype(str))))})")
        wanted = {s.name for s in parse_strategies(strategies)} if strategies else None
        out = []
        for name, group in rows.groupby("model", sort=False):
            names = [s for s in dict.fromkeys(group["strategy"]) if wanted is None or s in wanted]
            if names:
                out.append(dataclasses.replace(instance_of(str(name), names, models), run=path))
        if not out:
            raise ExplorerError(f"{path} has none of the strategies {strategies} on {spec.name}")
        return out
    names = tuple(s.name for s in parse_strategies(strategies or "all"))
    return [Instance(model_name(str(source)), str(source), None, None, "auto", names)]
