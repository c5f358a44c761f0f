"""Strategy passes: one name -> factory map per strategy axis, composed into one ``Sequential``.

As in TVM's ``relax/pipeline.py``, each axis value names a factory of passes; a strategy is the
choice on every axis, and :func:`strategy_passes` composes them in a fixed order:

1. ``PREPARE``: a pre-quantized (QDQ) model's conv2d/matmul become int8 kernels whatever the
   strategy (this must see the weights' dequantize before FoldConstant folds it away), and
   inference-mode BatchNorm folds into the preceding conv, as every deployment build does;
2. ``PRECISION`` (before layout: ToMixedPrecision needs the ops BatchNorm folding left behind);
3. ``LAYOUT``;
   then, where the target has VNNI, int8 conv2d/matmul become the u8 x s8 kernels of
   :mod:`explorer.tvm.passes.vnni`, and where it has AVX512-BF16, a bf16 build's become the
   ``VDPBF16PS`` kernels of :mod:`explorer.tvm.passes.bf16_dot` (after layout, so they are made in the
   layout chosen);
4. ``LEGALIZE``: on GPUs, a fused strategy's attention becomes one split-KV kernel and a merge
   (:mod:`explorer.tvm.passes.fused_attention`); on CPUs, constant float weights packed a vector of output channels at a time
   (:mod:`explorer.tvm.passes.packed_weights`); decomposition of the remaining inference-mode ops,
   LegalizeOps, op patterns;
   then ``PRECISION_AFTER_LEGALIZE``: weight-only quantization (after the last FoldConstant, which
   would fold the dequantization of its packed weights back into float ones);
5. ``FUSION`` (a weight-only matmul's dequantization joins it by pattern before FuseOps);
6. ``SCHEDULE`` of the lowering (``generic``: CPU and analysis-only targets; ``cuda``), unless a
   tuned strategy schedules a generic lowering with MetaSchedule (``TUNING``, run after the
   ``Sequential`` by :mod:`explorer.tvm.compile`: TVM's pass infrastructure would turn the
   KeyboardInterrupt that stops tuning into a RuntimeError).

Adding an axis value is one entry in its map (and its name in :data:`explorer.core.strategies.AXES`,
which a test keeps equal to these maps' keys).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tvm
from tvm import relax
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.base import ScheduleRule

from explorer.core.strategies import WEIGHT_ONLY, Strategy
from explorer.tvm.passes.bf16_dot import bf16_dot_kernels, has_avx512_bf16
from explorer.tvm.passes.constant_layouts import fold_constant_layouts
from explorer.tvm.passes.experts import routed_experts
from explorer.tvm.passes.fast_math import fast_math
from explorer.tvm.passes.fused_attention import fused_attention
from explorer.tvm.passes.fusion_groups import record_fusion_groups
from explorer.tvm.passes.kv_cache import kv_cache_in_place
from explorer.tvm.passes.matmul_weights import pad_matmul_columns, weights_along_k
from explorer.tvm.passes.operator_rewrites import bound_kernels_as_operators, clip_as_max_min, non_negative_squeeze_axes
from explorer.tvm.passes.packed_weights import packed_float_weights
from explorer.tvm.passes.precision import half_activation_matmuls, precision_pass
from explorer.tvm.passes.scalar_float8 import scalar_float8_loops
from explorer.tvm.passes.vnni import has_vnni, vnni_int8_kernels
from explorer.tvm.passes.weight_only import fuse_dequantize_matmul, weight_only_pass
from explorer.tvm.passes.weight_params import fold_weight_params
from explorer.tvm.schedules.decode_gemv import DecodeGEMV
from explorer.tvm.schedules.depthwise_reduction import DepthwiseReduction
from explorer.tvm.schedules.dot_reduction import DotReduction
from explorer.tvm.schedules.inline_elementwise import InlineElementwise
from explorer.tvm.schedules.int8_reduction import Int8Reduction
from explorer.tvm.schedules.parallel_elementwise import ParallelElementwise
from explorer.tvm.schedules.routed_matmul import RoutedMatmul
from explorer.tvm.schedules.single_row_reduction import SingleRowReduction
from explorer.tvm.schedules.tensor_core_matmul import TensorCoreMatmul
from explorer.tvm.schedules.tiled_reduction import TiledReduction


@dataclasses.dataclass
class PipelineContext:
    """What the factories of one compile need, and what the passes report back."""

    strategy: Strategy
    lowering: str                                   # "generic" or "cuda"
    act_scales: tuple[float, ...] | None = None     # calibrated activation scales (int8)
    vnni: bool = False                              # the llvm target has VPDPBUSD (see explorer.tvm.passes.vnni)
    bf16_dot: bool = False                          # ... and VDPBF16PS (see explorer.tvm.passes.bf16_dot)
    groups: dict = dataclasses.field(default_factory=dict)  # fusion groups, filled by FuseOps' recorder
    weights: frozenset[str] = frozenset()           # parameters of main that are weights (a config's decoder)


def fold(ctx: PipelineContext) -> tvm.transform.Pass:
    """``FoldConstant`` (transposes and reshapes first, in numpy: :mod:`explorer.tvm.passes.constant_layouts`),
    and the same folding of computations on weight parameters (:mod:`explorer.tvm.passes.weight_params`)."""
    return tvm.transform.Sequential([fold_constant_layouts, relax.transform.FoldConstant(),
                                     fold_weight_params(set(ctx.weights))])


Factory = Callable[[PipelineContext], list]


def _prepare(ctx: PipelineContext) -> list:
    return [bound_kernels_as_operators, precision_pass("qdq"), relax.transform.FoldBatchnormToConv2D(),
            fold(ctx)]


def _legalize(ctx: PipelineContext) -> list:
    # CPU vectors need exp and its kin as polynomials (explorer.tvm.passes.fast_math), the columns
    # padded, and weights packed a vector of columns at a time; a GPU
    # kernel's threads take any count, and a GPU reads its weights along K. A GPU build keeps a decoder's
    # KV cache in place, as serving engines do; a fused one's attention is one kernel (before
    # FuseTransposeMatmul, which would take its k^T)
    attention = [fused_attention()] if ctx.strategy.fusion == "tvm" else []
    layout = ([fast_math, pad_matmul_columns, packed_float_weights] if ctx.lowering == "generic" else
              [kv_cache_in_place(), *attention, weights_along_k(ctx.weights, split=splits_k(ctx)),
               relax.transform.FuseTransposeMatmul()])
    experts = routed_experts(ctx.weights, along_k=ctx.lowering != "generic", fp4=ctx.strategy.precision == "mxfp4-bf16")
    return [experts, *layout, relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
            relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), fold(ctx)]


def splits_k(ctx: PipelineContext) -> bool:
    """Whether a GPU build splits its skinny matmuls along K (:mod:`explorer.tvm.passes.split_k`): a fused
    one, unless its weights are quantized after legalization (weight-only), whose rewrite and GEMV rule
    read the unsplit ``x @ W^T``."""
    return ctx.strategy.fusion == "tvm" and ctx.strategy.precision not in WEIGHT_ONLY


def dot_instructions(lowering: str, target: tvm.target.Target) -> dict[str, bool]:
    """The :class:`PipelineContext` flags of the dot-product instructions a lowering for ``target`` uses."""
    cpu = lowering == "generic"
    return {"vnni": cpu and has_vnni(target), "bf16_dot": cpu and has_avx512_bf16(target)}


def _dot_kernels(ctx: PipelineContext) -> list:
    # their constants are folded after LegalizeOps. A weight-only bf16 build keeps its matmuls for
    # quantization after legalization
    return [*([vnni_int8_kernels()] if ctx.vnni else []),
            *([bf16_dot_kernels()] if ctx.bf16_dot and ctx.strategy.precision == "bf16" else [])]


def _gpu_schedule(ctx: PipelineContext) -> list:
    # TensorCoreMatmul first: every matmul of more than a few rows whose types an mma (CUDA) or MFMA
    # (CDNA 3) instruction takes (it declines GEMVs). DecodeGEMV next: a weight-only GEMV reads packed integers, which
    # Int8Reduction would take. Then Int8Reduction for the int8 kernels left (convolutions): DLight's
    # Matmul rule tensorizes int8 with wmma fragments that TVM 0.27 then fails to lower (fragment_info_)
    # DepthwiseReduction: DLight's Matmul rule pads a depthwise convolution's one column and window to 16
    # On ROCm, float8 is legalized to integer arithmetic as on CPUs (no float8 type in TVM's AMDGPU code
    # generator), whose rounding to float8 cannot be vectorized either
    scalar = [scalar_float8_loops] if ctx.lowering == "rocm" and ctx.strategy.precision == "fp8" else []
    return [dl.ApplyDefaultSchedule(RoutedMatmul(), TensorCoreMatmul(), DecodeGEMV(), Int8Reduction(), DepthwiseReduction(), dl.gpu.Matmul(),
                                    dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()), *scalar]


def _fp16(ctx: PipelineContext) -> list:
    return [clip_as_max_min, relax.transform.ConvertToDataflow(), relax.transform.ToMixedPrecision(out_dtype="float32"),
            fold(ctx)]


def _bf16(ctx: PipelineContext) -> list:
    return [precision_pass("bf16"), fold(ctx)]


def _weight_only(precision: str) -> Factory:
    """Weight-only quantization of ``precision`` (``int4w``, or ``int4w-fp16``: its bits, then the type
    of the activations) on the legalized module."""
    return lambda ctx: [weight_only_pass(precision.split("-")[0], weights=ctx.weights)]


PRECISION: dict[str, Factory] = {
    "fp32": lambda ctx: [],
    "fp16": _fp16,
    "bf16": _bf16,
    "int8": lambda ctx: [precision_pass("int8", ctx.act_scales),
                         *([half_activation_matmuls] if ctx.lowering in ("cuda", "rocm") else []), fold(ctx)],
    "fp8": lambda ctx: [precision_pass("fp8", ctx.act_scales, weights=ctx.weights),
                        *([half_activation_matmuls] if ctx.lowering in ("cuda", "rocm") else []), fold(ctx)],
    "int8w": lambda ctx: [],
    "int4w": lambda ctx: [],
    "int8w-fp16": _fp16,
    "int4w-fp16": _fp16,
    "int8w-bf16": _bf16,
    "int4w-bf16": _bf16,
    "mxfp4-bf16": _bf16,  # and the experts' weights in MXFP4: explorer.tvm.passes.experts, in _legalize
}

#: The precision passes that run on the legalized module, after the last FoldConstant: weight-only
#: quantization keeps its weights packed only where nothing folds their dequantization afterwards.
PRECISION_AFTER_LEGALIZE: dict[str, Factory] = {
    "fp32": lambda ctx: [],
    "fp16": lambda ctx: [],
    "bf16": lambda ctx: [],
    "int8": lambda ctx: [],
    "fp8": lambda ctx: [],
    **{name: _weight_only(name) for name in WEIGHT_ONLY},
    "mxfp4-bf16": lambda ctx: [],
}

LAYOUT: dict[str, Factory] = {
    "native": lambda ctx: [],
    # clip has no layout inference in TVM 0.27: ConvertLayout would wrap each one in two transposes
    "nhwc": lambda ctx: [non_negative_squeeze_axes, clip_as_max_min, relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
                         fold(ctx)],
}

def _dequantize_into_matmuls(ctx: PipelineContext) -> list:
    """A weight-only matmul's dequantize kernel joins it by pattern (FuseOps leaves it apart); FuseOps
    then sees the result as a matmul kernel and gives it its epilogue."""
    if ctx.strategy.precision not in WEIGHT_ONLY:
        return []
    return [fuse_dequantize_matmul(), record_fusion_groups(ctx.groups), relax.transform.FuseTIR(),
            relax.transform.AnnotateTIROpPattern()]


FUSION: dict[str, Factory] = {
    "none": lambda ctx: [],
    "tvm": lambda ctx: [*_dequantize_into_matmuls(ctx), relax.transform.FuseOps(), record_fusion_groups(ctx.groups),
                        relax.transform.FuseTIR()],
}

def cpu_default_rules() -> list[ScheduleRule]:
    """The rules of the default llvm schedule, in the order they are tried: those of
    :mod:`explorer.tvm.schedules` (one-row reductions before DLight's, which recomputes them per
    element), DLight's CPU row reductions, and :class:`InlineElementwise`
    for what none of them takes."""
    return [DotReduction(), TiledReduction(), SingleRowReduction(), dl.cpu.Reduction(), ParallelElementwise(),
            InlineElementwise()]


def cpu_default_schedule() -> tvm.transform.Pass:
    """The default schedule of llvm kernels (untuned, or a tuned kernel without records):
    :func:`cpu_default_rules`; tuning measures the same schedules first (see
    :func:`explorer.tvm.tuning.seeds.seed_default_schedules`)."""
    return dl.ApplyDefaultSchedule(*cpu_default_rules())


#: The default schedule of each lowering: :func:`cpu_default_schedule` for ``generic`` (CPUs and
#: analysis-only targets); for cuda and rocm, the explorer's GPU rules (tensor cores through ``mma.sync``
#: or CDNA 3's MFMA) before DLight's.
SCHEDULE: dict[str, Factory] = {
    "generic": lambda ctx: [cpu_default_schedule(), *([scalar_float8_loops] if ctx.strategy.precision == "fp8" else [])],
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
              *lookup(LAYOUT, "layout", s.layout)(ctx), *_dot_kernels(ctx), *_legalize(ctx),
              *lookup(PRECISION_AFTER_LEGALIZE, "precision", s.precision)(ctx),
              *lookup(FUSION, "fusion", s.fusion)(ctx), relax.transform.DeadCodeElimination()]
    if schedule and not schedules_by_tuning(ctx):
        passes += lookup(SCHEDULE, "lowering", ctx.lowering)(ctx)
    passes += [relax.transform.RewriteDataflowReshape()]
    return tvm.transform.Sequential(passes, name="explorer.strategy")
