"""Compiling a model under a strategy with TVM (TVM-specific).

The flow for one (model, strategy, TIR flavour):

1. import the static ONNX model into Relax;
2. strategy passes on the graph, in a fixed order: folding inference-mode BatchNorm into the
   preceding conv, layout (ConvertLayout), decomposition of the remaining inference-mode ops, LegalizeOps, fusion (FuseOps + FuseTIR), then the schedule of the flavour:
   DLight's default GPU rules for ``cuda``; for ``generic`` (CPU and analysis-only targets) a rule
   that inlines element-wise blocks the way TVM schedules do, so fused intermediates are not
   materialised;
3. Relax VM lowering (including TVM's static memory planner);
4. TIR lowering and, where the target builds, code generation. The lowered TIR that the analysis
   reads is captured by a pass instrument during that same build, so nothing is lowered twice.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from collections import Counter

import numpy as np
import onnx
import tvm
from tvm import relax, s_tir
from tvm.ir.instrument import pass_instrument
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline

from .errors import ExplorerError
from .quantize import precision_pass
from .strategies import Strategy

#: The pass after which the analysed TIR is captured.
CAPTURE_AFTER = "tirx.FlattenBuffer"


def unsupported_ops(model: onnx.ModelProto) -> Counter:
    """Operators of ``model`` that TVM's ONNX importer has no converter for, with node counts."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    return Counter(n.op_type for n in model.graph.node if n.op_type not in known)


def import_onnx(model: onnx.ModelProto) -> tvm.IRModule:
    """Import a static ONNX model into Relax; raise a one-line :class:`ExplorerError` if TVM cannot."""
    from tvm.relax.frontend.onnx import from_onnx

    missing = unsupported_ops(model)
    if missing:
        listed = ", ".join(f"{op} ({n} node{'s' if n > 1 else ''})" for op, n in missing.most_common())
        raise ExplorerError(f"TVM's ONNX importer does not support: {listed}")
    try:
        return from_onnx(model, keep_params_in_input=False)
    except Exception as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ExplorerError(f"TVM could not import the model: {first}") from None


def host_target() -> dict:
    """LLVM target for this host's CPU."""
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}


def cuda_target(arch: str) -> dict:
    """CUDA target for ``arch`` (e.g. ``sm_90``) with an LLVM host."""
    return {"kind": "cuda", "arch": arch or "sm_90", "host": {"kind": "llvm"}}


