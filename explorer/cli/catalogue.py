"""``explorer models``, ``explorer strategies`` and ``explorer targets``: what the explorer knows by name."""

from __future__ import annotations

import pandas as pd


def add_parser(sub) -> None:
    """Add the three listing verbs to the ``explorer`` command's subparsers."""
    sub.add_parser("models", help="list the built-in model zoo").set_defaults(func=models)
    sub.add_parser("strategies", help="list the registered compilation strategies").set_defaults(func=strategies)
    sub.add_parser("targets", help="list the shipped hardware targets").set_defaults(func=targets)


def models(args) -> int:
    import models as zoo
    from models.decoders import ACTIVE_RULE

    rows = [{"name": m.name, "inputs": " ".join(f"{n}:{','.join(map(str, s))}" for n, s in m.inputs),
             "published GMAC": "" if m.published_macs is None else f"{m.published_macs / 1e9:.3g}",
             "parameters (B)": "" if m.parameters is None else f"{m.parameters / 1e9:.2f}",
             "active (B)": "" if m.decoder is None or not m.decoder.experts else f"{m.decoder.active_parameters() / 1e9:.2f}",
             "description": m.description} for m in zoo.list_models()]
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"\n{ACTIVE_RULE}")
    return 0


def strategies(args) -> int:
    from explorer.core.strategies import list_strategies

    print(pd.DataFrame([{"name": s.name, **s.axes()} for s in list_strategies()]).to_string(index=False))
    return 0


def targets(args) -> int:
    from cost_models.targets import list_targets, load_target

    rows = []
    for name in list_targets():
        t = load_target(name)
        rows.append({"name": t.name, "compiled as": t.tvm, "dtypes": ",".join(t.dtypes),
                     "memory": " > ".join(m.name for m in t.memory), "description": t.description})
    print(pd.DataFrame(rows).to_string(index=False))
    return 0
