"""ONNX into Relax: TVM's importer, with a clear error for what it cannot import."""

from __future__ import annotations

import functools
import warnings
from collections import Counter

import onnx
import tvm

from explorer.core.errors import ExplorerError
from explorer.tvm.passes.pruning import prune
from explorer.tvm.relax_ir import name_of
from models.decoders import layer_repeats, weight_inputs

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
        with warnings.catch_warnings():  # it warns of every input it renames (dots to underscores)
            warnings.simplefilter("ignore")
            return from_onnx(model, keep_params_in_input=False)
    except Exception as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ExplorerError(f"TVM could not import the model: {first}") from None


@functools.lru_cache(maxsize=4)
def _imported(path: str, sha256: str, sparsity: str) -> tuple[tvm.IRModule, frozenset[str], tuple[int, int] | None]:
    proto = onnx.load(path)
    weights = weight_inputs(proto)
    if weights and sparsity != "none":
        raise ExplorerError("a decoder built from its config has no weight values to prune; sparsity strategies "
                            "need a model with weights")
    mod = import_onnx(prune(proto, sparsity))
    inits = {i.name for i in proto.graph.initializer}
    onnx_inputs = [i.name for i in proto.graph.input if i.name not in inits]
    # the importer keeps the inputs' order but renames them (dots to underscores)
    names = frozenset(name_of(p) for p, name in zip(mod["main"].params, onnx_inputs) if name in weights)
    return mod, names, layer_repeats(proto)


def imported(path: str, sha256: str, sparsity: str = "none") -> tvm.IRModule:
    """The Relax module of the prepared model at ``path``, its weights pruned to ``sparsity`` (see
    :mod:`explorer.tvm.passes.pruning`); ``sha256`` keys the in-process cache: a worker compiling several
    strategies of one model imports it once per sparsity."""
    return _imported(path, sha256, sparsity)[0]


def weight_params(path: str, sha256: str) -> tuple[frozenset[str], tuple[int, int] | None]:
    """The parameters of ``main`` that are weights (a decoder built with its weights as inputs, see
    :func:`models.decoders.build_llama`; empty for any other model), and its layer repeats
    (:func:`models.decoders.layer_repeats`)."""
    _, names, repeats = _imported(path, sha256, "none")
    return names, repeats
