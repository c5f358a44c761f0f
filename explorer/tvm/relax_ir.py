"""Reading Relax IR: the names of variables and globals, the tensors of a type, a function's bindings."""

from __future__ import annotations

from tvm import relax

from explorer.workload.table import Tensor


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
