"""A bounded cache: what it holds, and evicting the least recently used of it.

An *entry* is one top-level item of a cache folder (:data:`PRUNABLE`), with its companions of the same
stem (a build's ``KEY.so`` and ``KEY.json``): it is kept or removed whole. Its *last use* is its newest
modification time: writers create entries and readers touch them (:func:`explorer.store.cache.touch`),
so the oldest is the least recently used. MetaSchedule's tuning records are never evicted (they are
measurements, not recomputable results), nor the cache's own small files.

A running command that uses the cache registers itself (:func:`using_cache`: a file ``.in-use/PID``
holding its start time); :func:`prune` never removes an entry used since the earliest start of a live
one, so a sweep never loses what it is working with. The cap (:func:`cache_cap_bytes`) is
``$EXPLORER_CACHE_MAX`` (``40G``, ``500M``, a byte count, ``0`` for none), else ``max_size`` in
``$EXPLORER_CACHE/cache.toml``, else a quarter of the cache's filesystem; :func:`enforce_cap` applies it
after every sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time
import tomllib
from pathlib import Path

from explorer.core.errors import InputError
from explorer.store.cache import cache_dir

#: The cache folders whose entries may be evicted (not ``tuning``: its records are measurements).
PRUNABLE = ("models", "prepared", "lowerings", "measurements", "builds", "reference", "logs")

#: The share of the cache's filesystem the cap defaults to.
DEFAULT_SHARE = 0.25

_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?)B?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as ``40G`` or ``40GB`` (decimal, as the explorer prints sizes), ``40GiB``
    (binary), ``500M`` or ``123456``."""
    m = _SIZE.fullmatch(str(text))
    if m is None:
        raise InputError(f"not a size: {text!r} (give bytes, or a number with K, M, G or T)")
    value, unit, binary = m.groups()
    return int(float(value) * (1024 if binary else 1000) ** _POWERS[unit.upper()])


def cache_cap_bytes(root: Path | None = None) -> int:
    """The cache's size cap in bytes (0: none); see the module docstring for where it is set."""
    root = root or cache_dir()
    if os.environ.get("EXPLORER_CACHE_MAX"):
        return parse_size(os.environ["EXPLORER_CACHE_MAX"])
    config = root / "cache.toml"
    if config.exists():
        try:
            data = tomllib.loads(config.read_text())
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{config}: {err}") from None
        if "max_size" in data:
            return parse_size(data["max_size"])
    probe = root if root.exists() else root.parent
    while not probe.exists():
        probe = probe.parent
    return int(shutil.disk_usage(probe).total * DEFAULT_SHARE)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One evictable unit of the cache: its files and folders, their bytes and its last use."""

    folder: str
    name: str
    paths: tuple[Path, ...]
    size_bytes: int
    last_use: float


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def _last_use(path: Path) -> float:
    if path.is_dir() and not path.is_symlink():
        return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.iterdir())])
    return path.stat().st_mtime


def entries(root: Path | None = None) -> list[Entry]:
    """Every evictable entry of the cache at ``root`` (default :func:`cache_dir`), oldest use first;
    half-written ones (hidden temporaries) are not entries."""
    root = root or cache_dir()
    out = []
    for folder in PRUNABLE:
        base = root / folder
        if not base.is_dir():
            continue
        groups: dict[str, list[Path]] = {}
        for p in base.iterdir():
            if p.name.startswith("."):
                continue
            groups.setdefault(p.name.split(".", 1)[0] if p.is_file() else p.name, []).append(p)
        for name, paths in groups.items():
            try:
                out.append(Entry(folder, name, tuple(paths), sum(_size(p) for p in paths),
                                 max(_last_use(p) for p in paths)))
            except FileNotFoundError:  # removed while listed (another prune)
                continue
    return sorted(out, key=lambda e: e.last_use)


def _in_use_dir(root: Path) -> Path:
    return root / ".in-use"


@contextlib.contextmanager
def using_cache(root: Path | None = None):
    """Register this process as using the cache for the duration (see the module docstring)."""
    folder = _in_use_dir(root or cache_dir())
    record = folder / str(os.getpid())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(repr(time.time()))
    except OSError:
        record = None  # an unwritable cache: nothing to protect from a prune that cannot run either
    try:
        yield
    finally:
        if record is not None:
            with contextlib.suppress(OSError):
                record.unlink()


def protected_since(root: Path | None = None) -> float:
    """The earliest start of a live process using the cache (``inf`` where none is): entries used since
    then are never evicted. Records of processes that died are removed."""
    folder = _in_use_dir(root or cache_dir())
    earliest = float("inf")
    if not folder.is_dir():
        return earliest
    for record in folder.iterdir():
        try:
            pid, start = int(record.name), float(record.read_text())
        except (ValueError, OSError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                record.unlink()
            continue
        except PermissionError:
            pass  # alive, another user's
        earliest = min(earliest, start)
    return earliest


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What a prune removed and what it kept."""

    removed: tuple[Entry, ...]
    kept_bytes: int
    held: int  # entries it would have removed but a running command uses

    @property
    def removed_bytes(self) -> int:
        return sum(e.size_bytes for e in self.removed)


def prune(max_bytes: int | None = None, older_than_s: float | None = None, root: Path | None = None,
          listed: list[Entry] | None = None) -> Pruned:
    """Remove entries least recently used first until the cache holds at most ``max_bytes`` (None: no
    size limit), and every entry unused for more than ``older_than_s`` seconds; never one a running
    command holds (:func:`protected_since`). ``listed`` is :func:`entries` where the caller has it."""
    root = root or cache_dir()
    listed = entries(root) if listed is None else listed
    held_after = protected_since(root)
    total = sum(e.size_bytes for e in listed)
    now = time.time()
    removed, held = [], 0
    for e in listed:
        too_old = older_than_s is not None and now - e.last_use > older_than_s
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            continue
        if e.last_use >= held_after:
            held += 1
            continue
        for p in e.paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        removed.append(e)
        total -= e.size_bytes
    return Pruned(tuple(removed), total, held)


def enforce_cap(root: Path | None = None) -> Pruned | None:
    """Apply the cache's cap (:func:`cache_cap_bytes`); None where the cache is within it (or has none)."""
    root = root or cache_dir()
    cap = cache_cap_bytes(root)
    if cap <= 0:
        return None
    listed = entries(root)  # walked once: the check and the prune share it
    if sum(e.size_bytes for e in listed) <= cap:
        return None
    return prune(max_bytes=cap, root=root, listed=listed)
