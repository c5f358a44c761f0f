"""What the explorer asks of TVM's compiler before it compiles anything, asked in one process.

Two answers come from TVM itself: LLVM's name of this host's CPU (:func:`explorer.tvm.llvm_host.host_llvm_cpu`,
kept per CPU fingerprint in ``cache_dir()/host-llvm-cpu.json``) and the operators TVM's ONNX importer
converts (kept per TVM version in ``cache_dir()/onnx-ops-<version>-2.json``). A process that has not
imported TVM asks in a spawned one, which costs TVM's import: asked one at a time, the two cost a cold
sweep two such processes back to back (1.9 s each here). So a miss of either asks both, and keeps both.
This module imports tvm only in the process that asks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from explorer.host.cpu import cpu_fingerprint
from explorer.host.process import in_compiler_process
from explorer.store.cache import cache_dir, tvm_version, write_atomic


@dataclasses.dataclass(frozen=True)
class CompilerFacts:
    """TVM's answers: LLVM's name of this host's CPU, and the ONNX operators its importer converts."""

    llvm_cpu: str
    onnx_ops: tuple[str, ...]


def _ask() -> CompilerFacts:
    from explorer.tvm.frontend import FRONTEND_OPS, converter_ops
    from explorer.tvm.llvm_host import host_llvm_cpu

    return CompilerFacts(host_llvm_cpu(), tuple(sorted(converter_ops() | FRONTEND_OPS)))


def _cpu_path() -> Path:
    return cache_dir() / "host-llvm-cpu.json"


def _ops_path() -> Path:
    return cache_dir() / f"onnx-ops-{tvm_version()}-2.json"  # -2: If included


def _read(path: Path, kind: type):
    """The JSON in ``path`` if it is a ``kind``, else None (missing or damaged: asked again)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, kind) else None


def _learn() -> CompilerFacts:
    """Ask TVM both questions in one compiler process, and keep both answers."""
    facts = in_compiler_process(_ask)
    known = _read(_cpu_path(), dict) or {}
    known[cpu_fingerprint()] = facts.llvm_cpu
    write_atomic(_cpu_path(), json.dumps(known, indent=1))
    write_atomic(_ops_path(), json.dumps(list(facts.onnx_ops)))
    return facts


def resolve_mcpu(mcpu: str | None = None) -> str:
    """``mcpu`` itself, or for ``None`` LLVM's name of this host's CPU
    (:func:`explorer.tvm.llvm_host.host_llvm_cpu`), cached per CPU fingerprint: finding it costs TVM's
    import once per machine."""
    if mcpu:
        return mcpu
    name = (_read(_cpu_path(), dict) or {}).get(cpu_fingerprint())
    return name if isinstance(name, str) else _learn().llvm_cpu


def importer_ops() -> frozenset[str]:
    """The operators TVM's ONNX importer handles, cached per TVM version."""
    ops = _read(_ops_path(), list)
    return frozenset(ops if ops is not None else _learn().onnx_ops)
