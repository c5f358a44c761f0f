"""The buffers a kernel touches: each one's use (where it lives, bytes loaded and stored) and the access
sites the reuse model reads (their loops and index strides)."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import sym

from explorer.tvm.tir.expr import bytes_of, dtype_of, int_of, tensor_loads
from explorer.tvm.tir.loops import LoopNest
from explorer.workload import reuse
from explorer.workload.table import BufferUse


def _elements_and_dtype(ty) -> tuple:
    count = 1
    for d in ty.shape:
        count *= int_of(d) or 1
    return count, str(ty.dtype)


class Buffers:
    """Every buffer of one kernel: its parameters from the start, the rest as they are declared."""

    def __init__(self, func: tvm.tirx.PrimFunc):
        self.uses: dict = {}  # buffer var -> BufferUse
        self.sites: dict = {}  # site key -> reuse.Site
        self.by_data: dict = {}  # buffer data var -> (BufferUse, dtype), for tensor-core intrinsics
        self.by_name: dict = {}  # a declared buffer's name -> (BufferUse, dtype), for ``buffer_data`` calls
        self.param_by_var: list = []  # (parameter var, BufferUse)
        self.viewed: set = set()  # ids of the parameters' uses a view took
        self.shapes: dict = {}  # id of a parameter's use -> its shape (a flat view keeps the parameter's)
        for i, p in enumerate(func.params):
            ty = p.ty
            if hasattr(ty, "shape") and hasattr(ty, "dtype"):
                size = 1
                for d in ty.shape:
                    size *= int_of(d) or 1
                use = BufferUse(p.name, "param", i, size * bytes_of(str(ty.dtype)))
                self.param_by_var.append((p, use))
                self.uses[p] = use
                self.shapes[id(use)] = tuple(int_of(d) or 1 for d in ty.shape)

    def declare(self, s) -> None:
        """A ``DeclBuffer`` or ``AllocBuffer``: a flat view of a parameter, or a buffer of its own."""
        buf = s.buffer
        size = 1
        for d in buf.shape:
            size *= int_of(d) or 1
        nbytes = size * bytes_of(str(buf.dtype))
        viewed = self._param_viewed(buf) if type(s).__name__ == "DeclBuffer" else None
        if viewed is not None:
            self.uses[buf] = viewed  # a flat view of the parameter
        else:
            scope = buf.scope() or "global"
            self.uses[buf] = BufferUse(buf.name, scope, -1, nbytes)
        self.by_data[buf.data] = (self.uses[buf], str(buf.dtype))
        self.by_name[buf.name] = (self.uses[buf], str(buf.dtype))

    def _param_viewed(self, buf) -> BufferUse | None:
        """The parameter a declared buffer views (its flat view, ``tirx.buffer_data(lv)``): the one of its
        name. Two parameters may share a name (FuseTIR names them after the Relax variables: a weight
        parameter and an activation can both be ``lv``); then the one of its size and dtype that no view
        took yet, in parameter order."""
        named = [(param, use) for param, use in self.param_by_var if param.name == buf.name]
        if len(named) <= 1:
            return named[0][1] if named else None
        size = _elements_and_dtype(buf)
        for param, use in named:
            if _elements_and_dtype(param.ty) == size and id(use) not in self.viewed:
                self.viewed.add(id(use))
                return use
        return named[0][1]

    def use(self, buf) -> BufferUse:
        """The use of ``buf`` (a buffer seen without declaration is kernel scratch)."""
        found = self.uses.get(buf)
        if found is None:
            found = self.uses[buf] = BufferUse(buf.name, buf.scope() or "global", -1, 0.0)
        return found

    def fragment(self, arg):
        """``(use, dtype)`` of the buffer a tensor-core intrinsic's argument names (its data variable, or
        ``tirx.buffer_data(buffer)`` as the ``mma.sync`` path's calls name it), or None."""
        if isinstance(arg, tvm.tirx.Var):
            return self.by_data.get(arg)
        if type(arg).__name__ == "Call" and str(getattr(arg.op, "name", "")) == "tirx.buffer_data":
            return self.by_name.get(str(arg.args[0].name))
        return None

    def site(self, use: BufferUse, indices, elem_bytes: int, nest: LoopNest) -> None:
        """Record an access site for the reuse model: its loops and index strides."""
        if len(indices) == 1 and type(indices[0]).__name__ == "Ramp" and int_of(indices[0].stride) == 1:
            # a contiguous vector (a tensor intrinsic's 64-byte operand): one access of all its lanes
            elem_bytes *= int(indices[0].lanes)
            indices = [indices[0].base]
        elif len(indices) == 1 and type(indices[0]).__name__ == "Broadcast":
            indices = [indices[0].value]
        path = tuple(lid for lid, _ in nest.path)
        key = (id(use), path, tuple(tvm_ffi.structural_hash(i) for i in indices))
        if key in self.sites:
            return
        loop_vars = [v for _, v in nest.path]
        gathered = self._gathered(use, indices, elem_bytes, nest) if len(indices) == 1 else None
        if gathered is not None:
            self.sites[key] = gathered
            return
        terms, offset, affine = (), None, False
        if len(indices) == 1:
            index = nest.analyzer.simplify(indices[0])
            coeffs = sym.detect_linear_equation(index, loop_vars) if loop_vars else [index]
            if len(coeffs) == len(loop_vars) + 1 and all(int_of(c) is not None for c in coeffs[:-1]):
                affine = True
                terms = tuple((lid, int_of(c)) for (lid, _), c in zip(nest.path, coeffs) if int_of(c))
                offset = int_of(coeffs[-1])
        if not affine:  # which loops the index uses, for the non-affine estimate
            used = [v for idx in indices for v in tvm.tirx.analysis.undefined_vars(nest.analyzer.simplify(idx))]
            terms = tuple((lid, 1) for lid, v in nest.path if any(v.same_as(u) for u in used))
        self.sites[key] = reuse.Site(use.name, elem_bytes, use.size_bytes, path, terms, offset, affine)

    def _gathered(self, use: BufferUse, indices, elem_bytes: int, nest: LoopNest):
        """The site of a load whose row another tensor's integer values choose (``W[index[t, j] * row + ...]``,
        a mixture's routed experts), or None: the chooser's shape ``[..., k]`` gives the choices a group
        (its last dimension) and all of them (its size); the rest of the index is affine within a row."""
        loads = [ld for ld in tensor_loads(indices[0]) if dtype_of(ld)[0].startswith(("int", "uint"))]
        if len(loads) != 1 or len(loads[0].indices) != 1:
            return None
        chooser = self.shapes.get(id(self.use(loads[0].source)))
        if not chooser:
            return None
        row_var = tvm.tirx.Var("row", dtype_of(indices[0])[0])
        within = tvm_ffi.structural_mutate(indices[0], [((tvm.ir.expr.TensorLoad,), lambda node, _m: row_var)])
        loop_vars = [v for _, v in nest.path]
        within = nest.analyzer.simplify(within)
        coeffs = sym.detect_linear_equation(within, [row_var, *loop_vars])
        affine = len(coeffs) == len(loop_vars) + 2 and all(int_of(c) is not None for c in coeffs)
        if not affine:  # a fused loop's div and mod within the row: the row's coefficient alone
            coeffs = sym.detect_linear_equation(within, [row_var])
            if len(coeffs) != 2 or int_of(coeffs[0]) is None:
                return None
        row_elems = int_of(coeffs[0])
        if row_elems <= 0:
            return None
        rows = int(round(use.size_bytes / elem_bytes / row_elems))
        picks = nest.analyzer.simplify(loads[0].indices[0])
        choosing = tuple(lid for lid, v in nest.path
                         if any(v.same_as(u) for u in tvm.tirx.analysis.undefined_vars(picks)))
        total = 1
        for d in chooser:
            total *= d
        gathered = reuse.Gathered(rows, chooser[-1], total, choosing)
        use.gathered, use.row_bytes = gathered, float(row_elems * elem_bytes)
        path = tuple(lid for lid, _ in nest.path)
        if not affine:  # which loops the rest of the index uses, for the non-affine estimate within a row
            used = tvm.tirx.analysis.undefined_vars(coeffs[1])
            terms = tuple((lid, 1) for lid, v in nest.path if any(v.same_as(u) for u in used))
            return reuse.Site(use.name, elem_bytes, use.size_bytes, path, terms, None, False, gathered)
        terms = tuple((lid, int_of(c)) for (lid, _), c in zip(nest.path, coeffs[1:-1]) if int_of(c))
        return reuse.Site(use.name, elem_bytes, use.size_bytes, path, terms, int_of(coeffs[-1]), True, gathered)

    @staticmethod
    def count(use: BufferUse, elems: float, elem_bytes: float, w: float, store: bool) -> None:
        """``w`` accesses of ``elems`` elements of ``elem_bytes`` each, stored or loaded."""
        if store:
            use.store_count += w * elems
            use.store_bytes += w * elems * elem_bytes
        else:
            use.load_count += w * elems
            use.load_bytes += w * elems * elem_bytes

    def all_uses(self) -> list[BufferUse]:
        """Each buffer's use once: parameters in order, then the kernel's own by name."""
        unique = {id(u): u for u in self.uses.values()}
        return sorted(unique.values(), key=lambda u: (u.param_index < 0, u.param_index, u.name))
