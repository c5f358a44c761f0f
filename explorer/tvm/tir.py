"""The TIR walker: operation counts, buffer uses and access sites of lowered kernels.

Reads each kernel (PrimFunc) as it stands after ``tirx.FlattenBuffer`` in TVM's own lowering
pipeline: blocks are gone, init blocks have become ``if k == 0`` guards, buffers are flat and
compacted, GPU thread bindings are ``thread_extent`` attributes. Every statement is weighted by
the trip count of the loops (and threads) around it.

Counting rules:
- arithmetic is counted only in the *values* stored, never in buffer indices or guard conditions;
- ``C[i] = C[i] + a * b`` is one multiply-accumulate (``mac``) in the dtype of ``a`` and ``b``
  before any widening cast (int8 x int8 accumulated in int32 is an int8 mac, and the widening
  casts are part of it); every other cast is counted as a ``cast`` in its destination dtype;
- the arithmetic of a multiply-add's operand (a weight dequantized inside a matmul) counts once per
  register-tile position it depends on: LLVM unrolls the tile and computes the operand once for the
  accumulators that differ only along loops it does not use, as it loads it once for them. So does
  the schedule's conversion of an operand widened into the accumulator (not an operation of its own);
- an ``if`` whose condition is ``v == 0`` for loop variables runs ``1/extent`` as often as its
  loop body; any other condition is assumed true (an upper bound);
- loads and stores are charged at their buffer's storage scope: kernel parameters and
  kernel-allocated ``global`` buffers are global memory, ``shared``/``local`` are on-chip, and a
  kernel-allocated buffer of at most ``STACK_BYTES`` (a compacted accumulator) is ``local``.

Beside the counts, the walker reads the schedule (:class:`ScheduleKey`): for every operation and
every memory access, the vector lanes it runs with (its dtype's lanes times the vectorized loops
around it), the extent of the parallel loops around it, and for an accumulation (``C[i] = C[i] +
...``, ``max`` and ``min`` too) the independent accumulators its innermost reduction loop updates,
which bounds it by the operation's latency when they are few.
"""

from __future__ import annotations

from collections import Counter

import tvm
import tvm_ffi
from tvm import sym

from cost_models.workload import ScheduleKey

from .. import reuse
from ..workload_table import BufferUse, KernelWorkload, in_registers

_BINARY_KIND = {
    "Add": "add", "Sub": "add", "Mul": "mul", "Div": "div", "FloorDiv": "div", "FloorMod": "div",
    "Mod": "div", "Max": "cmp", "Min": "cmp", "LT": "cmp", "LE": "cmp", "GT": "cmp", "GE": "cmp",
    "EQ": "cmp", "NE": "cmp",
    # bit operations (unpacking int4 weights) take an integer ALU slot as an add does
    "RShift": "add", "LShift": "add", "BitwiseAnd": "add", "BitwiseOr": "add", "BitwiseXor": "add",
}
_SPECIAL_CALLS = {
    "exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "sqrt", "rsqrt", "erf",
    "pow", "sin", "cos", "tan", "atan", "asin", "acos", "sinh", "cosh", "atanh", "asinh", "acosh",
}
_CHEAP_CALLS = {"fabs", "floor", "ceil", "round", "trunc", "nearbyint", "copysign", "isnan", "isinf",
                "isfinite"}
_SELECT_CALLS = {"if_then_else"}
#: Threads that execute one tensor-core fragment operation together.
WARP_SIZE = 32
_WMMA_CALLS = {"tvm_mma_sync", "tvm_load_matrix_sync", "tvm_store_matrix_sync", "tvm_fill_fragment"}
_LLVM_CALLS = {"call_llvm_pure_intrin", "call_llvm_intrin"}
#: ``tirx.ForKind`` values by name.
_FOR_KINDS = {0: "serial", 1: "parallel", 2: "vectorized", 3: "unrolled", 4: "thread_binding"}
#: LLVM intrinsics that are dot-product instructions: (operand dtype, MACs per call).
TENSOR_INTRINSICS = {"llvm.x86.avx512.vpdpbusd.512": ("int8", 64)}


def _dtype_of(expr) -> tuple[str, int]:
    """(scalar dtype string, lanes) of a TIR expression."""
    dt = expr.ty.dtype if hasattr(expr, "ty") and hasattr(expr.ty, "dtype") else getattr(expr, "dtype", "handle")
    dt = tvm.DataType(str(dt))
    lanes = max(int(dt.lanes), 1)
    base = str(dt).split("x")[0] if lanes > 1 else str(dt)
    return base, lanes


