"""LLVM's name for this host's CPU: what the explorer builds CPU variants for by default.

:func:`host_llvm_cpu` asks LLVM (in a process with TVM's compiler);
:func:`explorer.tvm.compiler_facts.resolve_mcpu` is what the rest of the explorer calls from any process:
it caches the answer per CPU, so only the first call on a machine pays for TVM's import. This module imports tvm only inside :func:`host_llvm_cpu`.
"""

from __future__ import annotations

from cost_models.host import host_cpu

#: Instruction-set extensions the kernels use, by LLVM's feature names: the host's CPU name must not
#: leave out one that the host has.
KEY_FEATURES = ("fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni", "avx512bf16",
                "avx512fp16", "amx-tile", "amx-int8", "amx-bf16", "amx-fp16")


def _flag(name: str) -> str:
    return name.replace("_", "").replace("-", "")


def _host_flags() -> set[str]:
    """This host's CPU flags (:func:`cost_models.host.host_cpu`), spelled without ``_`` or ``-``."""
    return {_flag(f) for f in host_cpu().flags}


def _key_features(mcpu: str) -> frozenset[str]:
    import tvm
    from tvm.target import codegen

    features = set(codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": mcpu})))
    return frozenset(f for f in KEY_FEATURES if f in features)


def host_llvm_cpu() -> str:
    """LLVM's name of this host's CPU (e.g. ``znver4``, ``cascadelake``), or where that name lacks an
    extension of :data:`KEY_FEATURES` that the host's flags show, the CPU LLVM knows with exactly the
    host's extensions (the fewest features, then by name). A VM may report a model number that LLVM
    maps to an older core: this project's Granite Rapids sandbox reports model 167, which LLVM names
    ``rocketlake`` (no AVX512-FP16, BF16 or AMX), and its fp16 kernels then ran 2.2x slower,
    converting around every operation."""
    import tvm
    from tvm.target import codegen

    name = str(codegen.llvm_get_system_cpu())
    flags = _host_flags()
    host = frozenset(f for f in KEY_FEATURES if _flag(f) in flags)
    if not flags or host <= _key_features(name):
        return name
    archlist = codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm"}))
    matches = [str(cpu) for cpu in archlist if _key_features(str(cpu)) == host]
    if not matches:
        return name

    def size(cpu: str) -> int:
        return len(codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu})))

    return min(matches, key=lambda cpu: (size(cpu), cpu))
