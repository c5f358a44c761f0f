"""Weight-only quantization (``int8w``, ``int4w``) of matmul weights, and the fusion of their
dequantization into the consuming matmul (TVM-specific).

Every matmul whose weight is a constant ``[K, N]`` float32 matrix (the right operand of ONNX
``MatMul``, or ``Gemm``'s after its transpose is folded; the LM head included) gets symmetric
group-wise integer weights along the reduction axis ``K``: for each column ``n`` and each group of
``group_size`` rows, ``scale = max|W| / qmax`` (``qmax`` 127 for int8, 7 for int4, as MLC-LLM's
``q4f16_1``), ``q = clip(round(W / scale), -qmax, qmax)``. int4 values are stored offset by 7
(``0..14``), two per byte along ``K``: row ``2i`` in the low nibble, row ``2i + 1`` in the high one.
Activations keep their dtype; the weight is dequantized to it inside the kernel.

The pass runs after ``LegalizeOps`` and the last ``FoldConstant``: before, ``FoldConstant`` would
evaluate the dequantization of the constant packed weights back into a full-size float weight. It
rewrites each matmul kernel's constant weight operand into a ``dequantize`` kernel of the packed
weight and its scales. On its own (fusion ``none``) that kernel writes the float weight and the
matmul reads it again. ``FuseOps`` would leave it so too (a matmul takes no injective producer), so
:func:`fuse_dequantize_matmul` groups each ``dequantize`` with its matmul by pattern, as MLC-LLM's
``FuseDequantizeMatmulEwise`` does: the fused kernel reads the packed bytes, and the schedule inlines
the dequantization into the matmul's inner loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
from tvm import relax, s_tir, te, tirx
from tvm.ir.expr import Constant
from tvm.relax.dpl import GlobalVarPattern, TuplePattern, is_op, wildcard

from explorer.tvm.passes.packed_weights import pack_columns
from explorer.tvm.passes.rewriting import rewritten
from explorer.tvm.passes.weight_params import is_weight, with_params
from explorer.tvm.relax_ir import name_of

#: The bits of each weight-only precision.
BITS = {"int8w": 8, "int4w": 4}
#: Rows of ``K`` that share one scale, unless a pass is told otherwise.
GROUP_SIZE = 128
#: The dtype the scales are stored in, unless a pass is told otherwise (MLC-LLM's ``q4f16_1`` keeps
#: fp16 scales: a scale's 1e-3 relative precision is far below an int4 step's).
SCALE_DTYPE = "float16"
#: TVM's op pattern kind of an injective kernel (``relax.transform.AnnotateTIROpPattern``).
_INJECTIVE = 2
_OUT_EWISE_FUSABLE = 4
_CALL_TIR = "relax.call_tir"
DEQUANTIZE_PREFIX = "dequantize_"


@dataclasses.dataclass(frozen=True)
class QuantizedWeight:
    """One matrix's weight-only quantization: ``values`` (int8 ``[K, N]``, or int4 packed as uint8
    ``[K / 2, N]``), ``scales`` ``[K / group_size, N]``, and the layout that reads them back (a kernel
    may keep them in another order: :func:`stored`)."""

    values: np.ndarray
    scales: np.ndarray
    bits: int
    group_size: int
    rows: int

    def dequantize(self) -> np.ndarray:
        """The float32 ``[K, N]`` weight the kernels compute with."""
        q = unpack_int4(self.values, self.rows) if self.bits == 4 else self.values.astype(np.int32)
        scales = np.repeat(self.scales.astype(np.float32), self.group_size, axis=0)
        return q.astype(np.float32) * scales


def qmax(bits: int) -> int:
    """The largest magnitude a symmetric ``bits``-bit weight takes: 127 or 7."""
    return (1 << (bits - 1)) - 1


def group_size_for(rows: int, group_size: int, bits: int) -> int | None:
    """The group size used on ``rows`` reduction rows: ``group_size`` where it divides them, else one
    group of all the rows; None where the matrix is not quantized (int4 needs an even row count)."""
    if bits == 4 and rows % 2:
        return None
    return group_size if rows % group_size == 0 else rows


def quantize(weight: np.ndarray, bits: int, group_size: int = GROUP_SIZE,
             scale_dtype: str = SCALE_DTYPE) -> QuantizedWeight:
    """Symmetric group-wise quantization of a ``[K, N]`` weight along ``K`` (see the module doc).
    ``group_size`` must divide ``K`` (:func:`group_size_for` picks one that does)."""
    rows, cols = weight.shape
    if rows % group_size:
        raise ValueError(f"group size {group_size} does not divide the {rows} reduction rows")
    groups = weight.astype(np.float64).reshape(rows // group_size, group_size, cols)
    peak = np.max(np.abs(groups), axis=1)
    scales = np.where(peak > 0, peak / qmax(bits), 1.0).astype(scale_dtype)
    q = np.clip(np.round(groups / scales.astype(np.float64)[:, None, :]), -qmax(bits), qmax(bits))
    q = q.reshape(rows, cols).astype(np.int8)
    return QuantizedWeight(pack_int4(q) if bits == 4 else q, scales, bits, group_size, rows)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int4 values (``-7..7``, ``[K, N]``, K even) stored offset by 7, two per byte along K."""
    stored = (q.astype(np.int16) + qmax(4)).astype(np.uint8)
    return stored[0::2] | (stored[1::2] << 4)


