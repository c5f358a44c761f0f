"""The bundle on disk: where it is, which of its variants to run, and the results file."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

#: The bundle's root: ``manifest.json``, ``libs/``, ``inputs/`` and ``python/`` beside this package.
ROOT = Path(__file__).resolve().parent.parent


class BadInput(Exception):
    """Something the caller can fix (one line on stderr, exit 2)."""


def read_manifest() -> dict:
    """The bundle's ``manifest.json``."""
    return json.loads((ROOT / "manifest.json").read_text())


def pick(manifest: dict, patterns: list[str]) -> list[dict]:
    """The manifest's variants whose ids match any of ``patterns`` (all without patterns)."""
    variants = manifest["variants"]
    if not patterns:
        return list(variants)
    chosen = [v for v in variants if any(fnmatch.fnmatchcase(v["id"], p) for p in patterns)]
    if not chosen:
        raise BadInput(f"no variant matches {', '.join(patterns)} (run --list to see them)")
    return chosen


def ncu_subset(manifest: dict, count: int) -> list[str]:
    """A few variants to profile with Nsight Compute: the microbenchmarks first, then one strategy of
    each model after another (different models and strategies before more of one)."""
    micro = [v["id"] for v in manifest["variants"] if v.get("micro")]
    rest = [v for v in manifest["variants"] if not v.get("micro")]
    by_model: dict = {}
    for v in rest:
        by_model.setdefault(v["model"], []).append(v["id"])
    order = []
    while any(by_model.values()):
        for ids in by_model.values():
            if ids:
                order.append(ids.pop(0))
    return (micro + order)[:count]


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
