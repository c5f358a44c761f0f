"""ONNX into Relax: TVM's importer, with a clear error for what it cannot import."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import Counter

import onnx
import tvm

from explorer.core.errors import ExplorerError
from explorer.tvm.passes.pruning import prune
from explorer.tvm.relax_ir import name_of
from models.decoders import ALLGATHER_LOGITS, ALLREDUCE_PREFIX, layer_repeats, tensor_parallel_devices, weight_inputs

#: Control flow TVM 0.27's ONNX frontend imports itself, not through its converter table.
FRONTEND_OPS = frozenset({"If"})
#: The operator types a shard's collectives are imported as (see :func:`collectives_as_operators`).
ALL_REDUCE_OP, ALL_GATHER_OP = "ExplorerAllReduce", "ExplorerAllGather"


def converter_ops() -> frozenset[str]:
    """The operators TVM's ONNX importer has a converter for (its frontend also imports
    :data:`FRONTEND_OPS` itself)."""
    # TVM's private converter table is the only list of what its importer supports
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return frozenset(_get_convert_map())


def unsupported_ops(model: onnx.ModelProto) -> Counter:
    """Operators of ``model`` that TVM's ONNX importer has no converter for, with node counts."""
    known = converter_ops() | FRONTEND_OPS | {ALL_REDUCE_OP, ALL_GATHER_OP}
    return Counter(n.op_type for n in model.graph.node if n.op_type not in known)


def collectives_as_operators(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose collectives (the ``Identity`` nodes a tensor-parallel shard names
    ``tp.allreduce.*`` and ``tp.allgather.logits``, :func:`models.decoders.build_llama`) are operators of
    their own, which :func:`import_onnx` imports as Relax's ``R.ccl.allreduce`` and ``R.ccl.allgather``:
    TVM's importer drops an ``Identity``, and with it the collective that bounds fusion (a partial sum
    cannot fuse with the residual it is added to before the all-reduce)."""
    if not any(n.name.startswith(ALLREDUCE_PREFIX) or n.name == ALLGATHER_LOGITS for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.op_type == "Identity" and node.name.startswith(ALLREDUCE_PREFIX):
            node.op_type = ALL_REDUCE_OP
        elif node.op_type == "Identity" and node.name == ALLGATHER_LOGITS:
            node.op_type = ALL_GATHER_OP
    return out


@contextlib.contextmanager
def _collective_converters(devices: int):
    """TVM's ONNX importer with converters for :data:`ALL_REDUCE_OP` and :data:`ALL_GATHER_OP` (an
    all-gather over ``devices``, along the first axis as TVM's ``ccl.allgather`` gathers)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    class AllReduce(onnx_frontend.OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            return relax.op.ccl.allreduce(inputs[0], "sum")

    class AllGather(onnx_frontend.OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            return relax.op.ccl.allgather(inputs[0], devices)

    # the importer reads its converter table through this module function on every lookup
    table = onnx_frontend._get_convert_map
    onnx_frontend._get_convert_map = lambda: {**table(), ALL_REDUCE_OP: AllReduce, ALL_GATHER_OP: AllGather}
    try:
        yield
    finally:
        onnx_frontend._get_convert_map = table


def import_onnx(model: onnx.ModelProto) -> tvm.IRModule:
    """Import a static ONNX model into Relax; raise a one-line :class:`ExplorerError` if TVM cannot."""
    from tvm.relax.frontend.onnx import from_onnx

    devices = tensor_parallel_devices(model)
    model = collectives_as_operators(model)
    missing = unsupported_ops(model)
    if missing:
        listed = ", ".join(f"{op} ({n} node{'s' if n > 1 else ''})" for op, n in missing.most_common())
        raise ExplorerError(f"TVM's ONNX importer does not support: {listed}")
    try:
        # it warns of every input it renames (dots to underscores), and of operators ONNX does not know
        with warnings.catch_warnings(), _collective_converters(devices):
            warnings.simplefilter("ignore")
            return from_onnx(model, keep_params_in_input=False)
    except Exception as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ExplorerError(f"TVM could not import the model: {first}") from None


@functools.lru_cache(maxsize=4)
def _imported(path: str, sha256: str, sparsity: str) -> tuple[tvm.IRModule, frozenset[str], tuple[int, int] | None, int]:
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
    return mod, names, layer_repeats(proto), tensor_parallel_devices(proto)


def imported(path: str, sha256: str, sparsity: str = "none") -> tvm.IRModule:
    """The Relax module of the prepared model at ``path``, its weights pruned to ``sparsity`` (see
    :mod:`explorer.tvm.passes.pruning`); ``sha256`` keys the in-process cache: a worker compiling several
    strategies of one model imports it once per sparsity."""
    return _imported(path, sha256, sparsity)[0]


def weight_params(path: str, sha256: str) -> tuple[frozenset[str], tuple[int, int] | None]:
    """The parameters of ``main`` that are weights (a decoder built with its weights as inputs, see
    :func:`models.decoders.build_llama`; empty for any other model), and its layer repeats
    (:func:`models.decoders.layer_repeats`)."""
    _, names, repeats, _ = _imported(path, sha256, "none")
    return names, repeats


def devices(path: str, sha256: str) -> int:
    """The devices the model is one shard of (:func:`models.decoders.tensor_parallel_devices`; 1 for
    any model that is not a shard)."""
    return _imported(path, sha256, "none")[3]