def _vars(expr) -> list:
    """The variables an expression uses."""
    return list(tvm.tirx.analysis.undefined_vars(expr))


def _bytes_of(dtype: str) -> float:
    return tvm.DataType(dtype).bits / 8


def _int(expr) -> int | None:
    if isinstance(expr, int):
        return expr
    return int(expr.value) if hasattr(expr, "value") and type(expr).__name__ == "IntImm" else None


class _Walker:
    def __init__(self, func: tvm.tirx.PrimFunc):
        self.ops: Counter = Counter()
        self.uses: dict = {}  # buffer var -> BufferUse
        self.loop_extent: dict = {}  # loop var -> extent
        # the loop tree and access sites of the reuse model (see explorer.reuse)
        self.loops: list[reuse.Loop] = []
        self.path: list[tuple[int, object]] = []  # (loop id, loop var) of the enclosing loops
        self.sites: dict = {}
        self.analyzer = sym.Analyzer()  # knows loop ranges and let-bound values, to simplify indices
        self.by_data: dict = {}  # buffer data var -> (BufferUse, dtype), for tensor-core intrinsics
        self.fragment = (16, 16, 16)  # (m, n, k) of the last wmma fragment operation seen
        self.tensorized_macs = 0.0  # MACs done by dot-product instructions and tensor cores
        self.schedule: Counter = Counter()  # ScheduleKey -> operations (or elements accessed)
        self.frames: list[tuple[object, int, str]] = []  # (loop var, extent, kind) of the enclosing loops
        self.parallel = 1  # product of the enclosing parallel loops' extents
        self.vector = 1  # product of the enclosing vectorized loops' extents
        self.accumulating = None  # the store of the multiply-add whose operands are being walked
        self.sharing = 1  # accumulators of the register tile that share the operand being walked
        by_name = {}
        for i, p in enumerate(func.params):
            ty = p.ty
            if hasattr(ty, "shape") and hasattr(ty, "dtype"):
                size = 1
                for d in ty.shape:
                    size *= _int(d) or 1
                use = BufferUse(p.name, "param", i, size * _bytes_of(str(ty.dtype)))
                by_name[p.name] = use
                self.uses[p] = use
        self.param_by_name = by_name

    # --- schedule ---------------------------------------------------------------------------------
    def _op(self, kind: str, dtype: str, count: float, lanes: int, chains: int = 0, schedule_kind: str = "") -> None:
        """Count ``count`` operations of ``kind`` in ``dtype``, run ``lanes`` (of the expression's
        dtype) at a time, under the current loops (``schedule_kind``: the kind the schedule records,
        ``wmac`` for a multiply-add into a wider accumulator)."""
        count /= self.sharing
        self.ops[(kind, dtype)] += count
        self.schedule[ScheduleKey(schedule_kind or kind, dtype, lanes * self.vector, self.parallel, chains)] += count

    def _vector_stride(self, indices) -> int:
        """How far apart the lanes of an access inside vectorized loops lie, in elements: 1 for a
        contiguous vector (and outside vectorized loops), 0 for a broadcast (one element loaded for every
        lane), the stride of a strided one, a large number where the index is not linear along the
        innermost vectorized loop. Any stride but 0 and 1 is accessed lane by lane: TVM's codegen emits a
        strided vector as one scalar load and insert per lane (``vpinsrb``, ``vinsertps``)."""
        inner = next((var for var, _, kind in reversed(self.frames) if kind == "vectorized"), None)
        if inner is None or len(indices) != 1:
            return 1
        coeffs = sym.detect_linear_equation(self.analyzer.simplify(indices[0]), [inner])
        step = _int(coeffs[0]) if len(coeffs) == 2 else None
        return abs(step) if step is not None else 1 << 30

    def _tile_sharing(self, indices) -> int:
        """How many accumulators of the register tile around the multiply-add being walked share one
        load of an operand at ``indices``, or one evaluation of an operand expression that uses those
        indices: the extents of the loops inside its innermost reduction loop that they do not use
        (LLVM unrolls the tile and loads or computes it once for all of them); 1 outside one."""
        store = self.accumulating
        if store is None:
            return 1
        written = [v for idx in store.indices for v in _vars(self.analyzer.simplify(idx))]
        read = [v for idx in indices for v in _vars(self.analyzer.simplify(idx))]
        shared = 1
        for var, extent, kind in reversed(self.frames):
            if kind == "vectorized":
                continue
            if kind in ("serial", "unrolled") and not any(var.same_as(u) for u in written):
                return shared  # the reduction loop: the tile is the loops inside it
            if not any(var.same_as(u) for u in read):
                shared *= extent
        return 1

    def _chains(self, store) -> int:
        """Independent accumulators the innermost reduction loop around an accumulating ``store``
        updates: the elements the loops inside it write, over the vector lanes of one instruction
        (``0`` when no loop around the store leaves its index unchanged)."""
        used = [v for idx in store.indices for v in _vars(self.analyzer.simplify(idx))]
        inner = 1
        for var, extent, kind in reversed(self.frames):
            indexes = any(var.same_as(u) for u in used)
            if not indexes and kind in ("serial", "unrolled"):
                return max(inner // max(self.vector, 1), 1)
            if indexes:
                inner *= extent
        return 0

    # --- statements ---------------------------------------------------------------------------
    def stmt(self, s, w: float) -> None:
        kind = type(s).__name__
        if kind == "SeqStmt":
            for x in s.seq:
                self.stmt(x, w)
        elif kind == "For":
            ext = _int(s.extent)
            ext = ext if ext is not None else 1
            self.loop_extent[s.loop_var] = ext
            self._enter(s.loop_var, ext)
            loop_kind = _FOR_KINDS.get(int(s.kind), "serial")
            self.frames.append((s.loop_var, ext, loop_kind))
            saved = self.parallel, self.vector
            if loop_kind == "parallel":
                self.parallel *= ext
            elif loop_kind == "vectorized":
                self.vector *= ext
            self.stmt(s.body, w * ext)
            self.parallel, self.vector = saved
            self.frames.pop()
            self.path.pop()
        elif kind == "AttrStmt":
            if s.attr_key in ("thread_extent", "virtual_thread"):
                ext = _int(s.value) or 1
                w *= ext
                self._enter(s.node.var, ext, spread=str(s.node.thread_tag).startswith("blockIdx"))
                self.stmt(s.body, w)
                self.path.pop()
            else:
                self.stmt(s.body, w)
        elif kind == "IfThenElse":
            frac = self._init_fraction(s.condition)
            self.stmt(s.then_case, w * frac)
            if s.else_case is not None:
                self.stmt(s.else_case, w * (1 - frac) if frac < 1 else 0.0)
        elif kind == "BufferStore":
            self._store(s, w)
        elif kind in ("DeclBuffer", "AllocBuffer"):
            self._declare(s)
            if hasattr(s, "body") and s.body is not None:
                self.stmt(s.body, w)
        elif kind in ("LetStmt", "Bind"):
            self.analyzer.bind(s.var, s.value)
            self.index(s.value, w)
            if hasattr(s, "body") and s.body is not None:
                self.stmt(s.body, w)
        elif kind == "Evaluate":
            self.value(s.value, w)
        elif kind == "While":
            self.stmt(s.body, w)
        elif hasattr(s, "body") and s.body is not None:  # AssertStmt and other wrappers
            self.stmt(s.body, w)

    def _enter(self, var, extent: int, spread: bool = False) -> None:
        lid = len(self.loops)
        self.analyzer.bind(var, tvm.ir.Range(0, extent))
        self.loops.append(reuse.Loop(lid, self.path[-1][0] if self.path else -1, extent, spread))
        self.path.append((lid, var))

    def _site(self, use: BufferUse, indices, elem_bytes: int) -> None:
        """Record an access site for the reuse model: its loops and index strides."""
        if len(indices) == 1 and type(indices[0]).__name__ == "Ramp" and _int(indices[0].stride) == 1:
            # a contiguous vector (a tensor intrinsic's 64-byte operand): one access of all its lanes
            elem_bytes *= int(indices[0].lanes)
            indices = [indices[0].base]
        elif len(indices) == 1 and type(indices[0]).__name__ == "Broadcast":
            indices = [indices[0].value]
        path = tuple(lid for lid, _ in self.path)
        key = (id(use), path, tuple(tvm_ffi.structural_hash(i) for i in indices))
        if key in self.sites:
            return
        loop_vars = [v for _, v in self.path]
        terms, offset, affine = (), None, False
        if len(indices) == 1:
            index = self.analyzer.simplify(indices[0])
            coeffs = sym.detect_linear_equation(index, loop_vars) if loop_vars else [index]
            if len(coeffs) == len(loop_vars) + 1 and all(_int(c) is not None for c in coeffs[:-1]):
                affine = True
                terms = tuple((lid, _int(c)) for (lid, _), c in zip(self.path, coeffs) if _int(c))
                offset = _int(coeffs[-1])
        if not affine:  # which loops the index uses, for the non-affine estimate
            used = [v for idx in indices for v in tvm.tirx.analysis.undefined_vars(self.analyzer.simplify(idx))]
            terms = tuple((lid, 1) for lid, v in self.path if any(v.same_as(u) for u in used))
        self.sites[key] = reuse.Site(use.name, elem_bytes, use.size_bytes, path, terms, offset, affine)

    def _declare(self, s) -> None:
        buf = s.buffer
        size = 1
        for d in buf.shape:
            size *= _int(d) or 1
        nbytes = size * _bytes_of(str(buf.dtype))
        if type(s).__name__ == "DeclBuffer" and buf.name in self.param_by_name:
            self.uses[buf] = self.param_by_name[buf.name]  # a flat view of the parameter
        else:
            scope = buf.scope() or "global"
            self.uses[buf] = BufferUse(buf.name, scope, -1, nbytes)
        self.by_data[buf.data] = (self.uses[buf], str(buf.dtype))

    def _init_fraction(self, cond) -> float:
        """Share of iterations in which ``cond`` holds, for ``v == 0 and w == 0`` guards on loops."""
        terms, stack = [], [cond]
        while stack:
            c = stack.pop()
            if type(c).__name__ == "And":
                stack += [c.a, c.b]
            else:
                terms.append(c)
        frac = 1.0
        for t in terms:
            if type(t).__name__ == "EQ" and _int(t.b) == 0 and t.a in self.loop_extent:
                frac /= max(self.loop_extent[t.a], 1)
            else:
                return 1.0 if frac == 1.0 else frac
        return frac

    def _access(self, buf, dtype_expr, w: float, store: bool, indices=None) -> None:
        use = self.uses.get(buf)
        if use is None:  # a buffer seen without declaration: treat as kernel scratch
            use = self.uses[buf] = BufferUse(buf.name, buf.scope() or "global", -1, 0.0)
        dtype, lanes = _dtype_of(dtype_expr)
        n = w * lanes
        in_memory = use.param_index >= 0 or (use.scope == "global" and not in_registers(use))
        if indices is not None and in_memory:
            self._site(use, indices, int(_bytes_of(dtype)) or 1)
        width = lanes * self.vector
        if in_memory or use.scope.startswith("shared"):
            stride = 1 if indices is None else self._vector_stride(indices)
            if stride > 1:  # TVM's LLVM codegen loads or stores a strided vector one lane at a time
                kind = "scatter" if store else "gather"
            else:
                kind = "store" if store else "broadcast" if stride == 0 and width > 1 else "load"
            self.schedule[ScheduleKey(kind, dtype, width, self.parallel)] += \
                n if store or indices is None else n / self._tile_sharing(indices)
        elif indices is not None and self.vector > 1 and self._vector_stride(indices) > 1:
            # a register tile read or written across its rows: LLVM assembles the vector lane by lane
            self.schedule[ScheduleKey("scatter" if store else "gather", dtype, width, self.parallel)] += n
        if store:
            use.store_count += n
            use.store_bytes += n * _bytes_of(dtype)
        else:
            use.load_count += n
            use.load_bytes += n * _bytes_of(dtype)

    def _store(self, s, w: float) -> None:
        for idx in s.indices:
            self.index(idx, w)
        self._access(s.buffer, s.value, w, store=True, indices=s.indices)
        value = s.value
        kind = type(value).__name__
        accumulated = [(acc, other) for acc, other in ((value.a, value.b), (value.b, value.a))
                       if type(acc).__name__ == "TensorLoad" and acc.source.same_as(s.buffer)
                       ] if kind in ("Add", "Max", "Min") else []
        # C[i] = C[i] + x * y  ->  one mac
        for acc, prod in accumulated:
            if kind == "Add" and type(prod).__name__ == "Mul":
                self._load(acc, w)
                dtype, lanes = _dtype_of(self._uncast(prod.a))
                widening = _dtype_of(value)[0] != dtype  # int8 x int8 into int32, fp16 x fp16 into fp32
                self._op("mac", dtype, w * lanes, lanes, self._chains(s), "wmac" if widening else "mac")
                # widening the operands to the accumulator's dtype is part of the MAC (int8 x int8
                # into int32, fp16 x fp16 into fp32), not a cast of its own
                self.accumulating, outer = s, self.accumulating
                for operand in (prod.a, prod.b):
                    inner = self._uncast(operand)
                    # an operand computed from its loads (a weight dequantized in the kernel) is
                    # computed once per tile position it does not depend on, as its loads are
                    self.sharing = self._tile_sharing([inner])
                    if type(operand).__name__ == "Cast":  # widened once per value, not per multiply-add
                        wide, wide_lanes = _dtype_of(operand)
                        self.schedule[ScheduleKey("cast", wide, wide_lanes * self.vector, self.parallel)] += \
                            w * wide_lanes / self.sharing
                    self.value(inner, w)
                self.sharing = 1
                self.accumulating = outer
                return
        if accumulated:  # C[i] = C[i] + x, max(C[i], x), min(C[i], x): a chain through C[i]
            acc, other = accumulated[0]
            dtype, lanes = _dtype_of(value)
            self._op(_BINARY_KIND[kind], dtype, w * lanes, lanes, self._chains(s))
            self._load(acc, w)
            self.value(other, w)
            return
        self.value(value, w)

    @staticmethod
    def _uncast(e):
        while type(e).__name__ == "Cast":
            e = e.value
        return e

    def _load(self, e, w: float) -> None:
        self._access(e.source, e, w, store=False, indices=e.indices)
        for idx in e.indices:
            self.index(idx, w)

    # --- expressions --------------------------------------------------------------------------
    def value(self, e, w: float) -> None:
        """Walk an expression whose arithmetic is real work."""
        kind = type(e).__name__
        if kind == "TensorLoad":
            self._load(e, w)
        elif kind in _BINARY_KIND:
            dtype, lanes = _dtype_of(e)
            if kind in ("LT", "LE", "GT", "GE", "EQ", "NE"):
                dtype, lanes = _dtype_of(e.a)
            self._op(_BINARY_KIND[kind], dtype, w * lanes, lanes)
            self.value(e.a, w)
            self.value(e.b, w)
        elif kind == "Cast" and _is_index_arithmetic(e.value):
            self.index(e.value, w)  # e.g. an int4 nibble's shift, from the loop variables
        elif kind == "Cast":
            dtype, lanes = _dtype_of(e)
            self._op("cast", dtype, w * lanes, lanes)
            self.value(e.value, w)
        elif kind == "Select":
            dtype, lanes = _dtype_of(e)
            self._op("select", dtype, w * lanes, lanes)
            self.index(e.condition, w)
            self.value(e.true_value, w)
            self.value(e.false_value, w)
        elif kind == "Call":
            name = str(e.op.name).split(".")[-1] if hasattr(e.op, "name") else ""
            dtype, lanes = _dtype_of(e)
            if name in _WMMA_CALLS:
                self._wmma(name, e.args, w)
                return
            intrinsic = _llvm_intrinsic(e.args[0]) if name in _LLVM_CALLS else ""
            if intrinsic in TENSOR_INTRINSICS:
                operand, macs = TENSOR_INTRINSICS[intrinsic]
                self.ops[("mac", operand)] += w * macs
                self.schedule[ScheduleKey("dot", operand, macs * self.vector, self.parallel)] += w * macs
                self.tensorized_macs += w * macs
                for a in e.args[1:]:
                    self.value(a, w)
                return
            if name in _SELECT_CALLS:
                self._op("select", dtype, w * lanes, lanes)
                self.index(e.args[0], w)
                for a in e.args[1:]:
                    self.value(a, w)
                return
            if name in _SPECIAL_CALLS:  # the schedule keeps the function: their costs differ 5x
                self._op("special", dtype, w * lanes, lanes, schedule_kind=f"special-{name}")
            elif name in _CHEAP_CALLS:
                self._op("cmp", dtype, w * lanes, lanes)
            for a in e.args:
                if hasattr(a, "ty") or hasattr(a, "dtype"):
                    self.value(a, w)
        elif kind in ("Broadcast",):
            self.value(e.value, w)
        elif kind in ("Let",):
            self.index(e.value, w)
            self.value(e.body, w)
        elif kind in ("Ramp", "Shuffle"):
            self.index(e, w)
        # Var, IntImm, FloatImm, StringImm: no work

    def _count(self, use: BufferUse, elems: float, elem_bytes: float, w: float, store: bool) -> None:
        if store:
            use.store_count += w * elems
            use.store_bytes += w * elems * elem_bytes
        else:
            use.load_count += w * elems
            use.load_bytes += w * elems * elem_bytes

    def _wmma(self, name: str, args, w: float) -> None:
        """Tensor-core fragment intrinsics: an mma_sync is m*n*k MACs in its A fragment's dtype;
        loading or storing a fragment moves its elements between memory and registers. They are
        warp-collective: the thread extents around them count each of a warp's lanes."""
        w = w / WARP_SIZE

        def frag(arg):
            return self.by_data.get(arg) if isinstance(arg, tvm.tirx.Var) else None

        if name == "tvm_mma_sync":
            m, n, k = self.fragment
            a, c = frag(args[2]), frag(args[0])
            dtype = a[1] if a else "float16"
            self.ops[("mac", dtype)] += w * m * n * k
            self.schedule[ScheduleKey("mma", dtype, m * n * k, self.parallel)] += w * m * n * k
            self.tensorized_macs += w * m * n * k
            for f, elems in ((a, m * k), (frag(args[4]), k * n)):
                if f:
                    self._count(f[0], elems, _bytes_of(f[1]), w, store=False)
            if c:
                self._count(c[0], m * n, _bytes_of(c[1]), w, store=False)
                self._count(c[0], m * n, _bytes_of(c[1]), w, store=True)
            return
        shape = [_int(x) for x in args[1:4]]
        if all(x is not None for x in shape):
            self.fragment = tuple(shape)
        m, n, k = self.fragment
        f = frag(args[0])
        if f is None:
            return
        scope = f[0].scope
        elems = m * k if scope.endswith("matrix_a") else k * n if scope.endswith("matrix_b") else m * n
        if name == "tvm_fill_fragment":
            self._count(f[0], elems, _bytes_of(f[1]), w, store=True)
            return
        self._count(f[0], elems, _bytes_of(f[1]), w, store=(name == "tvm_load_matrix_sync"))
        ptr = args[5]  # tvm_access_ptr(type, data, offset, extent, rw) of the memory side
        if type(ptr).__name__ == "Call" and len(ptr.args) >= 2:
            mem = frag(ptr.args[1])
            if mem:
                self._count(mem[0], elems, _bytes_of(mem[1]), w, store=(name == "tvm_store_matrix_sync"))

    def index(self, e, w: float) -> None:
        """Walk an index or condition expression: only the loads inside count."""
        kind = type(e).__name__
        if kind == "TensorLoad":
            self._load(e, w)
            return
        for attr in ("a", "b", "value", "condition", "true_value", "false_value", "base", "stride", "body"):
            child = getattr(e, attr, None) if kind not in ("IntImm", "FloatImm", "Var", "StringImm") else None
            if child is not None and not isinstance(child, (int, float, str)):
                self.index(child, w)
        if kind == "Call":
            for a in e.args:
                self.index(a, w)


def _is_index_arithmetic(e) -> bool:
    """Whether an expression is integer arithmetic of loop variables and constants alone (no loads):
    work LLVM strength-reduces or hoists, kept apart from the kernel's arithmetic as indices are."""
    if not _dtype_of(e)[0].startswith(("int", "uint")):
        return False
    loads = []
    tvm_ffi.structural_visit(e, [((tvm.ir.expr.TensorLoad,), lambda *node: loads.append(node))])
    return not loads


def _llvm_intrinsic(arg) -> str:
    """The name of the LLVM intrinsic a ``call_llvm_(pure_)intrin`` names (by string or by id)."""
    if type(arg).__name__ == "StringImm":
        return str(arg.value)
    ident = _int(arg)
    if ident is None:
        return ""
    from tvm.target import codegen

    return next((n for n in TENSOR_INTRINSICS if int(codegen.llvm_lookup_intrinsic_id(n)) == ident), "")


def analyse_primfunc(func: tvm.tirx.PrimFunc, name: str) -> KernelWorkload:
    """Operation counts and buffer accesses of one lowered kernel, per call."""
    walker = _Walker(func)
    walker.stmt(func.body, 1.0)
    unique = {id(u): u for u in walker.uses.values()}
    buffers = sorted(unique.values(), key=lambda u: (u.param_index < 0, u.param_index, u.name))
    profile = reuse.reuse_profile(walker.loops, list(walker.sites.values()))
    return KernelWorkload(name=name, ops=walker.ops, buffers=buffers, reuse=profile,
                          tensorized_macs=walker.tensorized_macs, schedule=walker.schedule)


def analyse_module(mod: tvm.IRModule) -> dict[str, KernelWorkload]:
    """Analyse every PrimFunc of a lowered module, keyed by its global name."""
    out = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            out[gv.name_hint] = analyse_primfunc(func, gv.name_hint)
    return out
