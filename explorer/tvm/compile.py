"""Compiling one variant: strategy passes, VM lowering, TIR lowering and, where asked, code generation.

The lowered TIR that the analysis reads is captured by a pass instrument during that same build
(after ``CAPTURE_AFTER``), so nothing is lowered twice. Besides the TIR, a compile reports the
kernel calls of ``main`` with their tensors, and the storage TVM's static memory planner gave
each tensor (reuse between kernels follows it).
"""

from __future__ import annotations

import dataclasses

import tvm
from tvm import relax
from tvm.ir.instrument import pass_instrument

from explorer.core.strategies import Strategy
from explorer.tvm import tir_pipeline
from explorer.tvm.frontend import devices as shard_devices
from explorer.tvm.frontend import imported, weight_params
from explorer.tvm.passes.pruning import density
from explorer.tvm.pipeline import PipelineContext, dot_instructions, schedules_by_tuning, strategy_passes
from explorer.tvm.relax_ir import bindings, name_of, sinfo_tensors
from explorer.workload.layers import repeat_layer
from explorer.workload.table import CallSite, Tensor

#: The pass after which the analysed TIR is captured.
CAPTURE_AFTER = "tirx.FlattenBuffer"


@dataclasses.dataclass
class Compiled:
    """One compilation, with the TVM objects the analysis and the runtime need."""

    calls: list[CallSite]
    tir: tvm.IRModule               # lowered TIR, captured after CAPTURE_AFTER
    planned_bytes: int              # storage allocated by the static memory planner
    constant_bytes: int
    executable: object = None       # relax VMExecutable where built
    tuning: object = None           # explorer.core.variant.TuningOutcome of a tuned strategy
    devices: int = 1                # the devices the model is one shard of (tensor parallelism)


#: The runtime functions TVM's legalization of ``R.ccl.allreduce`` and ``R.ccl.allgather`` calls, by the
#: collective each performs (see :mod:`explorer.tvm.frontend`).
COLLECTIVES = {"runtime.disco.allreduce": "all_reduce", "runtime.disco.allgather": "all_gather"}


def collective_of(func) -> str:
    """The collective (:data:`COLLECTIVES`) a ``call_dps_packed``'s function performs, or ''."""
    return COLLECTIVES.get(getattr(func, "global_symbol", ""), "")