class InlineElementwise(ScheduleRule):
    """Inline injective blocks into their neighbours and place epilogues after a reduction inside
    the reduction's spatial loops, so a fused kernel keeps no full-size intermediate buffer."""

    def apply(self, func, target, _):
        if not isinstance(func, tvm.tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        remaining = try_inline(sch, infos)
        reductions = [b for b in remaining if b.is_reduction()]
        for info in remaining:
            if info.is_reduction():
                continue
            producers = [p for p in sch.get_producers(info.block_rv)]
            for red in reductions:
                if any(sch.get(p).same_as(sch.get(red.block_rv)) for p in producers):
                    kinds = red.dom_kind()
                    n_spatial = len(kinds) - len(kinds.lstrip("S"))
                    loops = sch.get_loops(red.block_rv)
                    if 0 < n_spatial <= len(loops):
                        try:
                            sch.reverse_compute_at(info.block_rv, loops[n_spatial - 1], preserve_unit_loops=True)
                        except Exception:  # not placeable (e.g. a transposing epilogue): stays separate
                            pass
                    break
        return sch


@dataclasses.dataclass
class Tensor:
    """A tensor in the Relax graph."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    origin: str  # "input", "const", "kernel" (written by a kernel call), "view"
    storage: int = -1  # identity of the memory it occupies: a view shares its source's storage
    model_output: bool = False  # returned by ``main``

    @property
    def nbytes(self) -> int:
        size = 1
        for d in self.shape:
            size *= d
        return int(size * tvm.DataType(self.dtype).bits // 8)


@dataclasses.dataclass
class CallSite:
    """One kernel launch in ``main``."""

    index: int
    kernel: str
    args: list[Tensor]      # PrimFunc parameters in order: inputs then outputs
    n_inputs: int
    members: list[str]      # unfused operator kernels this call covers (itself when not fused)
    eliminated: list[Tensor]  # intermediates of those members that no longer exist as tensors


@dataclasses.dataclass
class Lowered:
    """Everything the rest of the explorer needs from one compilation."""

    calls: list[CallSite]
    tir: tvm.IRModule               # lowered TIR, captured after CAPTURE_AFTER
    planned_bytes: int              # storage allocated by the static memory planner
    constant_bytes: int
    executable: object = None       # relax VMExecutable where built
    cuda_source: str = ""
    tuning: dict = dataclasses.field(default_factory=dict)  # what tuning did (explorer.tuning)


def _name(var) -> str:
    return getattr(var, "name_hint", None) or var.name


def _sinfo_tensors(sinfo, name: str, origin: str) -> list[Tensor]:
    if isinstance(sinfo, relax.TupleType):
        out = []
        for i, f in enumerate(sinfo.fields):
            out += _sinfo_tensors(f, f"{name}.{i}", origin)
        return out
    shape = tuple(int(d) for d in sinfo.shape.values) if sinfo.shape is not None else ()
    return [Tensor(name, shape, str(sinfo.dtype), origin)]


def _bindings(func: relax.Function):
    for block in func.body.blocks:
        yield from block.bindings


def _group_members(mod: tvm.IRModule) -> dict[str, tuple[list[str], list[Tensor]]]:
    """After FuseOps: for each fused group (by function name, which FuseTIR gives the fused kernel),
    the operator kernels it contains and the intermediate tensors inside it."""
    out = {}
    for binding in _bindings(mod["main"]):
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.GlobalVar):
            continue
        group = mod[call.op]
        if not isinstance(group, relax.Function):
            continue
        members, inner = [], []
        result = group.body.body
        for b in _bindings(group):
            if isinstance(b.value, relax.Call) and b.value.op.same_as(tvm.ir.Op.get("relax.call_tir")):
                members.append(_name(b.value.args[0]))
                if not b.var.same_as(result):
                    inner += _sinfo_tensors(b.var.ty, _name(b.var), "kernel")
        out[_name(call.op)] = (members, inner)
    return out


def graph_passes(strategy: Strategy, flavour: str, target: dict,
                 act_scales: tuple[float, ...] | None = None) -> tuple[tvm.transform.Pass, dict]:
    """The strategy's Relax passes, and a dict that receives the fusion groups when the pass runs.
    ``act_scales`` are the calibrated activation scales an ``int8`` strategy needs."""
    groups: dict = {}

    @tvm.transform.module_pass(opt_level=0, name="explorer.RecordFusionGroups")
    def record_groups(mod, _ctx):
        groups.update(_group_members(mod))
        return mod

    # inference-mode BatchNorm after a conv folds into its weights, as every deployment build does
    # a pre-quantized (QDQ) model runs its quantized conv2d/matmul in int8, whatever the strategy;
    # this must see the weights' dequantize before FoldConstant folds it away
    passes = [precision_pass("qdq"), relax.transform.FoldBatchnormToConv2D(), relax.transform.FoldConstant()]
    # precision before layout: ToMixedPrecision needs the Relax ops BatchNorm folding left behind
    if strategy.precision == "fp16":
        passes += [relax.transform.ConvertToDataflow(), relax.transform.ToMixedPrecision(out_dtype="float32"),
                   relax.transform.FoldConstant()]
    elif strategy.precision in ("bf16", "int8"):
        passes += [precision_pass(strategy.precision, act_scales), relax.transform.FoldConstant()]
    if strategy.layout == "nhwc":
        passes += [relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
                   relax.transform.FoldConstant()]
    passes += [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
               relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
               relax.transform.FoldConstant()]
    if strategy.fusion == "tvm":
        passes += [relax.transform.FuseOps(), record_groups, relax.transform.FuseTIR()]
    passes += [relax.transform.DeadCodeElimination()]
    if flavour == "cuda":
        # DLight's Matmul rule tensorizes int8 with wmma fragments that TVM 0.27 then fails to lower
        # (fragment_info_ check); int8 kernels take the other rules
        matmul = [] if strategy.precision == "int8" else [dl.gpu.Matmul()]
        passes += [dl.ApplyDefaultSchedule(*matmul, dl.gpu.GEMV(), dl.gpu.Reduction(),
                                           dl.gpu.GeneralReduction(), dl.gpu.Fallback())]
    elif not strategy.tuned:  # tuned kernels get MetaSchedule's schedules (explorer.tuning)
        passes += [dl.ApplyDefaultSchedule(InlineElementwise())]
    passes += [relax.transform.RewriteDataflowReshape()]
    return tvm.transform.Sequential(passes, name="explorer.strategy"), groups


def call_sites(mod: tvm.IRModule, groups: dict) -> tuple[list[CallSite], int]:
    """Kernel launches of ``main`` with their argument tensors, and the bytes of all constants.

    Every tensor gets a ``storage`` id; views (reshapes) share their source's, so the sequence of
    calls says which launches touch the same memory (used for reuse between kernels)."""
    main = mod["main"]
    env: dict = {}
    storages = iter(range(1 << 30))

    def fresh(tensors: list[Tensor]) -> list[Tensor]:
        for t in tensors:
            t.storage = next(storages)
        return tensors

    for p in main.params:
        env[p] = fresh(_sinfo_tensors(p.ty, _name(p), "input"))
    call_tir = tvm.ir.Op.get("relax.call_tir")
    consts: dict = {}
    calls = []

    def tensor_of(expr) -> list[Tensor]:
        if isinstance(expr, tvm.ir.expr.Constant):
            if expr not in consts:
                consts[expr] = fresh(_sinfo_tensors(expr.ty, f"const{len(consts)}", "const"))[0]
            return [consts[expr]]
        if isinstance(expr, relax.Tuple):
            return [t for f in expr.fields for t in tensor_of(f)]
        if expr in env:
            found = env[expr]
            return found if isinstance(found, list) else [found]
        return fresh(_sinfo_tensors(expr.ty, getattr(expr, "name_hint", "?"), "view"))

    for binding in _bindings(main):
        value, var = binding.value, binding.var
        if isinstance(value, relax.Call) and value.op.same_as(call_tir):
            kernel = _name(value.args[0])
            ins = tensor_of(value.args[1])
            outs = fresh(_sinfo_tensors(var.ty, _name(var), "kernel"))
            env[var] = outs if len(outs) > 1 else outs[0]
            members, eliminated = groups.get(kernel, ([kernel], []))
            calls.append(CallSite(len(calls), kernel, ins + outs, len(ins), members, eliminated))
        elif isinstance(value, relax.TupleGetItem) and value.tuple_value in env:
            found = env[value.tuple_value]
            env[var] = found[value.index] if isinstance(found, list) else found
        elif isinstance(value, relax.Call) and value.args and value.args[0] in env:
            # views (reshape) and other non-kernel ops: the result aliases the input's storage
            src = env[value.args[0]]
            src = src[0] if isinstance(src, list) else src
            env[var] = Tensor(_name(var), _sinfo_tensors(var.ty, _name(var), "view")[0].shape,
                              src.dtype, src.origin, src.storage)
        elif isinstance(value, relax.Var) and value in env:
            env[var] = env[value]
    returned = {t.storage for t in tensor_of(main.body.body)} if isinstance(main.body, relax.SeqExpr) else set()
    for call in calls:
        for t in call.args[call.n_inputs:]:
            t.model_output = t.storage in returned
    return calls, sum(t.nbytes for t in consts.values())


_VM_LOWERING = (
    "RewriteDataflowReshape", "ToNonDataflow", "RemovePurityChecking", "CallTIRRewrite",
    "StaticPlanBlockMemory", "LowerAllocTensor", "KillAfterLastUse", "LowerRuntimeBuiltin",
    "ComputePrimValue", "VMShapeLower", "AttachGlobalSymbol",
)


def vm_lower(mod: tvm.IRModule) -> tvm.IRModule:
    """TVM's Relax-to-VM lowering (the tail of its default build pipeline)."""
    return tvm.transform.Sequential([getattr(relax.transform, name)() for name in _VM_LOWERING])(mod)


def assign_planned_storage(calls: list[CallSite], lowered: tvm.IRModule) -> None:
    """Give every kernel-written tensor the storage TVM's static memory planner put it in, so that
    tensors sharing memory (one dead, one new) share a ``storage`` id. Kernel calls in the lowered
    ``main`` come in the same order as ``calls``; views keep their source's storage."""
    alloc_storage = tvm.ir.Op.get("relax.vm.alloc_storage")
    alloc_tensor = tvm.ir.Op.get("relax.vm.alloc_tensor")
    token: dict = {}
    launches = []
    for b in _bindings(lowered["main"]):
        v = b.value
        if not isinstance(v, relax.Call):
            continue
        if v.op.same_as(alloc_storage):
            token[b.var] = len(token)
        elif v.op.same_as(alloc_tensor) and v.args[0] in token:
            token[b.var] = token[v.args[0]]
        elif isinstance(v.op, tvm.ir.GlobalVar) and isinstance(lowered[v.op], tvm.tirx.PrimFunc):
            launches.append([token.get(a) for a in v.args])
        elif v.args and isinstance(v.args[0], relax.Var) and v.args[0] in token:
            token[b.var] = token[v.args[0]]  # a view (reshape) of planned memory
    if len(launches) != len(calls):
        return  # not the expected one-to-one order: keep one storage per tensor
    remap: dict[int, int] = {}
    base = 1 << 40  # planner tokens, apart from the per-tensor ids of inputs and constants
    for call, tokens in zip(calls, launches):
        for t, tok in zip(call.args, tokens):
            if tok is not None and t.origin in ("kernel", "view"):
                remap.setdefault(t.storage, base + tok)
    for call in calls:
        for t in call.args + call.eliminated:
            if t.storage in remap:
                t.storage = remap[t.storage]


def planned_storage_bytes(lowered: tvm.IRModule) -> int:
    """Bytes of storage the static memory planner allocates in ``main`` (peak activation memory)."""
    alloc = tvm.ir.Op.get("relax.vm.alloc_storage")
    total = 0
    for b in _bindings(lowered["main"]):
        v = b.value
        if isinstance(v, relax.Call) and v.op.same_as(alloc):
            size = 1
            for d in v.args[0].values:
                size *= int(d)
            total += size
    return total


@pass_instrument
class _CaptureTIR:
    def __init__(self):
        self.mod = None

    def run_after_pass(self, mod, info):
        if info.name == CAPTURE_AFTER:
            self.mod = mod if self.mod is None else tvm.IRModule({**dict(self.mod.functions), **dict(mod.functions)})


@functools.lru_cache(maxsize=4)
def _imported(path: str, sha256: str) -> tvm.IRModule:
    return import_onnx(onnx.load(path))


def compile_variant(path: str, sha256: str, strategy: Strategy, flavour: str, target: dict,
                    build: bool, act_scales: tuple[float, ...] | None = None,
                    tuning_dir: str | None = None, progress: bool = False) -> Lowered:
    """Compile one variant: strategy passes, VM lowering and TIR lowering, plus code generation
    when ``build``. ``flavour`` is ``generic`` (llvm-scheduled TIR) or ``cuda`` (DLight GPU TIR).
    ``act_scales``: calibrated activation scales for an ``int8`` strategy. A tuned strategy tunes
    (or reuses the records in ``tuning_dir``) on a generic flavour; see :mod:`explorer.tuning`."""
    mod = _imported(path, sha256)
    tvm_target = tvm.target.Target(target)
    passes, groups = graph_passes(strategy, flavour, target, act_scales)
    with tvm_target:
        mod = passes(mod)
    tuning_info: dict = {}
    if strategy.tuned and flavour == "generic":
        from . import tuning

        work = tuning.records_dir(target, tuning_dir)
        tasks = tuning.kernel_tasks(mod, target)
        stats = tuning.tune(tasks, strategy.trials, work, progress)
        mod, choice = tuning.apply(mod, tasks, target, work, strategy.pick, progress)
        tuning_info = {**dataclasses.asdict(stats), "records": str(work), "schedules": choice.table,
                       "candidates": choice.candidates}
    calls, constant_bytes = call_sites(mod, groups)
    lowered = vm_lower(mod)
    assign_planned_storage(calls, lowered)
    capture = _CaptureTIR()
    executable = None
    with tvm.transform.PassContext(opt_level=3, instruments=[capture]):
        if build:
            executable = tvm.compile(lowered, tvm_target, relax_pipeline=None)
        else:
            tir = relax.vm_build._filter_tir(lowered)
            if tir is not None:
                tir = tvm.tirx.transform.BindTarget(tvm_target.with_host(tvm_target.host or tvm_target))(tir)
                pipeline = tvm.tirx.get_default_tir_pipeline(tvm_target)[0]
                pipeline(tir)
    if capture.mod is None:
        raise RuntimeError(f"the TIR pipeline never ran {CAPTURE_AFTER}; nothing to analyse")
    source = ""
    if executable is not None and flavour == "cuda":
        source = "\n".join(m.inspect_source() for m in _modules(executable.mod) if m.kind == "cuda")
    return Lowered(calls, capture.mod, planned_storage_bytes(lowered), constant_bytes, executable, source, tuning_info)


def _modules(mod):
    """A runtime module and everything it imports, depth first (the CUDA module sits inside the host's)."""
    yield mod
    for m in mod.imports:
        yield from _modules(m)


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


def time_cpu(executable, inputs: list[np.ndarray], repeat: int = 5, min_repeat_s: float = 0.2) -> list[float]:
    """Seconds per inference of a built CPU variant: TVM's time evaluator after one untimed warm-up,
    ``repeat`` timed repeats, each the mean of as many inferences as last ``min_repeat_s``."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(x) for x in inputs]
    vm["main"](*args)
    result = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat,
                               min_repeat_ms=int(min_repeat_s * 1e3))(*args)
    return [float(x) for x in result.results]


def run_cpu(executable, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run a built CPU variant once; return its outputs as numpy arrays."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]
