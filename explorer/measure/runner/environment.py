"""The bundle's runtime-only TVM: made importable (with apache-tvm-ffi for this Python), imported, and
what the process loaded of it."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from .bundle import ROOT, BadInput


def setup_imports(manifest: dict) -> dict:
    """Make the bundle's runtime-only TVM importable, with apache-tvm-ffi from the bundled wheel for this
    Python where there is one (extracted once into ``_site/``), else the installed package. Must run
    before ``tvm`` is imported. Returns where each came from."""
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # read when tvm is first imported
    info = {}
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = [ROOT / w for w in manifest.get("wheels", []) if f"-{tag}-" in Path(w).name]
    if wheels:
        site = ROOT / "_site" / tag
        if not (site / "tvm_ffi" / "__init__.py").exists():
            try:
                site.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(dir=site.parent, prefix=f".{tag}."))
            except OSError:  # a read-only bundle: extract elsewhere
                site = Path(tempfile.mkdtemp(prefix=f"tvm-ffi-{tag}-"))
                staging = site
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(staging)
            if staging != site:
                try:
                    staging.rename(site)
                except OSError:  # another runner extracted it first
                    site = staging
        sys.path.insert(0, str(site))
        info["tvm_ffi"] = f"bundled wheel {wheels[0].name}"
    else:
        try:
            from importlib.metadata import version

            found = version("apache-tvm-ffi")
        except Exception:
            raise BadInput(f"no apache-tvm-ffi for Python {sys.version_info.major}.{sys.version_info.minor}: the bundle has "
                           f"wheels {manifest.get('wheels') or 'none'}; pip install apache-tvm-ffi=={manifest['tvm_ffi_version']}")
        info["tvm_ffi"] = f"installed apache-tvm-ffi {found}"
        if found != manifest["tvm_ffi_version"]:
            info["tvm_ffi_warning"] = f"the bundle was built with apache-tvm-ffi {manifest['tvm_ffi_version']}"
    sys.path.insert(0, str(ROOT / "python"))
    return info


def import_tvm(device: str):
    """Import the bundle's TVM (runtime only); for CUDA also load TVM's CUDA runtime library (the
    runtime-only import does not load device backends)."""
    import tvm

    if not str(Path(tvm.__file__).resolve()).startswith(str((ROOT / "python").resolve())):
        raise BadInput(f"imported tvm from {tvm.__file__}, not from the bundle (tvm was imported before the runner)")
    if device == "cuda":
        lib = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
        try:
            tvm.base._LOADED_LIBS["tvm_runtime_cuda"] = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise BadInput(f"cannot load TVM's CUDA runtime ({err}): is there an NVIDIA driver (libcuda.so.1)?") from None
    return tvm


def loaded_libraries() -> list[str]:
    """Shared libraries this process has mapped whose names mention tvm (from /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({Path(line.split()[-1]).name for line in maps.splitlines() if "tvm" in line and ".so" in line})
