"""This machine's CPU as a fingerprint read without TVM, and calls into a process with TVM's compiler."""

from __future__ import annotations

import hashlib
import multiprocessing
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .errors import ExplorerError


def cpu_fingerprint() -> str:
    """Identity of this machine's CPU, read without TVM (``/proc/cpuinfo`` where there is one)."""
    fields = [platform.machine(), platform.processor()]
    cpuinfo = Path("/proc/cpuinfo")
    block = cpuinfo.read_text().split("\n\n")[0] if cpuinfo.exists() else ""  # absent off Linux
    for line in block.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part"):
            fields.append(f"{name.strip()}={value.strip()}")
    return hashlib.sha256("|".join(fields).encode()).hexdigest()[:16]


def in_compiler_process(fn, *args):
    """``fn(*args)`` in this process where TVM's compiler is already loaded, else in a spawned one:
    a process that has not imported TVM stays light, and one that loaded TVM's runtime library only
    cannot compile."""
    tvm = sys.modules.get("tvm")
    if tvm is not None and not getattr(getattr(tvm, "base", None), "_RUNTIME_ONLY", True):
        return fn(*args)
    import os

    saved = os.environ.pop("TVM_USE_RUNTIME_LIB", None)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        raise ExplorerError("the TVM compile process crashed (a segfault inside TVM)") from None
    finally:
        if saved is not None:
            os.environ["TVM_USE_RUNTIME_LIB"] = saved
