"""A decoder's KV cache kept in place, as a serving engine keeps it.

An exported decoder step takes the past keys and values (``[B, Hkv, L, D]``) and returns the present
ones, ``concat(past, new)`` along the sequence: a copy of the whole cache every step, which a serving
engine never makes (vLLM's paged cache and MLC-LLM's write each new token's rows where the cache already
is). :func:`kv_cache_in_place` gives a GPU build that engine's data flow: the step's ``main`` takes each
cache with room for the step's new rows (``[B, Hkv, L + S, D]``, the parameter keeping its name), an
in-place kernel writes the new rows at ``L .. L + S - 1`` (``call_tir_inplace``), and what was the concat
is that buffer, so the present output is the cache itself and attention reads it where it is. Only a
parameter whose one use is such a concat is rewritten; the step's signature changes with it, so the pass
is for builds analysed and not run against onnxruntime here (the GPU lowerings).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.ir.expr import Call
from tvm.script import tirx as T

from explorer.tvm.passes.rewriting import rewritten

#: TVM's op-pattern kind that FuseOps never fuses into (``relay::kOpaque``).
OPAQUE = 8


def _static(shape) -> tuple[int, ...] | None:
    dims = [getattr(d, "value", None) for d in shape]
    return None if any(d is None for d in dims) else tuple(int(d) for d in dims)


def append_kernel(cache_shape: tuple[int, ...], rows: int, dtype: str) -> tvm.tirx.PrimFunc:
    """The in-place kernel: ``cache[b, h, L + s, d] = new[b, h, s, d]`` for the ``rows`` new rows of a
    cache of ``cache_shape`` ``[B, Hkv, L + rows, D]`` (its only output is the cache, argument 0)."""
    b, h, total, d = cache_shape
    past = total - rows

    @T.prim_func(s_tir=True)
    def append(cache: T.Buffer(cache_shape, dtype), new: T.Buffer((b, h, rows, d), dtype)):
        T.func_attr({"tirx.noalias": True})
        for i, j, s, k in T.grid(b, h, rows, d):
            with T.sblock("append"):
                vi, vj, vs, vk = T.axis.remap("SSSS", [i, j, s, k])
                cache[vi, vj, past + vs, vk] = new[vi, vj, vs, vk]

    return append


@relax.expr_functor.mutator
class _InPlace(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, caches: dict):
        super().__init__(mod)
        self.caches = caches  # the past parameter -> (its replacement with room, rows the step adds)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.concat"):
            return call
        fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else ()
        if len(fields) != 2 or fields[0] not in self.caches:
            return call
        cache, rows = self.caches[fields[0]]
        shape = _static(cache.ty.shape)
        dtype = str(cache.ty.dtype)
        kernel = append_kernel(shape, rows, dtype).with_attr("op_pattern", OPAQUE)
        gv = self.builder_.add_func(kernel, "kv_cache_append")
        return relax.call_tir_inplace(gv, [cache, fields[1]], [0], relax.TensorType(shape, dtype))


def _appended_caches(func: relax.Function) -> dict:
    """Each rank-4 parameter whose one use is ``concat((param, new), axis=2)`` with static shapes, and the
    parameter that replaces it: the same name, with room for ``new``'s rows."""
    uses: dict = {}
    concats: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            for v in relax.analysis.free_vars(binding.value):
                uses[v] = uses.get(v, 0) + 1
            value = binding.value
            if (isinstance(value, Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.concat"
                    and isinstance(value.args[0], relax.Tuple) and len(value.args[0].fields) == 2
                    and int(value.attrs.axis) in (2, -2)):
                concats[value.args[0].fields[0]] = value.args[0].fields[1]
    out = {}
    for p in func.params:
        if uses.get(p) != 1 or p not in concats or not isinstance(p.ty, relax.TensorType):
            continue
        past, new = _static(p.ty.shape or ()), _static(concats[p].ty.shape or ())
        if past is None or new is None or len(past) != 4 or len(new) != 4 or past[:2] + past[3:] != new[:2] + new[3:]:
            continue
        if str(concats[p].ty.dtype) != str(p.ty.dtype):
            continue
        room = relax.Var(p.name, relax.TensorType((past[0], past[1], past[2] + new[2], past[3]), str(p.ty.dtype)))
        out[p] = (room, new[2])
    return out


def kv_cache_in_place() -> tvm.transform.Pass:
    """The pass (see the module docstring): ``main``'s appended caches kept in place."""

    @tvm.transform.module_pass(opt_level=0, name="explorer.KVCacheInPlace")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        main = mod["main"] if any(gv.name_hint == "main" for gv in mod.get_global_vars()) else None
        if not isinstance(main, relax.Function):
            return mod
        caches = _appended_caches(main)
        if not caches:
            return mod
        mod = rewritten(_InPlace(mod, caches), mod)
        main = mod["main"]
        params = [caches[p][0] if p in caches else p for p in main.params]
        mod = mod.clone()
        mod[mod.get_global_var("main")] = relax.Function(params, main.body, main.ret_ty, main.is_pure, main.attrs)
        return mod

    return apply

