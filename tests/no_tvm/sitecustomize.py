"""Make TVM unimportable in every Python process started with this folder on ``PYTHONPATH`` and
``EXPLORER_NO_TVM=1``: CI runs ``tests/unit`` so, to show that tier needs no TVM (see docs/developer/tests.md)."""

import os
import sys

if os.environ.get("EXPLORER_NO_TVM") == "1":

    class _NoTVM:
        """A meta-path finder that refuses ``tvm`` and ``tvm_ffi``."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tvm", "tvm_ffi"):
                raise ModuleNotFoundError(f"No module named {name!r} (EXPLORER_NO_TVM=1: this tier runs without TVM)")
            return None

    sys.meta_path.insert(0, _NoTVM())
