"""ONNX into Relax: TVM's importer, with a clear error for what it cannot import."""

from __future__ import annotations

import functools
from collections import Counter

import onnx
import tvm

from explorer.core.errors import ExplorerError
from explorer.tvm.passes.pruning import prune

#: Control flow TVM 0.27's ONNX frontend imports itself, not through its converter table.
FRONTEND_OPS = frozenset({"If"})


def converter_ops() -> frozenset[str]:
    """The operators TVM's ONNX importer has a converter for (its frontend also imports
    :data:`FRONTEND_OPS` itself)."""
    # TVM's private converter table is the only list of what its importer supports
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return frozenset(_get_convert_map())


def unsupported_ops(model: onnx.ModelProto) -> Counter:
    """Operators of ``model`` that TVM's ONNX importer has no converter for, with node counts."""
    known = converter_ops() | FRONTEND_OPS
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


@functools.lru_cache(maxsize=4)
def imported(path: str, sha256: str, sparsity: str = "none") -> tvm.IRModule:
    """The Relax module of the prepared model at ``path``, its weights pruned to ``sparsity`` (see
    :mod:`explorer.tvm.passes.pruning`); ``sha256`` keys the in-process cache: a worker compiling several
    strategies of one model imports it once per sparsity."""
    return import_onnx(prune(onnx.load(path), sparsity))
