"""Strategy passes: one name -> factory map per strategy axis, composed into one ``Sequential``.

As in TVM's ``relax/pipeline.py``, each axis value names a factory of passes; a strategy is the
choice on every axis, and :func:`strategy_passes` composes them in a fixed order:

1. ``PREPARE``: a pre-quantized (QDQ) model's conv2d/matmul become int8 kernels whatever the
   strategy (this must see the weights' dequantize before FoldConstant folds it away), and
   inference-mode BatchNorm folds into the preceding conv, as every deployment build does;
2. ``PRECISION`` (before layout: ToMixedPrecision needs the ops BatchNorm folding left behind);
3. ``LAYOUT``;
   then, where the target has VNNI, int8 conv2d/matmul become the u8 x s8 kernels of
   :mod:`explorer.tvm.vnni` (after layout, so they are made in the layout chosen);
4. ``LEGALIZE``: on CPUs, constant float weights packed a vector of output channels at a time
   (:mod:`explorer.tvm.packed_weights`); decomposition of the remaining inference-mode ops,
   LegalizeOps, op patterns;
   then ``PRECISION_AFTER_LEGALIZE``: weight-only quantization (after the last FoldConstant, which
   would fold the dequantization of its packed weights back into float ones);
5. ``FUSION`` (a weight-only matmul's dequantization joins it by pattern before FuseOps);
6. ``SCHEDULE`` of the lowering (``generic``: CPU and analysis-only targets; ``cuda``), unless a
   tuned strategy schedules a generic lowering with MetaSchedule (``TUNING``, run after the
   ``Sequential`` by :mod:`explorer.tvm.compile`: TVM's pass infrastructure would turn the
   KeyboardInterrupt that stops tuning into a RuntimeError).

Adding an axis value is one entry in its map (and its name in :data:`explorer.strategies.AXES`,
which a test keeps equal to these maps' keys).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

import tvm
import tvm_ffi
from tvm import relax, s_tir
from tvm.ir.expr import Constant
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.s_tir.dlight.base.common_schedules import try_inline

from ..strategies import WEIGHT_ONLY, Strategy
from ..workload_table import Tensor
from .cpu_schedules import ParallelElementwise, SingleRowReduction, TiledReduction, VnniReduction
from .gpu_schedules import DecodeGEMV, Int8Reduction
from .packed_weights import packed_float_weights
from .precision import precision_pass
from .vnni import vnni_int8_kernels
from .weight_only import fuse_dequantize_matmul, weight_only_pass


@dataclasses.dataclass
class PipelineContext:
    """What the factories of one compile need, and what the passes report back."""

    strategy: Strategy
    lowering: str                                   # "generic" or "cuda"
    act_scales: tuple[float, ...] | None = None     # calibrated activation scales (int8)
    vnni: bool = False                              # the llvm target has VPDPBUSD (see explorer.tvm.vnni)
    groups: dict = dataclasses.field(default_factory=dict)  # fusion groups, filled by FuseOps' recorder


Factory = Callable[[PipelineContext], list]


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


def name_of(var) -> str:
    """The name of a Relax variable or global."""
    return getattr(var, "name_hint", None) or var.name


def sinfo_tensors(sinfo, name: str, origin: str) -> list[Tensor]:
    """The tensors of a Relax type (a tuple type gives one per field)."""
    if isinstance(sinfo, relax.TupleType):
        out = []
        for i, f in enumerate(sinfo.fields):
            out += sinfo_tensors(f, f"{name}.{i}", origin)
        return out
    shape = tuple(int(d) for d in sinfo.shape.values) if sinfo.shape is not None else ()
    return [Tensor(name, shape, str(sinfo.dtype), origin)]


def bindings(func: relax.Function):
    """Every binding of a Relax function, in order."""
    for block in func.body.blocks:
        yield from block.bindings


def _group_members(mod: tvm.IRModule) -> dict[str, tuple[list[str], list[Tensor]]]:
    """After FuseOps: for each fused group (by function name, which FuseTIR gives the fused kernel),
    the operator kernels it contains and the intermediate tensors inside it."""
    out = {}
    for binding in bindings(mod["main"]):
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.GlobalVar):
            continue
        group = mod[call.op]
        if not isinstance(group, relax.Function):
            continue
        members, inner = [], []
        result = group.body.body
        for b in bindings(group):
            if isinstance(b.value, relax.Call) and b.value.op.same_as(tvm.ir.Op.get("relax.call_tir")):
                members.append(name_of(b.value.args[0]))
                if not b.var.same_as(result):
                    inner += sinfo_tensors(b.var.ty, name_of(b.var), "kernel")
        out[name_of(call.op)] = (members, inner)
    return out


def _record_groups(ctx: PipelineContext) -> tvm.transform.Pass:
    @tvm.transform.module_pass(opt_level=0, name="explorer.RecordFusionGroups")
    def record(mod, _ctx):
        for name, (members, inner) in _group_members(mod).items():
            # a member fused by an earlier grouping (a dequantized matmul) stands for its own members
            expanded, nested = [], []
            for m in members:
                earlier = ctx.groups.pop(m, ([m], []))
                expanded += earlier[0]
                nested += earlier[1]
            ctx.groups[name] = (expanded, nested + inner)
        return mod

    return record


@relax.expr_functor.mutator
class _CallRewriter(relax.PyExprMutator):
    """Rewrites every call of one Relax operator with ``rewrite(call, mod)`` (None keeps the call)."""

    def __init__(self, mod: tvm.IRModule, op: str, rewrite):
        super().__init__(mod)
        self.op, self.rewrite = op, rewrite

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == self.op):
            return call
        rewritten = self.rewrite(call, self.builder_.get())
        return call if rewritten is None else rewritten


def _rewrite_calls(mod: tvm.IRModule, op: str, rewrite) -> tvm.IRModule:
    """``mod`` with every call of ``op`` in its Relax functions rewritten (see :class:`_CallRewriter`;
    a copy: a pass may be given the importer's cached module)."""
    mod = mod.clone()
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mod[gv] = _CallRewriter(mod, op, rewrite).visit_expr(func)
    return mod


def _non_negative_axes(call, _mod):
    if call.attrs.axis is None or all(int(a) >= 0 for a in call.attrs.axis):
        return None
    rank = call.args[0].ty.ndim
    return relax.op.squeeze(call.args[0], [int(a) % rank for a in call.attrs.axis])


@tvm.transform.module_pass(opt_level=0, name="explorer.NonNegativeSqueezeAxes")
def non_negative_squeeze_axes(mod, _ctx):
    """Rewrite ``squeeze`` axes counted from the end as axes counted from the front: TVM 0.27's
    ConvertLayout dies with ``std::bad_alloc`` on a negative squeeze axis."""
    return _rewrite_calls(mod, "relax.squeeze", _non_negative_axes)


def _max_min_of_clip(call, _mod):
    dtype = call.args[0].ty.dtype
    low, high = (relax.const(float(getattr(a.value, "value", a.value)), dtype) for a in call.args[1:3])
    return relax.op.minimum(relax.op.maximum(call.args[0], low), high)


@tvm.transform.module_pass(opt_level=0, name="explorer.ClipAsMaxMin")
def clip_as_max_min(mod, _ctx):
    """Rewrite ``clip(x, a, b)`` (bounds as PrimValues, e.g. TVM's HardSigmoid) as
    ``minimum(maximum(x, a), b)`` with constant bounds: ToMixedPrecision fails on a PrimValue
    argument (``Expected TensorType, but got T.int64``)."""
    return _rewrite_calls(mod, "relax.clip", _max_min_of_clip)


def _bound_kernel(func) -> tuple[str, object] | None:
    """``("maximum" | "minimum", bound)`` if the PrimFunc is one element-wise max or min of its first
    input with a one-element bound: ``bound`` is None for its second input, else the literal), or None."""
    if not isinstance(func, tvm.tirx.PrimFunc) or len(func.params) not in (2, 3):
        return None
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return None
    store = sch.get(blocks[0]).body
    value = getattr(store, "value", None)
    op = {"Max": "maximum", "Min": "minimum"}.get(type(value).__name__)
    x, bound = (getattr(value, "a", None), getattr(value, "b", None))
    if op is None or type(x).__name__ != "TensorLoad" or not x.source.same_as(func.params[0]) \
            or not tvm_ffi.structural_equal(list(x.indices), list(store.indices)) \
            or list(func.params[0].shape) != list(store.buffer.shape):
        return None
    if len(func.params) == 3 and type(bound).__name__ == "TensorLoad" and bound.source.same_as(func.params[1]) \
            and all(int(d) == 1 for d in func.params[1].shape):
        return op, None
    if len(func.params) == 2 and type(bound).__name__ in ("FloatImm", "IntImm"):
        return op, bound.value
    return None


def _operator_of_bound_kernel(call, mod):
    kernel = _bound_kernel(mod[call.args[0]])
    if kernel is None:
        return None
    op, bound = kernel
    args = list(call.args[1].fields)
    # a 0-d bound: ConvertLayout leaves a binary op with a (1,)-shaped operand in the old layout
    bound = relax.op.reshape(args[1], []) if bound is None else relax.const(bound, args[0].ty.dtype)
    return getattr(relax.op, op)(args[0], bound)


@tvm.transform.module_pass(opt_level=0, name="explorer.BoundKernelsAsOperators")
def bound_kernels_as_operators(mod, _ctx):
    """Rewrite the max/min TE kernels TVM's ONNX importer makes of ``Clip`` as Relax ``maximum`` /
    ``minimum``: ConvertLayout cannot see through a ``call_tir`` (each ReLU6 of an NHWC build was
    wrapped in two transposes) and ToMixedPrecision cannot type one (``Expected TensorType``)."""
    return _rewrite_calls(mod, "relax.call_tir", _operator_of_bound_kernel)


#: A matmul whose constant weight has at least this many columns...
PAD_MIN_COLUMNS = 64
#: ...and whose column count has no divisor of at least half a vector's lanes gets its columns padded to
#: a multiple of this (16 fp32 lanes of AVX-512): a vocabulary of 50257 columns (prime) otherwise runs
#: one lane at a time.
PAD_COLUMNS_TO = 16


def _padded_columns(call, _mod):
    weight = call.args[1]
    if not isinstance(weight, Constant) or weight.ty.ndim != 2:
        return None
    columns = int(weight.ty.shape.values[1])
    if columns < PAD_MIN_COLUMNS or max(d for d in range(1, PAD_COLUMNS_TO + 1) if columns % d == 0) >= PAD_COLUMNS_TO // 2:
        return None
    value = weight.value.numpy()
    padded = np.zeros((value.shape[0], -(-columns // PAD_COLUMNS_TO) * PAD_COLUMNS_TO), value.dtype)
    padded[:, :columns] = value
    out = relax.op.matmul(call.args[0], relax.const(padded), out_dtype=call.attrs.out_dtype)
    return relax.op.strided_slice(out, axes=[call.ty.ndim - 1], begin=[0], end=[columns])


def _nt_weight(call, _mod):
    weight = call.args[1]
    if not isinstance(weight, Constant) or weight.ty.ndim != 2 or not str(weight.ty.dtype).startswith(("float", "bfloat")):
        return None
    kept = relax.const(np.ascontiguousarray(weight.value.numpy().T))
    return relax.op.matmul(call.args[0], relax.op.permute_dims(kept), out_dtype=call.attrs.out_dtype)


@tvm.transform.module_pass(opt_level=0, name="explorer.WeightsAlongK")
def weights_along_k(mod, _ctx):
    """Keep each constant float matmul weight ``[N, K]`` (``x @ W^T``, which ``FuseTransposeMatmul`` makes
    one kernel), as GPU deployments keep them (PyTorch's Linear, MLC-LLM's ``NT_matmul``): a decode step's
    GEMV then reads each output's weights along K, and DLight's ``GEMV`` rule schedules it (its
    outer-reduction schedule, for ``[K, N]``, has parameters for OpenCL and Metal only)."""
    return _rewrite_calls(mod, "relax.matmul", _nt_weight)


@tvm.transform.module_pass(opt_level=0, name="explorer.PadMatmulColumns")
def pad_matmul_columns(mod, _ctx):
    """Pad the columns of a constant matmul weight whose count vectorizes badly (see
    :data:`PAD_COLUMNS_TO`) with zeros, and slice the result back: the LM head of a vocabulary of 50257
    then runs 16 lanes at a time, as deployments pad their vocabularies. The weight grows by under
    :data:`PAD_COLUMNS_TO` columns (0.03% for GPT-2's)."""
    return _rewrite_calls(mod, "relax.matmul", _padded_columns)


def _prepare(ctx: PipelineContext) -> list:
    return [bound_kernels_as_operators, precision_pass("qdq"), relax.transform.FoldBatchnormToConv2D(),
            relax.transform.FoldConstant()]


def _legalize(ctx: PipelineContext) -> list:
    # CPU vectors need the columns padded, and weights packed a vector of columns at a time; a GPU
    # kernel's threads take any count, and a GPU reads its weights along K
    layout = ([pad_matmul_columns, packed_float_weights] if ctx.lowering == "generic" else
              [weights_along_k, relax.transform.FuseTransposeMatmul()])
    return [*layout, relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
            relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant()]


def _int8_kernels(ctx: PipelineContext) -> list:
    return [vnni_int8_kernels()] if ctx.vnni else []  # its constants are folded after LegalizeOps


def _gpu_schedule(ctx: PipelineContext) -> list:
    # DecodeGEMV first: a weight-only GEMV reads packed integers, which Int8Reduction would take. Then
    # Int8Reduction: DLight's Matmul rule tensorizes int8 (of an int8 strategy or of an imported QDQ
    # model) with wmma fragments that TVM 0.27 then fails to lower (fragment_info_ check)
    return [dl.ApplyDefaultSchedule(DecodeGEMV(), Int8Reduction(), dl.gpu.Matmul(), dl.gpu.Reduction(),
                                    dl.gpu.GeneralReduction(), dl.gpu.Fallback())]


PRECISION: dict[str, Factory] = {
    "fp32": lambda ctx: [],
    "fp16": lambda ctx: [clip_as_max_min, relax.transform.ConvertToDataflow(),
                         relax.transform.ToMixedPrecision(out_dtype="float32"),
                         relax.transform.FoldConstant()],
    "bf16": lambda ctx: [precision_pass("bf16"), relax.transform.FoldConstant()],
    "int8": lambda ctx: [precision_pass("int8", ctx.act_scales), relax.transform.FoldConstant()],
    "int8w": lambda ctx: [],
    "int4w": lambda ctx: [],
}

#: The precision passes that run on the legalized module, after the last FoldConstant: weight-only
#: quantization keeps its weights packed only where nothing folds their dequantization afterwards.
PRECISION_AFTER_LEGALIZE: dict[str, Factory] = {
    "fp32": lambda ctx: [],
    "fp16": lambda ctx: [],
    "bf16": lambda ctx: [],
    "int8": lambda ctx: [],
    "int8w": lambda ctx: [weight_only_pass("int8w")],
    "int4w": lambda ctx: [weight_only_pass("int4w")],
}

LAYOUT: dict[str, Factory] = {
    "native": lambda ctx: [],
    # clip has no layout inference in TVM 0.27: ConvertLayout would wrap each one in two transposes
    "nhwc": lambda ctx: [non_negative_squeeze_axes, clip_as_max_min, relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
                         relax.transform.FoldConstant()],
}

def _dequantize_into_matmuls(ctx: PipelineContext) -> list:
    """A weight-only matmul's dequantize kernel joins it by pattern (FuseOps leaves it apart); FuseOps
    then sees the result as a matmul kernel and gives it its epilogue."""
    if ctx.strategy.precision not in WEIGHT_ONLY:
        return []
    return [fuse_dequantize_matmul(), _record_groups(ctx), relax.transform.FuseTIR(),
            relax.transform.AnnotateTIROpPattern()]


FUSION: dict[str, Factory] = {
    "none": lambda ctx: [],
    "tvm": lambda ctx: [*_dequantize_into_matmuls(ctx), relax.transform.FuseOps(), _record_groups(ctx),
                        relax.transform.FuseTIR()],
}

def cpu_default_rules() -> list[ScheduleRule]:
    """The rules of the default llvm schedule, in the order they are tried: those of
    :mod:`explorer.tvm.cpu_schedules` (one-row reductions before DLight's, which recomputes them per
    element), DLight's CPU row reductions, and :class:`InlineElementwise`
    for what none of them takes."""
    return [VnniReduction(), TiledReduction(), SingleRowReduction(), dl.cpu.Reduction(), ParallelElementwise(),
            InlineElementwise()]


def cpu_default_schedule() -> tvm.transform.Pass:
    """The default schedule of llvm kernels (untuned, or a tuned kernel without records):
    :func:`cpu_default_rules`; tuning measures the same schedules first (see
    :func:`explorer.tvm.tuning.seed_default_schedules`)."""
    return dl.ApplyDefaultSchedule(*cpu_default_rules())


#: The default schedule of each lowering: :func:`cpu_default_schedule` for ``generic`` (CPUs and
#: analysis-only targets); DLight's GPU rules for cuda and rocm (whose ``Matmul`` rule tensorizes for
#: CUDA only: ROCm kernels stay on the SIMT lanes, no MFMA).
SCHEDULE: dict[str, Factory] = {
    "generic": lambda ctx: [cpu_default_schedule()],
    "cuda": _gpu_schedule,
    "rocm": _gpu_schedule,
}


def lookup(table: dict[str, Factory], axis: str, name: str) -> Factory:
    """The factory for ``name`` on ``axis``; an unknown name gets an error listing the known ones."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {axis} {name!r}; known: {', '.join(table)}") from None


def schedules_by_tuning(ctx: PipelineContext) -> bool:
    """Whether MetaSchedule, not the lowering's default schedule, schedules this compile (MetaSchedule
    measures candidates on this CPU only, so a cuda lowering keeps DLight's schedules)."""
    return ctx.strategy.tuned and ctx.lowering == "generic"


def strategy_passes(ctx: PipelineContext, schedule: bool = True) -> tvm.transform.Pass:
    """The strategy's Relax passes as one ``Sequential``: every axis's factory, in the order of the
    module docstring; ``schedule=False`` stops before scheduling (what tuning-task extraction reads)."""
    s = ctx.strategy
    passes = [*_prepare(ctx), *lookup(PRECISION, "precision", s.precision)(ctx),
              *lookup(LAYOUT, "layout", s.layout)(ctx), *_int8_kernels(ctx), *_legalize(ctx),
              *lookup(PRECISION_AFTER_LEGALIZE, "precision", s.precision)(ctx),
              *lookup(FUSION, "fusion", s.fusion)(ctx), relax.transform.DeadCodeElimination()]
    if schedule and not schedules_by_tuning(ctx):
        passes += lookup(SCHEDULE, "lowering", ctx.lowering)(ctx)
    passes += [relax.transform.RewriteDataflowReshape()]
    return tvm.transform.Sequential(passes, name="explorer.strategy")
