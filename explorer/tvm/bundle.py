"""Libraries for a measurement bundle (:mod:`explorer.measure`): one variant compiled as a sweep
compiles it, its large constants lifted out of the library where asked, and exported for a machine
that has TVM's runtime library only.

- **CUDA**: TVM 0.27's CUDA code generator keeps the kernels as CUDA source when this process has no
  CUDA runtime (no ``libcuda.so.1``), and a library exported from it would compile that source when
  it is loaded (through a Python callback of TVM's compiler, with nvcc or NVRTC on the GPU machine).
  Here the source is compiled once by nvcc into a cubin for the target's arch, and the exported
  library carries the cubin instead: :func:`pack_with_cubin` rewrites the CUDA module's entry of the
  serialized module tree (format ``cuda`` -> ``cubin``, the same function table), which TVM's CUDA
  runtime (``libtvm_runtime_cuda``) loads with ``cuModuleLoadData`` and compiles nothing.
- **Host code** for generic x86-64 (``-mtriple=x86_64-linux-gnu -mcpu=x86-64``), so it runs on any
  x86-64 machine.
- **Lifted constants**: a model whose weights would not fit the bundle is built with every constant of
  at least ``lift_min_bytes`` as an extra parameter of ``main`` (after the model's inputs, in the order
  returned). The constants are lifted after the strategy's passes, so the kernels are the ones a sweep
  analyses; only where their weights come from changes. Each lifted constant is described (shape,
  dtype, statistics, content hash) so that the bundle's runner can regenerate it: exactly, where the
  hash is that of a zoo weight draw the parent passed in ``draws``, else as seeded numbers with the
  same statistics.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from explorer.store.cache import atomic_path
from explorer.tvm.codegen import cuda_source, runtime_modules
from explorer.tvm.library_format import LibraryRequest, cubin_payload, parse_library_blob, write_library_blob
from explorer.tvm.relax_ir import name_of

#: A kernel's declaration in generated CUDA source (its name is group 1).
KERNEL_DECL = re.compile(r'extern "C" __global__\s+void\s+(?:__launch_bounds__\(\d+\)\s+)?(\w+)\s*\(')

#: Host code for any x86-64 machine.
GENERIC_X86_64 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"}


def cuda_target(arch: str) -> dict:
    """The CUDA target for ``arch`` with generic x86-64 host code."""
    return {"kind": "cuda", "arch": arch, "host": dict(GENERIC_X86_64)}


def pack_with_cubin(cubin: bytes, source: str):
    """An ``fpack_imports`` for ``export_library``: TVM's C packing of the module tree with the CUDA
    module's source replaced by ``cubin``."""
    from tvm.runtime import _ffi_api

    def pack(mod, is_system_lib, prefix, workspace_dir):
        text = _ffi_api.ModulePackImportsToC(mod, is_system_lib, prefix)
        head, _, rest = text.partition("__tvm_ffi__library_bin[")
        start = rest.index("] = {") + len("] = {")
        end = rest.index("};", start)
        blob = bytes(int(x, 16) for x in rest[start:end].replace("\n", "").split(",") if x.strip())
        vectors, modules = parse_library_blob(blob)
        cudas = [i for i, (kind, _) in enumerate(modules) if kind == "cuda"]
        if len(cudas) != 1:
            raise ValueError(f"expected one CUDA module in the library, found {len(cudas)}")
        modules[cudas[0]] = ("cuda", cubin_payload(modules[cudas[0]][1], source, cubin))
        new = write_library_blob(vectors, modules)
        rows = ",\n".join(",".join(f"0x{b:02x}" for b in new[i:i + 32]) for i in range(0, len(new), 32))
        path = os.path.join(workspace_dir, f"{prefix}devc.c")
        with open(path, "w") as f:
            f.write(f"{head}__tvm_ffi__library_bin[{len(new)}] = {{\n{rows}\n}};{rest[end + 2:]}")
        return path

    return pack


def compile_cubin(source: str, arch: str) -> bytes:
    """``source`` compiled by nvcc into a cubin for ``arch``."""
    from tvm.support import nvcc

    with tvm.target.Target(cuda_target(arch)):
        return bytes(nvcc.compile_cuda(source, "cubin", arch=arch, compiler="nvcc"))


@relax.expr_functor.mutator
class _LiftConstants(relax.PyExprMutator):
    """Replaces every constant of at least ``min_bytes`` with a new variable (one per constant)."""

    def __init__(self, mod, min_bytes: int):
        super().__init__(mod)
        self.min_bytes = min_bytes
        self.lifted: list[tuple[relax.Var, object]] = []
        self.seen: dict = {}

    def visit_generic_const_(self, const):
        array = const.value
        nbytes = int(np.prod(array.shape, dtype=np.int64)) * np.dtype(str(array.dtype)).itemsize if hasattr(array, "shape") else 0
        if nbytes < self.min_bytes:
            return const
        if const not in self.seen:
            var = relax.Var(f"w{len(self.lifted)}", const.ty)
            self.seen[const] = var
            self.lifted.append((var, const))
        return self.seen[const]


