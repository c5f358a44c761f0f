"""Target dicts and code generation outside ``tvm.compile``: CUDA via nvcc, ROCm via ld.lld, exports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import tvm

from explorer.core.errors import ExplorerError
from explorer.host.toolchain import find_lld, rocm_missing, rocm_path
from explorer.store.cache import atomic_path


def llvm_target(mcpu: str) -> dict:
    """The LLVM target dict for ``mcpu``; a one-line error where LLVM does not know that CPU."""
    from tvm.target import codegen

    triple = codegen.llvm_get_system_triple()
    if not codegen.llvm_is_valid_cpu(mcpu, triple):
        raise ExplorerError(f"LLVM does not know the CPU {mcpu!r} (for {triple}); e.g. haswell, skylake-avx512, znver4")
    return {"kind": "llvm", "mcpu": mcpu}


def cuda_target(arch: str) -> dict:
    """CUDA target for ``arch`` (e.g. ``sm_90``) with an LLVM host."""
    return {"kind": "cuda", "arch": arch or "sm_90", "host": {"kind": "llvm"}}


def rocm_target(arch: str) -> dict:
    """ROCm target (LLVM's AMDGPU back end) for ``arch`` (e.g. ``gfx942``) with an LLVM host."""
    return {"kind": "rocm", "mcpu": arch or "gfx942", "host": {"kind": "llvm"}}


def gpu_target(lowering: str, arch: str) -> dict:
    """The target dict of a GPU lowering (``cuda`` or ``rocm``) for ``arch``."""
    return {"cuda": cuda_target, "rocm": rocm_target}[lowering](arch)


def current_arch() -> str:
    """The architecture of the current target (``sm_90``, ``gfx942``), or '' outside a GPU target."""
    target = tvm.target.Target.current(allow_none=True)
    if target is None or target.kind.name not in ("cuda", "rocm"):
        return ""
    return str(target.attrs.get("arch" if target.kind.name == "cuda" else "mcpu", ""))


@contextlib.contextmanager
def rocm_toolchain():
    """TVM's ROCm build pointed at this machine's device bitcode and a new enough ld.lld (TVM takes the
    first ``ld.lld`` on the path, and ``ROCM_PATH`` or ``/opt/rocm``); a one-line error naming what is
    missing when the build needs it."""
    import tvm_ffi
    from tvm.support import rocm

    missing = rocm_missing()
    if missing:
        raise ExplorerError(f"TVM's ROCm build needs {missing}")
    lld, old_path = find_lld(), os.environ.get("ROCM_PATH")
    os.environ["ROCM_PATH"] = rocm_path()
    tvm_ffi.register_global_func("tvm_callback_rocm_link", lambda obj: _rocm_link(rocm, obj, lld), override=True)
    try:
        yield
    finally:
        tvm_ffi.register_global_func("tvm_callback_rocm_link", rocm.callback_rocm_link, override=True)
        if old_path is None:
            os.environ.pop("ROCM_PATH", None)
        else:
            os.environ["ROCM_PATH"] = old_path


def _rocm_link(rocm, obj_bin, lld: str):
    """TVM's ``tvm_callback_rocm_link`` with ``lld``: the relocatable AMDGPU object to a code object."""
    with tempfile.TemporaryDirectory() as tmp:
        obj, cobj = os.path.join(tmp, "kernel.o"), os.path.join(tmp, "kernel.co")
        Path(obj).write_bytes(bytes(obj_bin))
        rocm.rocm_link(obj, cobj, lld=lld)
        return bytearray(Path(cobj).read_bytes())


def runtime_modules(mod):
    """A runtime module and everything it imports, depth first (the CUDA module sits inside the host's)."""
    yield mod
    for m in mod.imports:
        yield from runtime_modules(m)


def cuda_source(executable) -> str:
    """The CUDA source of a built CUDA variant."""
    return "\n".join(m.inspect_source() for m in runtime_modules(executable.mod) if m.kind == "cuda")


def rocm_assembly(executable) -> str:
    """The AMDGPU assembly of a built ROCm variant (what LLVM's back end emitted for its kernels)."""
    return "\n".join(m.inspect_source("asm") for m in runtime_modules(executable.mod) if m.kind == "hip")


def nvcc_compile(source: str, arch: str) -> str:
    """Compile generated CUDA source to a cubin with nvcc; return '' on success or the first error line."""
    from tvm.support import nvcc

    if shutil.which("nvcc") is None:
        return "nvcc not found"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tvm.target.Target(cuda_target(arch)):
                nvcc.compile_cuda(source, "cubin", arch=arch, path_target=os.path.join(tmp, "k.cubin"),
                                  compiler="nvcc")
        except Exception as err:
            lines = [ln for ln in str(err).splitlines() if "error" in ln.lower()] or str(err).splitlines() or ["?"]
            return lines[0][:200]
    return ""


def export_library(executable, path: Path) -> None:
    """Export a built Relax VM executable as a shared library at ``path`` (temp file + rename)."""
    with atomic_path(path) as tmp:
        executable.export_library(str(tmp))
