"""The build cache: exported CPU libraries, one per model, strategy, CPU and calibration.

::

    cache_dir()/builds/<key>.so     the Relax VM executable (``export_library``)
    cache_dir()/builds/<key>.json   what the build was made from

The key (:func:`build_key`) covers the prepared model's content, the strategy's choices, ``mcpu``,
the installed TVM and explorer versions and a fingerprint of the code that decides what the
library contains, so nothing is compiled twice and a changed compiler never reuses an old library.
A sweep that times a CPU variant exports its library here, so ``explorer run`` compiles nothing after it.
"""

from __future__ import annotations

from pathlib import Path

from explorer.core.prepared import PreparedModel
from explorer.core.strategies import Strategy
from explorer.store.cache import COMPILE_CODE, cache_dir, code_fingerprint, make_key

#: Bump when the layout of the build cache changes.
BUILD_FORMAT = "2"

def build_key(model: PreparedModel, strategy: Strategy, mcpu: str, calibration: str = "") -> str:
    """Cache key of a CPU build: model content, strategy choices, ``mcpu``, the int8 calibration's
    key (:attr:`explorer.model.int8_calibration.Calibration.key`, empty for other precisions), TVM and explorer
    versions, and a fingerprint of the explorer's compile code."""
    return make_key("build", BUILD_FORMAT, model.sha256, strategy.key, f"mcpu={mcpu}", f"calibration={calibration}",
                    code_fingerprint(*COMPILE_CODE))


def builds_dir() -> Path:
    """Where built libraries are cached: ``cache_dir()/builds``."""
    return cache_dir() / "builds"


def library_path(model: PreparedModel, strategy: Strategy, mcpu: str, calibration: str = "") -> Path:
    """Where the CPU library of ``model`` under ``strategy`` for ``mcpu`` (int8: and ``calibration``)
    is cached (a sweep that runs a CPU variant exports it there too, so ``explorer run`` compiles
    nothing after it)."""
    return builds_dir() / f"{build_key(model, strategy, mcpu, calibration)}.so"
