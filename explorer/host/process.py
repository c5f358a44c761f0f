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
