"""Target dicts and code generation outside ``tvm.compile``: the host CPU, CUDA via nvcc, exports."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import tvm

from ..cache import atomic_path
from ..errors import ExplorerError


def host_cpu() -> str:
    """LLVM's name of this host's CPU (e.g. ``znver4``, ``cascadelake``)."""
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


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


def runtime_modules(mod):
    """A runtime module and everything it imports, depth first (the CUDA module sits inside the host's)."""
    yield mod
    for m in mod.imports:
        yield from runtime_modules(m)


def cuda_source(executable) -> str:
    """The CUDA source of a built CUDA variant."""
    return "\n".join(m.inspect_source() for m in runtime_modules(executable.mod) if m.kind == "cuda")


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