def constant_bytes(mod: tvm.IRModule) -> int:
    """Bytes of the constants ``main`` uses (each once)."""
    seen, total = set(), 0

    def visit(expr):
        nonlocal total
        if isinstance(expr, tvm.ir.expr.GenericConst) and expr not in seen and hasattr(expr.value, "shape"):
            seen.add(expr)
            total += int(np.prod(expr.value.shape, dtype=np.int64)) * np.dtype(str(expr.value.dtype)).itemsize

    relax.analysis.post_order_visit(mod["main"], visit)
    return total


def _describe(name: str, array: np.ndarray, draws: dict | None) -> dict:
    """What the runner needs to regenerate a lifted constant."""
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    spec = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype), "nbytes": int(array.nbytes),
            "sha256": digest}
    found = (draws or {}).get(digest)
    if found is not None:
        spec.update(kind="zoo", draw=int(found[0]), transform=found[1])
        return spec
    values = array.astype(np.float64) if array.dtype.kind in "fiub" else np.zeros(1)
    if array.dtype.kind == "f":
        spec.update(kind="synthetic", mean=float(values.mean()), std=float(values.std()))
    else:
        spec.update(kind="synthetic", low=int(values.min()), high=int(values.max()))
    return spec


def lift_constants(mod: tvm.IRModule, min_bytes: int, draws: dict | None) -> tuple[tvm.IRModule, list[dict]]:
    """``mod`` with the constants of ``main`` of at least ``min_bytes`` as extra parameters (after the
    inputs), and a description of each (:func:`_describe`)."""
    main = mod["main"]
    lifter = _LiftConstants(mod, min_bytes)
    body = lifter.visit_expr(main.body)
    if not lifter.lifted:
        return mod, []
    func = relax.Function(list(main.params) + [v for v, _ in lifter.lifted], body, main.ret_ty, main.is_pure, main.attrs)
    mod = mod.clone()
    mod["main"] = func
    return mod, [_describe(name_of(v), c.value.numpy(), draws) for v, c in lifter.lifted]


def build_library(req: LibraryRequest) -> dict:
    """Compile ``req``'s variant and export it to ``req.out``; a dict of what was built (plain data)."""
    from explorer.tvm.compile import lower_tir, vm_lower
    from explorer.tvm.frontend import imported
    from explorer.tvm.pipeline import PipelineContext, dot_instructions, schedules_by_tuning, strategy_passes

    start = time.perf_counter()
    cuda = req.lowering == "cuda"
    target = tvm.target.Target(cuda_target(req.arch) if cuda else dict(GENERIC_X86_64))
    ctx = PipelineContext(req.strategy, req.lowering, req.act_scales, **dot_instructions(req.lowering, target))
    sparsity = getattr(req.strategy, "sparsity", "none")  # the weights a sparsity strategy prunes, as a sweep does
    mod = imported(req.model_path, req.model_sha256) if sparsity == "none" else \
        imported(req.model_path, req.model_sha256, sparsity)
    with target:
        mod = strategy_passes(ctx)(mod)
    if schedules_by_tuning(ctx):
        raise RuntimeError("tuned CPU strategies are not bundled (their MetaSchedule records are this CPU's)")
    total_constants = constant_bytes(mod)
    params: list[dict] = []
    if req.inline_limit is not None and total_constants > req.inline_limit:
        mod, params = lift_constants(mod, req.lift_min_bytes, req.draws)
    _, executable = lower_tir(vm_lower(mod), target, True)
    compile_s = time.perf_counter() - start
    out = Path(req.out)
    kernels: list[str] = []
    cubin_bytes, nvcc_s = 0, 0.0
    if cuda:
        source = cuda_source(executable)
        if not source.strip():
            raise RuntimeError("the CUDA build has no device kernels (everything became host code)")
        start = time.perf_counter()
        cubin = compile_cubin(source, req.arch)
        nvcc_s = time.perf_counter() - start
        cubin_bytes = len(cubin)
        kernels = sorted(set(KERNEL_DECL.findall(source)))
        with atomic_path(out) as tmp:
            executable.export_library(str(tmp), fpack_imports=pack_with_cubin(cubin, source))
    else:
        with atomic_path(out) as tmp:
            executable.export_library(str(tmp))
    return {"library": str(out), "library_bytes": out.stat().st_size, "cubin_bytes": cubin_bytes,
            "device_kernels": kernels, "params": params, "constant_bytes": total_constants,
            "lifted_bytes": sum(p["nbytes"] for p in params), "compile_s": round(compile_s, 3),
            "nvcc_s": round(nvcc_s, 3), "target": str(target), "host": dict(GENERIC_X86_64),
            "modules": [m.kind for m in runtime_modules(executable.mod)]}
