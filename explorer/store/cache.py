"""The on-disk cache: where it lives, how entries are keyed, and how they are written safely.

Everything expensive is cached here, and nothing cheap::

    cache_dir()/models/       zoo models built to ONNX
    cache_dir()/prepared/     static, simplified ONNX models (explorer.model.prepare)
    cache_dir()/lowerings/    one directory per compiled variant: its workload table, call sites,
                              planned storage, build outcome and measurements (explorer.store.lowerings)
    cache_dir()/builds/       exported CPU libraries (explorer.store.builds)
    cache_dir()/tuning/       MetaSchedule records per CPU (explorer.store.tuning_records)

Energies, uncertainty, rankings and reports are never cached: they are recomputed from the cached
workloads on every run, so an edited target file or cost model shows at once.

A key is a hash of everything that decides an entry's content: the model's bytes, the strategy's
choices, the lowering, the installed TVM version, the explorer's version and a fingerprint of the
code that produces the entry (:func:`code_fingerprint`). Writes are atomic (a temporary file or
directory renamed into place), so several processes may fill the cache at once: a reader sees a
whole entry or none, and two writers of one key write the same content.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from explorer.core.errors import DISK_ERRNOS, WriteError
from explorer.core.version import __version__

#: The folder that holds the ``explorer`` package (the repository's root in a checkout): code paths are relative to it.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The cache root: ``$EXPLORER_CACHE``, or ``~/.cache/tvm-energy-explorer``."""
    root = os.environ.get("EXPLORER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tvm-energy-explorer"


@lru_cache(maxsize=1)
def tvm_version() -> str:
    """The installed apache-tvm version (read from the package metadata, without importing tvm)."""
    from importlib.metadata import version

    return version("apache-tvm")


#: The code that decides what a compiled module contains: part of the key of every lowering and build.
COMPILE_CODE = ("explorer/tvm/frontend.py", "explorer/tvm/pipeline.py", "explorer/tvm/passes/*.py",
                "explorer/tvm/schedules/*.py", "explorer/tvm/kernels/*.py", "explorer/tvm/relax_ir.py",
                "explorer/tvm/compile.py", "explorer/tvm/tir_pipeline.py", "explorer/tvm/codegen.py",
                "explorer/tvm/compiler_facts.py", "explorer/tvm/tir/expr.py", "explorer/tvm/tuning/*.py")


def code_fingerprint(*patterns: str) -> str:
    """A short hash of the explorer's source files matching ``patterns`` (globs from the repository
    root, e.g. ``"explorer/tvm/*.py"``): part of the key of whatever that code produces. A pattern that
    matches no file is an internal error: a key that silently left out a module it meant would reuse
    stale entries after that module changed."""
    h = hashlib.sha256()
    for pattern in patterns:
        paths = sorted(SOURCE_ROOT.glob(pattern))
        if not paths:
            raise RuntimeError(f"internal error: the code pattern {pattern!r} matches no file under {SOURCE_ROOT}")
        for path in paths:
            h.update(path.relative_to(SOURCE_ROOT).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def make_key(*parts: object) -> str:
    """A cache key from ``parts`` (strings or anything with a stable ``str``), with the explorer's
    version and the installed TVM version folded in."""
    raw = "|".join([__version__, tvm_version(), *map(str, parts)])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def file_digest(*paths: Path) -> str:
    """A short hash of the contents of ``paths`` (missing files count as empty)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def touch(*paths: Path) -> None:
    """Mark cache entries as just used (their modification time: what eviction orders by, least
    recently used first; see :mod:`explorer.store.eviction`). Never fails: a read-only cache is read."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def disk_errors(path: Path):
    """Turn a full, over-quota, read-only or unwritable disk met while writing ``path`` into a
    :class:`~explorer.core.errors.WriteError` naming it (writers such as ``onnx.save`` raise OSErrors
    that name no file)."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from err


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path`` for a writer that wants a file name (``onnx.save``,
    TVM's ``export_library``); on success it is renamed to ``path``. The temporary keeps ``path``'s
    suffix, which some writers read."""
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield a fresh temporary directory beside ``final``; on success it is renamed to ``final``.

    If another process published ``final`` first, its entry is kept and this one discarded (both
    were made from the same key, so they hold the same content)."""
    with disk_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        try:
            yield tmp
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive advisory lock on ``path``'s ``.lock`` file, for read-modify-write updates
    (tuning ledgers, append-only logs) shared between processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
