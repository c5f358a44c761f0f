"""A measurement bundle's libraries, built in a compiler process and cached by key (the library and a
record of what its build returned beside it)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from cost_models.spec import TargetSpec
from explorer.core.errors import one_line
from explorer.host.process import in_compiler_process
from explorer.store.cache import cache_dir, write_atomic


def library_path(key: str) -> Path:
    """Where the library of cache key ``key`` is kept."""
    return cache_dir() / "measure" / "builds" / f"{key}.so"


def cached_builds(keys: list[str]) -> dict[str, dict]:
    """What each cached library's build returned, by key (those whose library and record are both there)."""
    found = {}
    for key in keys:
        lib, meta = library_path(key), library_path(key).with_suffix(".json")
        if lib.exists() and meta.exists():
            with contextlib.suppress(ValueError):
                found[key] = json.loads(meta.read_text())
    return found


def _build_all(requests: list) -> list:
    """Build every request in this (compiler) process; a dict per request, or the error as a string."""
    from explorer.tvm.bundle import build_library

    out = []
    for req in requests:
        try:
            out.append(build_library(req))
        except Exception as err:  # one failing variant never stops the others
            out.append(one_line(err))
    return out


def build_libraries(planned: list, spec: TargetSpec, progress: bool) -> tuple[dict[str, dict], int, list[str]]:
    """Every planned library, from the cache or built now in a compiler process: what each build
    returned by key, how many were built now, and notes on those that failed."""
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else (lambda line: None)
    built = cached_builds([p.key for p in planned])
    missing = [p for p in planned if p.key not in built]
    notes = []
    if missing:
        cuda = spec.tvm == "cuda"
        say(f"building {len(missing)} librar{'y' if len(missing) == 1 else 'ies'} for {spec.name} "
            f"({'cuda ' + spec.arch + ' cubins + ' if cuda else ''}generic x86-64 host code) ...")
        started = time.perf_counter()
        results = in_compiler_process(_build_all, [p.request for p in missing])
        for p, res in zip(missing, results):
            if isinstance(res, dict):
                write_atomic(library_path(p.key).with_suffix(".json"), json.dumps(res))
                built[p.key] = res
            else:
                notes.append(f"{p.id}: not built ({res})")
        say(f"built in {time.perf_counter() - started:.0f} s")
    return built, len(missing), notes
