"""What a bundle carries to run without the explorer: the installed tvm package's runtime (its Python
files and ``libtvm_runtime*.so``, never the compiler), on CUDA the ``libcudart`` TVM's CUDA runtime links,
nvidia-ml-py's ``pynvml`` for NVML, and the apache-tvm-ffi wheel for the device's Python."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version as package_version
from pathlib import Path

from explorer.store.cache import cache_dir

#: The runner package copied into every bundle; its ``__main__.py`` becomes ``measure_runner.py``.
RUNNER = Path(__file__).resolve().parent / "runner"

#: The Python the GPU machine runs (the tvm-ffi wheel is downloaded for it).
DEVICE_PYTHON = "3.12"

#: Platform tag of the wheel for the GPU machine.
WHEEL_PLATFORM = "manylinux_2_28_x86_64"

#: Subpackages of tvm a runtime-only process never imports (not copied: they are most of its Python).
SKIPPED_TVM_DIRS = ("3rdparty", "web", "relax", "s_tir", "topi", "include", "src", "cmake", "licenses")


def tvm_ffi_version() -> str:
    """The installed apache-tvm-ffi version (the bundle's wheel must be the same)."""
    return package_version("apache-tvm-ffi")


def tvm_ffi_wheel(python: str = DEVICE_PYTHON, download: bool = True) -> tuple[Path | None, str]:
    """The apache-tvm-ffi wheel matching the installed version for ``python`` (cached under
    ``cache_dir()/wheels``; downloaded with pip where it is not), and a note saying how it was found."""
    version = tvm_ffi_version()
    tag = "cp" + python.replace(".", "")
    folder = cache_dir() / "wheels"
    pattern = f"apache_tvm_ffi-{version}-{tag}-{tag}-*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[-1], f"apache-tvm-ffi {version} for Python {python} (cached wheel)"
    if not download:
        return None, f"no apache-tvm-ffi {version} wheel for Python {python}: install it on the device machine"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"apache-tvm-ffi=={version}", "--python-version", python,
           "--only-binary=:all:", "--platform", WHEEL_PLATFORM, "--no-deps", "-d", str(folder)]
    try:
        ran = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"pip could not download apache-tvm-ffi {version} for Python {python} ({err}): install it there"
    found = sorted(folder.glob(pattern))
    if ran.returncode != 0 or not found:
        last = (ran.stderr.strip().splitlines() or ["?"])[-1][:200]
        return None, f"pip could not download apache-tvm-ffi {version} for Python {python} ({last}): install it there"
    return found[-1], f"apache-tvm-ffi {version} for Python {python} (downloaded with pip)"


def cudart() -> Path | None:
    """The libcudart that TVM's CUDA runtime library was linked against (from the CUDA toolkit here)."""
    runtime_cuda = tvm_lib_dir() / "libtvm_runtime_cuda.so"
    wanted = "libcudart.so.13"
    try:
        needed = subprocess.run(["readelf", "-d", str(runtime_cuda)], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"\[(libcudart\.so\.\d+)\]", needed)
        wanted = m.group(1) if m else wanted
    except (OSError, subprocess.TimeoutExpired):
        pass
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parent.parent))
    for root in filter(None, roots):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
            if (Path(root) / sub / wanted).exists():
                return (Path(root) / sub / wanted).resolve()
    return None


def tvm_lib_dir() -> Path:
    return Path(importlib.util.find_spec("tvm").origin).parent / "lib"


def copy_runtime(out: Path, cuda: bool) -> list[str]:
    """Copy the installed tvm package's Python files (but :data:`SKIPPED_TVM_DIRS`) and its runtime
    libraries (never ``libtvm_compiler``) to ``out/python/tvm``; for CUDA also TVM's CUDA runtime, the
    libcudart it needs (found through its ``$ORIGIN`` run path) and ``pynvml``. Returns notes."""
    src = tvm_lib_dir().parent
    dst = out / "python" / "tvm"
    notes = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        if rel.parts[0] in SKIPPED_TVM_DIRS:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)
    import typing_extensions  # apache-tvm-ffi needs it; a bare Python may lack it (one pure-Python file)

    shutil.copyfile(typing_extensions.__file__, out / "python" / "typing_extensions.py")
    (dst / "lib").mkdir(parents=True, exist_ok=True)
    libs = ["libtvm_runtime.so"] + (["libtvm_runtime_cuda.so"] if cuda else [])
    for name in libs:
        shutil.copyfile(src / "lib" / name, dst / "lib" / name)
    if cuda:
        lib = cudart()
        if lib is None:
            notes.append("libcudart (the CUDA runtime TVM's CUDA library links) was not found here: the device "
                         "machine must have it on its library path")
        else:
            shutil.copyfile(lib, dst / "lib" / lib.name)
        shutil.copyfile(pynvml_file(), out / "python" / "pynvml.py")
    return notes


def pynvml_file() -> Path:
    """nvidia-ml-py's ``pynvml.py`` (one pure-Python file), which the runner reads NVML with."""
    return Path(importlib.util.find_spec("pynvml").origin)


def runtime_bytes(cuda: bool) -> int:
    """What :func:`copy_runtime` copies, in bytes (a bundle's size is checked before it is written)."""
    src = tvm_lib_dir().parent
    total = sum(p.stat().st_size for p in src.rglob("*.py") if p.relative_to(src).parts[0] not in SKIPPED_TVM_DIRS)
    total += (src / "lib" / "libtvm_runtime.so").stat().st_size
    if cuda:
        lib = cudart()
        total += (src / "lib" / "libtvm_runtime_cuda.so").stat().st_size + (lib.stat().st_size if lib else 0)
        total += pynvml_file().stat().st_size
    return total


def copy_runner(staging: Path) -> None:
    """The runner package as ``runner/`` and its ``__main__.py`` as ``measure_runner.py``."""
    (staging / "runner").mkdir()
    for path in sorted(RUNNER.glob("*.py")):
        shutil.copyfile(path, staging / "runner" / path.name)
    shutil.copyfile(RUNNER / "__main__.py", staging / "measure_runner.py")


def copy_wheels(staging: Path, wheel, python: str) -> tuple[list[str], str]:
    """The apache-tvm-ffi wheel copied into ``staging/wheels`` (``auto``: cached or downloaded), and a note."""
    found, note = (Path(wheel), f"{Path(wheel).name} (given)") if wheel != "auto" else tvm_ffi_wheel(python)
    if found is None:
        return [], note
    (staging / "wheels").mkdir(exist_ok=True)
    shutil.copyfile(found, staging / "wheels" / found.name)
    return [f"wheels/{found.name}"], note