def call_sites(mod: tvm.IRModule, groups: dict, weights: frozenset[str] = frozenset()) -> tuple[list[CallSite], int]:
    """Kernel launches of ``main`` with their argument tensors, and the bytes of all constants (weight
    parameters, named in ``weights``, count as constants: see :mod:`explorer.tvm.passes.weight_params`).

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
        env[p] = fresh(sinfo_tensors(p.ty, name_of(p), "const" if name_of(p) in weights else "input"))
    call_tir = tvm.ir.Op.get("relax.call_tir")
    call_tir_inplace = tvm.ir.Op.get("relax.call_tir_inplace")
    call_packed = tvm.ir.Op.get("relax.call_dps_packed")
    consts: dict = {}
    calls = []

    def tensor_of(expr) -> list[Tensor]:
        if isinstance(expr, tvm.ir.expr.Constant):
            if expr not in consts:
                consts[expr] = fresh(sinfo_tensors(expr.ty, f"const{len(consts)}", "const"))[0]
                consts[expr].density = density(expr.value.numpy())
            return [consts[expr]]
        if isinstance(expr, relax.Tuple):
            return [t for f in expr.fields for t in tensor_of(f)]
        if expr in env:
            found = env[expr]
            return found if isinstance(found, list) else [found]
        return fresh(sinfo_tensors(expr.ty, getattr(expr, "name_hint", "?"), "view"))

    for binding in bindings(main):
        value, var = binding.value, binding.var
        if isinstance(value, relax.Call) and value.op.same_as(call_tir):
            kernel = name_of(value.args[0])
            ins = tensor_of(value.args[1])
            outs = fresh(sinfo_tensors(var.ty, name_of(var), "kernel"))
            env[var] = outs if len(outs) > 1 else outs[0]
            members, eliminated = groups.get(kernel, ([kernel], []))
            calls.append(CallSite(len(calls), kernel, ins + outs, len(ins), members, eliminated))
        elif isinstance(value, relax.Call) and value.op.same_as(call_tir_inplace):
            # the kernel writes some of its arguments (a KV cache's new rows): its results are those tensors
            kernel = name_of(value.args[0])
            ins = tensor_of(value.args[1])
            written = tuple(int(i) for i in value.attrs.inplace_indices)
            outs = [ins[i] for i in written]
            env[var] = outs if len(outs) > 1 else outs[0]
            members, eliminated = groups.get(kernel, ([kernel], []))
            calls.append(CallSite(len(calls), kernel, ins, len(ins), members, eliminated, in_place=written))
        elif isinstance(value, relax.Call) and value.op.same_as(call_packed) and collective_of(value.args[0]):
            kind = collective_of(value.args[0])
            ins = tensor_of(value.args[1].fields[0])  # the tensor; the rest are the reduction's code and group
            outs = fresh(sinfo_tensors(var.ty, name_of(var), "kernel"))
            env[var] = outs[0]
            calls.append(CallSite(len(calls), kind, ins + outs, len(ins), [kind], [], collective=kind))
        elif isinstance(value, relax.TupleGetItem) and value.tuple_value in env:
            found = env[value.tuple_value]
            env[var] = found[value.index] if isinstance(found, list) else found
        elif isinstance(value, relax.Call) and value.args and value.args[0] in env:
            # views (reshape) and other non-kernel ops: the result aliases the input's storage
            src = env[value.args[0]]
            src = src[0] if isinstance(src, list) else src
            env[var] = Tensor(name_of(var), sinfo_tensors(var.ty, name_of(var), "view")[0].shape,
                              src.dtype, src.origin, src.storage)
        elif isinstance(value, relax.Var) and value in env:
            env[var] = env[value]
    returned = {t.storage for t in tensor_of(main.body.body)} if isinstance(main.body, relax.SeqExpr) else set()
    for call in calls:
        for t in call.args[call.n_inputs:]:
            t.model_output = t.storage in returned
    held = sum(t.nbytes for p in main.params if name_of(p) in weights for t in env[p])
    return calls, sum(t.nbytes for t in consts.values()) + held


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
    for b in bindings(lowered["main"]):
        v = b.value
        if not isinstance(v, relax.Call):
            continue
        if v.op.same_as(alloc_storage):
            token[b.var] = len(token)
        elif v.op.same_as(alloc_tensor) and v.args[0] in token:
            token[b.var] = token[v.args[0]]
        elif (isinstance(v.op, tvm.ir.GlobalVar) and isinstance(lowered[v.op], tvm.tirx.PrimFunc)) or collective_of(v.op):
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
    for b in bindings(lowered["main"]):
        v = b.value
        if isinstance(v, relax.Call) and v.op.same_as(alloc):
            size = 1
            for d in v.args[0].values:
                size *= int(d)
            total += size
    return total


@pass_instrument
class CaptureTIR:
    """Keeps the module as it stands after ``CAPTURE_AFTER`` (merged over several pipeline runs)."""

    def __init__(self):
        self.mod = None

    def run_after_pass(self, mod, info):
        if info.name == CAPTURE_AFTER:
            self.mod = mod if self.mod is None else tvm.IRModule({**dict(self.mod.functions), **dict(mod.functions)})


def lower_tir(mod: tvm.IRModule, target: tvm.target.Target, build: bool):
    """Run TVM's TIR pipeline on a VM-lowered module (with code generation when ``build``); return
    ``(captured TIR, executable or None)``."""
    capture = CaptureTIR()
    executable = None
    # TVM's CSE runs before LowerWarpMemory and hoists a lane's offset out of the stores into the
    # tensor-core fragments, which LowerWarpMemory then cannot map to a lane (see passes/warp_memory.py);
    # the captured TIR is taken before CSE either way, and nvcc and LLVM eliminate common subexpressions
    config = {"tirx.disable_cse_tir": True} if target.kind.name in ("cuda", "rocm") else {}
    with tvm.transform.PassContext(opt_level=3, instruments=[capture], config=config):
        if build:
            executable = tvm.compile(mod, target, relax_pipeline=None, tir_pipeline=tir_pipeline.register())
        else:
            # TVM's private helper is the one way to take the TIR functions out of a Relax module
            tir = relax.vm_build._filter_tir(mod)
            if tir is not None:
                tir = tvm.tirx.transform.BindTarget(target.with_host(target.host or target))(tir)
                tvm.tirx.get_default_tir_pipeline(target)[0](tir)
    if capture.mod is None:
        raise RuntimeError(f"the TIR pipeline never ran {CAPTURE_AFTER}; nothing to analyse")
    return capture.mod, executable


def compile_variant(path: str, sha256: str, strategy: Strategy, lowering: str, target: dict, build: bool,
                    act_scales: tuple[float, ...] | None = None, tuning=None) -> Compiled:
    """Compile one variant: strategy passes, VM lowering and TIR lowering, plus code generation
    when ``build``. ``lowering`` is ``generic`` (llvm-scheduled TIR) or ``cuda`` (DLight GPU TIR).
    ``act_scales``: calibrated activation scales for an ``int8`` strategy. A tuned strategy on a
    generic lowering is scheduled by ``tuning`` (:class:`explorer.tvm.tuning.apply.TuningSetup`)."""
    mod = imported(path, sha256, strategy.sparsity)
    weights, repeats = weight_params(path, sha256)
    tvm_target = tvm.target.Target(target)
    ctx = PipelineContext(strategy, lowering, act_scales, **dot_instructions(lowering, tvm_target), weights=weights)
    with tvm_target:
        mod = strategy_passes(ctx)(mod)
    outcome = None
    if schedules_by_tuning(ctx):
        mod, outcome = tuning.schedule(mod, strategy)
    calls, constant_bytes = call_sites(mod, ctx.groups, weights)
    vm_mod = vm_lower(mod)
    assign_planned_storage(calls, vm_mod)
    if repeats is not None:
        calls, constant_bytes = repeat_layer(calls, *repeats, constant_bytes)
    tir, executable = lower_tir(vm_mod, tvm_target, build)
    return Compiled(calls, tir, planned_storage_bytes(vm_mod), constant_bytes, executable, outcome,
                    shard_devices(path, sha256))
