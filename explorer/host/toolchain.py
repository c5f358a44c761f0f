"""The tools outside TVM that its ROCm code generation needs, found on this machine (no TVM here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

#: Where Debian's ``rocm-device-libs`` puts the AMDGPU device bitcode (``amdgcn/bitcode/*.bc``).
DEBIAN_ROCM_PATH = "/usr/lib/x86_64-linux-gnu"
#: The oldest ld.lld that links what TVM's LLVM emits for AMDGPU: code object v6 (ELF ABI version 4)
#: is unknown to lld 14 ("unknown abi version"), linked by lld 19.
MIN_LLD_MAJOR = 19


def rocm_path() -> str:
    """The ROCm root whose ``amdgcn/bitcode`` holds the device libraries (``ROCM_PATH``, ``/opt/rocm``
    or Debian's ``rocm-device-libs``), or '' where none is installed."""
    for root in (os.environ.get("ROCM_PATH", ""), "/opt/rocm", DEBIAN_ROCM_PATH):
        if root and (Path(root) / "amdgcn" / "bitcode" / "ocml.bc").exists():
            return root
    return ""


def _lld_major(path: str) -> int:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.search(r"LLD (\d+)", out)
    return int(m.group(1)) if m else 0


def find_lld() -> str:
    """An ``ld.lld`` of version :data:`MIN_LLD_MAJOR` or later (``ld.lld-N``, LLVM's own folders, or
    ``ld.lld``), or '' where there is none."""
    candidates = [f"ld.lld-{n}" for n in range(30, MIN_LLD_MAJOR - 1, -1)]
    candidates += [f"/usr/lib/llvm-{n}/bin/ld.lld" for n in range(30, MIN_LLD_MAJOR - 1, -1)]
    candidates += ["ld.lld", "/opt/rocm/llvm/bin/ld.lld"]
    for name in candidates:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path and _lld_major(path) >= MIN_LLD_MAJOR:
            return path
    return ""


def rocm_missing() -> str:
    """What this machine lacks to build ROCm code here, in words ('' when nothing is missing)."""
    missing = []
    if not rocm_path():
        missing.append("the AMDGPU device bitcode (Debian's rocm-device-libs, or ROCM_PATH)")
    if not find_lld():
        missing.append(f"ld.lld {MIN_LLD_MAJOR} or later (Debian's lld-{MIN_LLD_MAJOR})")
    return " and ".join(missing)
