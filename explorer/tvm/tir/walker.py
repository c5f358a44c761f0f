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
  the schedule's conversion of an operand widened into the accumulator (not an operation of its own),
  and the load of a dot-product instruction's operand (``VPDPBUSD``'s, ``VDPBF16PS``'s weight vector);
- a subexpression that a stored value repeats is counted once (what TVM's ``CommonSubexprElim``, which
  runs after the capture, and LLVM leave): inlining an element-wise chain substitutes each producer's
  expression at every use, so an epilogue with a sigmoid's ``fast_exp`` polynomial repeats its input
  several times (yolo-block's fused SiLU convolution: 803 expression nodes, 112 of them distinct);
- a statement of a serial loop's body that computes the same thing every iteration (it does not use the
  loop variable and touches no buffer the varying statements write) counts once, as LLVM hoists it
  (:func:`loop_invariant`: MetaSchedule's layer norm recomputes a row's variance per element);
- an ``if`` runs in the share of the enclosing loops' and threads' points where its condition holds,
  counted over their ranges (:meth:`~explorer.tvm.tir.loops.LoopNest.init_fraction`: ``k == 0``, a
  padded tail ``i * 128 + tx < 200``, a fused index's bound); a condition on anything else (data) is
  assumed true (an upper bound); ``if_then_else`` counts the side each point takes;
- loads and stores are charged at their buffer's storage scope: kernel parameters and
  kernel-allocated ``global`` buffers are global memory, ``shared``/``local`` are on-chip, and a
  kernel-allocated buffer of at most ``STACK_BYTES`` (a compacted accumulator) is ``local``.

Beside the counts, the walker reads the schedule (:class:`ScheduleKey`): for every operation and
every memory access, the vector lanes it runs with (its dtype's lanes times the vectorized loops
around it), the extent of the parallel loops around it, and for an accumulation (``C[i] = C[i] +
...``, ``max`` and ``min`` too) the independent accumulators its innermost reduction loop updates,
which bounds it by the operation's latency when they are few. The loops are kept by
:class:`~explorer.tvm.tir.loops.LoopNest`, the buffers by :class:`~explorer.tvm.tir.buffers.Buffers`.
"""

from __future__ import annotations

import re
from collections import Counter

import tvm
import tvm_ffi

from cost_models.workload import ScheduleKey
from explorer.tvm.tir.buffers import Buffers
from explorer.tvm.tir.expr import (
    BINARY_KIND,
    CHEAP_CALLS,
    EXTERN_CALLS,
    FOR_KINDS,
    LLVM_CALLS,
    MATRIX_INTRINSICS,
    PTX_DTYPES,
    PTX_MMA_CALLS,
    SELECT_CALLS,
    SPECIAL_CALLS,
    TENSOR_INTRINSICS,
    USEFUL_MACS_ATTR,
    WARP_SIZE,
    WMMA_CALLS,
    bytes_of,
    dtype_of,
    int_of,
    is_index_arithmetic,
    llvm_intrinsic,
    tensor_loads,
    uncast,
)
from explorer.tvm.tir.loops import LoopNest
from explorer.workload import reuse
from explorer.workload.table import KernelWorkload, in_registers

#: Calls a statement may make and still be hoisted: pure arithmetic on its operands.
PURE_CALLS = SPECIAL_CALLS | CHEAP_CALLS | SELECT_CALLS | {"reinterpret", "likely", "fast_exp"}


def _accesses(stmt) -> tuple[set[str], set[str], bool]:
    """In one walk of ``stmt``: the names of the buffers it loads from and stores to (a buffer's ``data`` is a
    new object at every access in TVM 0.27, so names are what identify it within a kernel), and whether it
    touches memory the walker cannot see through loads and stores: an ``Evaluate`` (tensor-core intrinsics
    reach their fragments through pointers) or a call that is not pure arithmetic."""
    reads, writes, opaque = set(), set(), []

    def store(node, visitor):
        writes.add(str(node.buffer.name))
        visitor.default_visit(node)

    def load(node, visitor):
        reads.add(str(node.source.name))
        visitor.default_visit(node)

    def evaluate(node, visitor):
        opaque.append(node)

    def call(node, visitor):
        name = str(node.op.name).split(".")[-1] if hasattr(node.op, "name") else ""
        if name not in PURE_CALLS:
            opaque.append(node)
        visitor.default_visit(node)

    tvm_ffi.structural_visit(stmt, [((tvm.tirx.BufferStore,), store), ((tvm.ir.TensorLoad,), load),
                                    ((tvm.tirx.Evaluate,), evaluate), ((tvm.ir.expr.Call,), call)])
    return reads, writes, bool(opaque)


def loop_invariant(body: list, loop_var) -> list[bool]:
    """For each statement of a serial loop's body, whether it computes the same thing every iteration, so
    that LLVM runs it once (hoisted): it does not use the loop variable, reads or writes no buffer that a
    varying statement of the body writes (in any iteration), and reaches memory only through loads and
    stores (:func:`_accesses`). MetaSchedule's layer norm recomputes
    a row's variance (64 adds) for every output element of the row; built, it took 19 us where the 2.1M
    dependent adds the walker counted would take 1.7 ms."""
    declaration = [type(stmt).__name__ in ("AllocBuffer", "DeclBuffer") for stmt in body]
    accesses = [(set(), set(), False) if d else _accesses(stmt) for stmt, d in zip(body, declaration)]
    writes = [w for _, w, _ in accesses]
    touches = [r | w for r, w, _ in accesses]
    varying = [opaque or (not d and loop_var in set(tvm.tirx.analysis.undefined_vars(stmt)))
               for stmt, d, (_, _, opaque) in zip(body, declaration, accesses)]
    changed = True
    while changed:
        written = set().union(*(w for w, v in zip(writes, varying) if v))
        changed = False
        for k, stmt_touches in enumerate(touches):
            if not varying[k] and stmt_touches & written:
                varying[k] = changed = True
    return [not v for v in varying]


#: Expression kinds that count once per statement however often the statement's value repeats them.
REPEATABLE = {*BINARY_KIND, "Cast", "Select", "Call", "TensorLoad"}


class _Walker:
    """One walk through one kernel, counting as it goes."""

    def __init__(self, func: tvm.tirx.PrimFunc):
        self.ops: Counter = Counter()
        self.nest = LoopNest()
        self.buffers = Buffers(func)
        self.fragment = (16, 16, 16)  # (m, n, k) of the last wmma fragment operation seen
        self.tensorized_macs = 0.0  # MACs done by dot-product instructions and tensor cores
        self.schedule: Counter = Counter()  # ScheduleKey -> operations (or elements accessed)
        self.accumulating = None  # the store of the multiply-add whose operands are being walked
        self.storing = None  # the store being walked
        self.sharing = 1  # accumulators of the register tile that share the operand being walked
        self.counted: set[int] = set()  # structural hashes of the current statement's counted subexpressions

    def _op(self, kind: str, dtype: str, count: float, lanes: int, chains: int = 0, schedule_kind: str = "") -> None:
        """Count ``count`` operations of ``kind`` in ``dtype``, run ``lanes`` (of the expression's
        dtype) at a time, under the current loops (``schedule_kind``: the kind the schedule records,
        ``wmac`` for a multiply-add into a wider accumulator)."""
        count /= self.sharing
        self.ops[(kind, dtype)] += count
        self.schedule[ScheduleKey(schedule_kind or kind, dtype, lanes * self.nest.vector, self.nest.parallel,
                                  chains)] += count

    # --- statements ---------------------------------------------------------------------------
    def stmt(self, s, w: float) -> None:
        """Walk a statement run ``w`` times."""
        kind = type(s).__name__
        if kind == "SeqStmt":
            for x in s.seq:
                self.stmt(x, w)
        elif kind == "For":
            ext = int_of(s.extent)
            ext = ext if ext is not None else 1
            loop_kind = FOR_KINDS.get(int(s.kind), "serial")
            with self.nest.loop(s.loop_var, ext, loop_kind):
                if loop_kind in ("serial", "unrolled") and type(s.body).__name__ == "SeqStmt":
                    invariant = loop_invariant(s.body.seq, s.loop_var)
                    for x, once in zip(s.body.seq, invariant):
                        self.stmt(x, w if once else w * ext)
                else:
                    self.stmt(s.body, w * ext)
        elif kind == "AttrStmt":
            if s.attr_key in ("thread_extent", "virtual_thread"):
                ext = int_of(s.value) or 1
                w *= ext
                tag = str(s.node.thread_tag)
                with self.nest.threads(s.node.var, ext, spread=tag.startswith("blockIdx"), tag=tag):
                    self.stmt(s.body, w)
            else:
                self.stmt(s.body, w)
        elif kind == "IfThenElse":
            frac = self.nest.init_fraction(s.condition)
            self.stmt(s.then_case, w * frac)
            if s.else_case is not None:
                self.stmt(s.else_case, w * (1 - frac) if frac < 1 else 0.0)
        elif kind == "BufferStore":
            self._store(s, w)
        elif kind in ("DeclBuffer", "AllocBuffer"):
            self.buffers.declare(s)
            if hasattr(s, "body") and s.body is not None:
                self.stmt(s.body, w)
        elif kind in ("LetStmt", "Bind"):
            self.nest.analyzer.bind(s.var, s.value)
            self.index(s.value, w)
            if hasattr(s, "body") and s.body is not None:
                self.stmt(s.body, w)
        elif kind == "Evaluate":
            self.counted = set()
            self.value(s.value, w)
        elif kind == "While":
            self.stmt(s.body, w)
        elif hasattr(s, "body") and s.body is not None:  # AssertStmt and other wrappers
            self.stmt(s.body, w)

    def _access(self, buf, dtype_expr, w: float, store: bool, indices=None) -> None:
        use = self.buffers.use(buf)
        dtype, lanes = dtype_of(dtype_expr)
        n = w * lanes
        in_memory = use.param_index >= 0 or (use.scope == "global" and not in_registers(use))
        if indices is not None and in_memory:
            self.buffers.site(use, indices, int(bytes_of(dtype)) or 1, self.nest)
        width = lanes * self.nest.vector
        if in_memory or use.scope.startswith("shared"):
            stride = 1 if indices is None else self.nest.vector_stride(indices)
            if stride > 1:  # TVM's LLVM codegen loads or stores a strided vector one lane at a time
                kind = "scatter" if store else "gather"
            else:
                kind = "store" if store else "broadcast" if stride == 0 and width > 1 else "load"
            self.schedule[ScheduleKey(kind, dtype, width, self.nest.parallel)] += \
                n if store or indices is None else n / self.nest.tile_sharing(self.accumulating, indices)
        elif indices is not None and self.nest.vector > 1 and self.nest.vector_stride(indices) > 1:
            # a register tile read or written across its rows: LLVM assembles the vector lane by lane
            self.schedule[ScheduleKey("scatter" if store else "gather", dtype, width, self.nest.parallel)] += n
        if store:
            use.store_count += n
            use.store_bytes += n * bytes_of(dtype)
        else:
            use.load_count += n
            use.load_bytes += n * bytes_of(dtype)

    def _store(self, s, w: float) -> None:
        self.counted = set()
        self.storing = s
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
                dtype, lanes = dtype_of(uncast(prod.a))
                widening = dtype_of(value)[0] != dtype  # int8 x int8 into int32, fp16 x fp16 into fp32
                self._op("mac", dtype, w * lanes, lanes, self.nest.chains(s), "wmac" if widening else "mac")
                # widening the operands to the accumulator's dtype is part of the MAC (int8 x int8
                # into int32, fp16 x fp16 into fp32), not a cast of its own
                self.accumulating, outer = s, self.accumulating
                for operand in (prod.a, prod.b):
                    inner = uncast(operand)
                    # an operand computed from its loads (a weight dequantized in the kernel) is
                    # computed once per tile position it does not depend on, as its loads are
                    self.sharing = self.nest.tile_sharing(self.accumulating, [inner])
                    narrow, wide_lanes = dtype_of(inner)
                    if narrow != dtype_of(operand)[0]:  # widened once per value, not per multiply-add
                        self.schedule[ScheduleKey("widen", narrow, wide_lanes * self.nest.vector, self.nest.parallel)] += \
                            w * wide_lanes / self.sharing
                    self.value(inner, w)
                self.sharing = 1
                self.accumulating = outer
                return
        if accumulated:  # C[i] = C[i] + x, max(C[i], x), min(C[i], x): a chain through C[i]
            acc, other = accumulated[0]
            dtype, lanes = dtype_of(value)
            self._op(BINARY_KIND[kind], dtype, w * lanes, lanes, self.nest.chains(s))
            self._load(acc, w)
            self.value(other, w)
            return
        self.value(value, w)

    def _load(self, e, w: float) -> None:
        self._access(e.source, e, w, store=False, indices=e.indices)
        for idx in e.indices:
            self.index(idx, w)

    # --- expressions --------------------------------------------------------------------------
    def _repeated(self, e) -> bool:
        """Whether the current statement has counted this subexpression already (then it is not again)."""
        key = tvm_ffi.structural_hash(e)
        if key in self.counted:
            return True
        self.counted.add(key)
        return False

    def value(self, e, w: float) -> None:
        """Walk an expression whose arithmetic is real work."""
        kind = type(e).__name__
        if kind in REPEATABLE and self._repeated(e):
            return
        if kind == "TensorLoad":
            self._load(e, w)
        elif kind in BINARY_KIND:
            dtype, lanes = dtype_of(e)
            if kind in ("LT", "LE", "GT", "GE", "EQ", "NE"):
                dtype, lanes = dtype_of(e.a)
            self._op(BINARY_KIND[kind], dtype, w * lanes, lanes)
            self.value(e.a, w)
            self.value(e.b, w)
        elif kind == "Cast" and is_index_arithmetic(e.value):
            self.index(e.value, w)  # e.g. an int4 nibble's shift, from the loop variables
        elif kind == "Cast":
            dtype, lanes = dtype_of(e)
            self._op("cast", dtype, w * lanes, lanes)
            self.value(e.value, w)
        elif kind == "Select":
            dtype, lanes = dtype_of(e)
            self._op("select", dtype, w * lanes, lanes)
            self.index(e.condition, w)
            self.value(e.true_value, w)
            self.value(e.false_value, w)
        elif kind == "Call":
            self._call(e, w)
        elif kind in ("Broadcast",):
            self.value(e.value, w)
        elif kind in ("Let",):
            self.index(e.value, w)
            self.value(e.body, w)
        elif kind in ("Ramp", "Shuffle"):
            self.index(e, w)
        # Var, IntImm, FloatImm, StringImm: no work

    def _call(self, e, w: float) -> None:
        name = str(e.op.name).split(".")[-1] if hasattr(e.op, "name") else ""
        dtype, lanes = dtype_of(e)
        if name in WMMA_CALLS:
            self._wmma(name, e.args, w)
            return
        if hasattr(e.op, "name") and str(e.op.name) in PTX_MMA_CALLS:
            self._ptx_mma(str(e.op.name), e.args, w)
            return
        intrinsic = (llvm_intrinsic(e.args[0]) if name in LLVM_CALLS else
                     str(e.args[0].value) if name in EXTERN_CALLS and type(e.args[0]).__name__ == "StringImm" else "")
        if intrinsic in TENSOR_INTRINSICS:
            operand, macs = TENSOR_INTRINSICS[intrinsic]
            self.ops[("mac", operand)] += w * macs
            self.schedule[ScheduleKey("dot", operand, macs * self.nest.vector, self.nest.parallel)] += w * macs
            self.tensorized_macs += w * macs
            # the register tile around the call shares an operand along the loops its load does not
            # use, as it shares a multiply-add's: one weight vector for the tile's rows
            self.accumulating, outer = self.storing, self.accumulating
            for a in e.args[1:]:
                self.value(a, w)
            self.accumulating = outer
            return
        if intrinsic in MATRIX_INTRINSICS:
            # a whole wavefront's instruction: the thread extents around it count each of its lanes;
            # its operands are each lane's registers, read per lane. A bf16 operand's reinterpretation
            # as 16-bit lanes (mfma_intrinsics) is no arithmetic: LLVM packs two a v_perm_b32, some
            # 0.02 instructions a multiply-add, so only the registers' reads are counted
            operand, macs, lanes = MATRIX_INTRINSICS[intrinsic]
            executed = w / lanes * macs
            self.ops[("mac", operand)] += executed
            self.schedule[ScheduleKey("mma", operand, macs, self.nest.parallel)] += executed
            self.tensorized_macs += executed
            for a in e.args[1:]:
                for load in tensor_loads(a):
                    self._load(load, w)
            return
        if name in SELECT_CALLS:
            self._op("select", dtype, w * lanes, lanes)
            self.index(e.args[0], w)
            # if_then_else evaluates one side (a branch in the code generated): a guarded load of a
            # padded tile is done only where its guard holds
            share = self.nest.init_fraction(e.args[0]) if name == "if_then_else" else 1.0
            self.value(e.args[1], w * share)
            self.value(e.args[2], w * (1 - share) if name == "if_then_else" else w)
            return
        if name in SPECIAL_CALLS:  # the schedule keeps the function: their costs differ 5x
            self._op("special", dtype, w * lanes, lanes, schedule_kind=f"special-{name}")
        elif name in CHEAP_CALLS:
            self._op("cmp", dtype, w * lanes, lanes)
        for a in e.args:
            if hasattr(a, "ty") or hasattr(a, "dtype"):
                self.value(a, w)

    def _wmma(self, name: str, args, w: float) -> None:
        """Tensor-core fragment intrinsics: an mma_sync is m*n*k MACs in its A fragment's dtype;
        loading or storing a fragment moves its elements between memory and registers. They are
        warp-collective: the thread extents around them count each of a warp's lanes."""
        w = w / WARP_SIZE
        frag, count = self.buffers.fragment, self.buffers.count
        if name == "tvm_mma_sync":
            m, n, k = self.fragment
            a, c = frag(args[2]), frag(args[0])
            dtype = a[1] if a else "float16"
            self.ops[("mac", dtype)] += w * m * n * k
            self.schedule[ScheduleKey("mma", dtype, m * n * k, self.nest.parallel)] += w * m * n * k
            self.tensorized_macs += w * m * n * k
            for f, elems in ((a, m * k), (frag(args[4]), k * n)):
                if f:
                    count(f[0], elems, bytes_of(f[1]), w, store=False)
            if c:
                count(c[0], m * n, bytes_of(c[1]), w, store=False)
                count(c[0], m * n, bytes_of(c[1]), w, store=True)
            return
        shape = [int_of(x) for x in args[1:4]]
        if all(x is not None for x in shape):
            self.fragment = tuple(shape)
        m, n, k = self.fragment
        f = frag(args[0])
        if f is None:
            return
        scope = f[0].scope
        elems = m * k if scope.endswith("matrix_a") else k * n if scope.endswith("matrix_b") else m * n
        if name == "tvm_fill_fragment":
            count(f[0], elems, bytes_of(f[1]), w, store=True)
            return
        count(f[0], elems, bytes_of(f[1]), w, store=(name == "tvm_load_matrix_sync"))
        ptr = args[5]  # tvm_access_ptr(type, data, offset, extent, rw) of the memory side
        if type(ptr).__name__ == "Call" and len(ptr.args) >= 2:
            mem = frag(ptr.args[1])
            if mem:
                count(mem[0], elems, bytes_of(mem[1]), w, store=(name == "tvm_store_matrix_sync"))

    def _ptx_mma(self, name: str, args, w: float) -> None:
        """The ``mma.sync`` path: one ``ptx_legacy.mma`` is an ``m x n x k`` multiply-add of the warp
        (its shape string, e.g. ``m16n8k16``), in its A operand's dtype; ``ldmatrix`` moves four 8 x 8
        matrices of 16-bit words from shared memory into the warp's registers; ``mma_fill`` zeroes each
        lane's accumulators. The thread extents around a call count each of a warp's lanes."""
        frag, count = self.buffers.fragment, self.buffers.count
        if name == "tirx.ptx_legacy.mma":
            m, n, k = (int(x) for x in re.fullmatch(r"m(\d+)n(\d+)k(\d+)", str(args[0].value)).groups())
            dtype = PTX_DTYPES.get(str(args[3].value), str(args[3].value))
            macs = w / WARP_SIZE * m * n * k
            self.ops[("mac", dtype)] += macs
            self.schedule[ScheduleKey("mma", dtype, m * n * k, self.nest.parallel)] += macs
            self.tensorized_macs += macs
            for data, elems in ((args[6], m * k), (args[8], k * n)):
                f = frag(data)
                if f:
                    count(f[0], elems, bytes_of(f[1]), w / WARP_SIZE, store=False)
            c = frag(args[10])
            if c:
                count(c[0], m * n, bytes_of(c[1]), w / WARP_SIZE, store=False)
                count(c[0], m * n, bytes_of(c[1]), w / WARP_SIZE, store=True)
        elif name == "tirx.ptx_legacy.ldmatrix":
            words = int_of(args[1]) * 8 * 8  # 16-bit words of the warp's matrices
            dst = frag(args[3])
            ptr = args[5]  # tvm_access_ptr(type, data, offset, extent, rw) of the shared side
            src = frag(ptr.args[1]) if type(ptr).__name__ == "Call" and len(ptr.args) >= 2 else None
            for f, store in ((dst, True), (src, False)):
                if f:
                    elem = bytes_of(f[1])
                    count(f[0], words * 2 / elem, elem, w / WARP_SIZE, store=store)
        else:  # mma_fill_legacy(local_size, data, offset): each lane zeroes its accumulators
            f = frag(args[1])
            if f:
                count(f[0], int_of(args[0]), bytes_of(f[1]), w, store=True)

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


def _useful_macs(func: tvm.tirx.PrimFunc) -> float | None:
    """The multiply-adds a padded kernel does before padding (:data:`USEFUL_MACS_ATTR`), or None."""
    attrs = func.attrs
    return float(int(attrs[USEFUL_MACS_ATTR])) if attrs is not None and USEFUL_MACS_ATTR in attrs else None


def analyse_primfunc(func: tvm.tirx.PrimFunc, name: str) -> KernelWorkload:
    """Operation counts and buffer accesses of one lowered kernel, per call."""
    walker = _Walker(func)
    walker.stmt(func.body, 1.0)
    sites = list(walker.buffers.sites.values())
    profile = reuse.reuse_profile(walker.nest.loops, sites)
    # a gathered kernel keeps its loop nest: a measured load of its rows re-counts its traffic when scored
    nest = (tuple(walker.nest.loops), tuple(sites)) if any(s.gathered for s in sites) else None
    uses = walker.buffers.all_uses()
    blocks, threads = walker.nest.launch()
    shared = sum(u.size_bytes for u in uses if u.param_index < 0 and u.scope.startswith("shared")) if blocks else 0.0
    return KernelWorkload(name=name, ops=walker.ops, buffers=uses, reuse=profile,
                          tensorized_macs=walker.tensorized_macs, schedule=walker.schedule,
                          useful_macs=_useful_macs(func), nest=nest, launch=(blocks, threads, shared))


def analyse_module(mod: tvm.IRModule) -> dict[str, KernelWorkload]:
    """Analyse every PrimFunc of a lowered module, keyed by its global name."""
    out = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            out[gv.name_hint] = analyse_primfunc(func, gv.name_hint)
    return out
