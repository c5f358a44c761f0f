"""Calls into a process with TVM's compiler loaded, from a process that should stay light."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from explorer.core.errors import ExplorerError


def in_compiler_process(fn, *args):
    """``fn(*args)`` in this process where TVM's compiler is already loaded, else in a spawned one:
    a process that has not imported TVM stays light, and one that loaded TVM's runtime library only
    cannot compile."""
    tvm = sys.modules.get("tvm")
    if tvm is not None and not getattr(getattr(tvm, "base", None), "_RUNTIME_ONLY", True):
        return fn(*args)
    saved = os.environ.pop("TVM_USE_RUNTIME_LIB", None)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        raise ExplorerError("the TVM compile process crashed (a segfault inside TVM)") from None
    finally:
        if saved is not None:
            os.environ["TVM_USE_RUNTIME_LIB"] = saved


#: Lines TVM writes to stderr that say nothing a user can act on: legalizing an embedding's ``take``
#: warns of its unchecked indices on every compile, DLight of a limit the cuda target leaves default, and
#: the rocm target of the ROCm this machine lacks.
QUIET_STDERR = (b"Warning: Fast mode segfaults when there are out-of-bounds indices",
                b"Target cuda missing 'max_shared_memory_per_block'", b"Unable to detect ROCm version, assuming")


def filter_stderr(quiet: tuple[bytes, ...] = QUIET_STDERR) -> None:
    """From now on, drop the lines of this process's stderr (file descriptor 2, where C++ libraries write)
    that contain one of ``quiet``; pass every other line through."""
    import threading

    read, write = os.pipe()
    original = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb") as lines, os.fdopen(original, "wb", buffering=0) as out:
            for line in lines:
                if not any(q in line for q in quiet):
                    out.write(line)

    threading.Thread(target=pump, name="filter-stderr", daemon=True).start()