def unpack_int4(packed: np.ndarray, rows: int) -> np.ndarray:
    """The int4 values of :func:`pack_int4`'s bytes, as int32 ``[rows, N]``."""
    out = np.empty((rows, packed.shape[1]), np.int32)
    out[0::2] = packed & 15
    out[1::2] = packed >> 4
    return out - qmax(4)


def stored(weight: QuantizedWeight, transposed: bool, block: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The values and scales as a kernel stores them: ``[K(/2), N]`` and ``[K / group, N]``; for a
    weight kept ``[N, K]`` (``transposed``, the layout GPU GEMVs read along K) ``[N, K(/2)]`` and
    ``[N, K / group]``; with ``block`` (a CPU matmul's packed weight, see
    :mod:`explorer.tvm.passes.packed_weights`) ``[N / block, K(/2), block]`` and ``[N / block, K / group,
    block]``, so that a task of ``block`` columns reads its bytes in one contiguous run, not ``block``
    bytes of every row of the whole matrix. int4 pairs stay along K in every layout."""
    if transposed:
        return np.ascontiguousarray(weight.values.T), np.ascontiguousarray(weight.scales.T)
    if block:
        return pack_columns(weight.values, block), pack_columns(weight.scales, block)
    return weight.values, weight.scales


def _dequantize_func(weight: QuantizedWeight, dtype: str, transposed: bool = False, block: int = 0,
                     held: tuple[np.ndarray, np.ndarray] | None = None) -> tirx.PrimFunc:
    """The TE kernel that reads the stored weight and scales (``held``, :func:`stored`'s arrays for the
    same layout, made here when not given) back into a ``dtype`` ``[K, N]`` weight, ``[N, K]`` where
    ``transposed``, or the CPU's packed ``[N / block, K, block]`` with ``block``."""
    rows, cols = weight.rows, weight.values.shape[1]
    held, held_scales = held or stored(weight, transposed, block)
    values = te.placeholder(_int64(held.shape), str(held.dtype), name="weight")
    scales = te.placeholder(_int64(held_scales.shape), str(held_scales.dtype), name="scales")

    def element(k, value_at, scale_at):
        """Row ``k`` of a column whose stored value row ``r`` is ``value_at(r)`` and scale ``scale_at(g)``."""
        if weight.bits == 4:
            shift = (k % 2 * 4).astype("uint8")
            q = ((value_at(k // 2) >> shift) & tirx.const(15, "uint8")).astype(dtype) - tirx.const(qmax(4), dtype)
        else:
            q = value_at(k).astype(dtype)
        return q * scale_at(k // weight.group_size).astype(dtype)

    if block:
        out = te.compute(_int64((cols // block, rows, block)),
                         lambda o, k, b: element(k, lambda r: values[o, r, b], lambda g: scales[o, g, b]),
                         name="dequantize")
    elif transposed:
        out = te.compute(_int64((cols, rows)), lambda n, k: element(k, lambda r: values[n, r], lambda g: scales[n, g]),
                         name="dequantize")
    else:
        out = te.compute(_int64((rows, cols)), lambda k, n: element(k, lambda r: values[r, n], lambda g: scales[g, n]),
                         name="dequantize")
    func = te.create_prim_func([values, scales, out]).without_attr("global_symbol")
    return func.with_attr("op_pattern", _INJECTIVE)


def _int64(shape) -> list:
    """A shape in int64 dimensions, as LegalizeOps writes them (FuseTIR maps buffers by type)."""
    return [tirx.IntImm("int64", int(d)) for d in shape]


def _weight_operand(func) -> list[tuple[int, str]]:
    """The parameters a matmul kernel's weight may be, each with its layout: the 2-D inputs indexed by
    the kernel's one reduction axis and a spatial one (``kn``, or ``nk`` as a GPU lowering keeps it; a
    2-D activation ``[M, K]`` looks the same, so the caller takes the one that is a constant), and the
    3-D ones indexed by the reduction axis in the middle (``packed``: the CPU's ``[N / B, K, B]``);
    empty for any other kernel."""
    attrs = func.attrs if isinstance(func, tirx.PrimFunc) else None
    if attrs is None or int(attrs.get("op_pattern", -1)) != _OUT_EWISE_FUSABLE:
        return []
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1:
        return []
    block = sch.get(blocks[0])
    reduce = [iv.var for iv in block.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    spatial = [iv.var for iv in block.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    if len(reduce) != 1:
        return []
    found = []
    for read in block.reads:
        index = next((i for i, p in enumerate(func.params) if p.same_as(read.source)), None)
        if index is None:
            continue
        mins = [r.min for r in read.region]
        if len(mins) == 3 and mins[1].same_as(reduce[0]) and not any(m.same_as(reduce[0]) for m in (mins[0], mins[2])):
            found.append((index, "packed"))
        if len(mins) != 2:
            continue
        for k, n, layout in ((mins[0], mins[1], "kn"), (mins[1], mins[0], "nk")):
            if k.same_as(reduce[0]) and any(n.same_as(v) for v in spatial):
                found.append((index, layout))
    return found


@relax.expr_functor.mutator
class _WeightOnlyRewriter(relax.PyExprMutator):
    """Each matmul kernel's constant float32 weight -> a dequantize kernel of its quantized bytes."""

    def __init__(self, mod: tvm.IRModule, bits: int, group_size: int, scale_dtype: str, weights: frozenset[str]):
        super().__init__(mod)
        self.mod, self.bits, self.group_size, self.scale_dtype = mod, bits, group_size, scale_dtype
        self.weights = weights  # weight parameters of main (see explorer.tvm.passes.weight_params)
        self.new_params: list[relax.Var] = []
        self.weight_operands: dict = {}  # kernel -> its weight's candidate parameters (once per kernel, not per call)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == _CALL_TIR):
            return call
        kernel = call.args[0]
        if kernel not in self.weight_operands:
            self.weight_operands[kernel] = _weight_operand(self.mod[kernel])
        args = list(call.args[1].fields)
        found = [(i, t) for i, t in self.weight_operands[kernel] if i < len(args) and is_weight(args[i], self.weights)]
        if not found:
            return call
        index, layout = found[0]
        weight = args[index]
        dtype = str(weight.ty.dtype)
        if dtype not in ("float32", "float16", "bfloat16"):
            return call
        if not isinstance(weight, Constant):
            return self._parameter(call, args, index, layout)
        matrix = weight.value.numpy().astype(np.float32)
        transposed, block = layout == "nk", matrix.shape[2] if layout == "packed" else 0
        if block:  # [N / B, K, B] -> [K, N]
            matrix = matrix.transpose(1, 0, 2).reshape(matrix.shape[1], -1)
        matrix = matrix.T if transposed else matrix  # quantized as [K, N]: groups along K
        group = group_size_for(matrix.shape[0], self.group_size, self.bits)
        if group is None:
            return call
        q = quantize(matrix, self.bits, group, self.scale_dtype)
        values, scales = stored(q, transposed, block)
        gv = self.builder_.add_func(_dequantize_func(q, dtype, transposed, block, (values, scales)),
                                    f"{DEQUANTIZE_PREFIX}int{self.bits}")
        args[index] = self.builder_.emit(
            relax.call_tir(gv, relax.Tuple([relax.const(values), relax.const(scales)]), out_ty=weight.ty),
            name_hint="dequantized")
        return relax.call_tir(call.args[0], relax.Tuple(args), out_ty=call.ty)


    def _parameter(self, call, args, index: int, layout: str):
        """The same rewrite of a weight parameter (no values: a decoder built from its config): the
        packed values and scales become two weight parameters of the shapes and dtypes
        :func:`stored` gives, under the weight's name."""
        weight = args[index]
        if layout == "packed":
            return call  # CPU packing needs values; a weight parameter stays [K, N] or [N, K]
        transposed = layout == "nk"
        shape = [int(d) for d in weight.ty.shape.values]
        rows, cols = (shape[1], shape[0]) if transposed else (shape[0], shape[1])
        group = group_size_for(rows, self.group_size, self.bits)
        if group is None:
            return call
        value_dtype = np.uint8 if self.bits == 4 else np.int8
        values = np.broadcast_to(np.zeros((), value_dtype), (rows // 2 if self.bits == 4 else rows, cols))
        scales = np.broadcast_to(np.zeros((), self.scale_dtype), (rows // group, cols))
        q = QuantizedWeight(values, scales, self.bits, group, rows)
        held = (values.T, scales.T) if transposed else (values, scales)
        gv = self.builder_.add_func(_dequantize_func(q, str(weight.ty.dtype), transposed, 0, held),
                                    f"{DEQUANTIZE_PREFIX}int{self.bits}")
        new = [relax.Var(name_of(weight), relax.TensorType(list(a.shape), str(a.dtype))) for a in held]
        self.new_params += new
        args[index] = self.builder_.emit(relax.call_tir(gv, relax.Tuple(new), out_ty=weight.ty), name_hint="dequantized")
        return relax.call_tir(call.args[0], relax.Tuple(args), out_ty=call.ty)


def weight_only_pass(precision: str, group_size: int = GROUP_SIZE, scale_dtype: str = SCALE_DTYPE,
                     weights: frozenset[str] = frozenset()):
    """The pass that gives every matmul with a constant weight (or a weight parameter named in
    ``weights``) ``precision``'s (``int8w`` or ``int4w``) weight-only quantization (see the module
    doc). It runs on a legalized module, after the last ``FoldConstant``."""
    bits = BITS[precision]

    @tvm.transform.module_pass(opt_level=0, name=f"explorer.WeightOnly[{precision}]")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _WeightOnlyRewriter(mod, bits, group_size, scale_dtype, weights)
        out = rewritten(rewriter, mod)
        if rewriter.new_params:
            out["main"] = with_params(out["main"], rewriter.new_params)
        return out

    return apply


def _is_dequantize(ctx) -> bool:
    return ctx.annotated_expr["dequantize"].args[0].name_hint.startswith(DEQUANTIZE_PREFIX)


def fuse_dequantize_matmul() -> tvm.transform.Pass:
    """Group each ``dequantize`` kernel with the matmul kernel that reads it (a pattern fusion, as
    MLC-LLM's ``FuseDequantizeMatmulEwise``; ``FuseOps`` gives a matmul no injective producer). The
    groups are Relax functions ``FuseTIR`` merges into one kernel."""
    dequantize = is_op(_CALL_TIR)(GlobalVarPattern(), TuplePattern([wildcard(), wildcard()]), add_constraint=False)
    patterns = []
    for position in (1, 0):
        operands = [wildcard(), wildcard()]
        operands[position] = dequantize
        matmul = is_op(_CALL_TIR)(GlobalVarPattern(), TuplePattern(operands), add_constraint=False)
        patterns.append(("dequantize_matmul", matmul, {"dequantize": dequantize, "matmul": matmul}, _is_dequantize))
    return relax.transform.FuseOpsByPattern(patterns, bind_constants=False)
