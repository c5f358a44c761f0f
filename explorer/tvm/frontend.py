"""ONNX into Relax: TVM's importer, with a clear error for what it cannot import."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import onnx
import tvm
from onnx import numpy_helper

from ..errors import ExplorerError

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


def clip_as_max_min(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each ``Clip`` whose bounds are constants (not NaN) written as ``Max``/``Min``.

    TVM's importer lowers every Clip to TE kernels (``call_tir``) whose callee ToMixedPrecision cannot
    type (``Expected TensorType, but got R.Callable``: every fp16 build of a model with ReLU6 failed);
    Max and Min with the same bounds import as Relax operators and compute the same values. Only fp16
    imports this way: ConvertLayout fails on a ``maximum`` after a conv2d (``Invalid SLayout``)."""
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value"}
    dtypes = {}
    if any(n.op_type == "Clip" and len(n.input) == 1 for n in graph.node):  # bounds as attributes (opset < 11)
        inferred = onnx.shape_inference.infer_shapes(model)
        dtypes = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info]}
    nodes, extra = [], []
    for node in graph.node:
        bounds = _clip_bounds(node, consts, dtypes)
        if bounds is None:
            nodes.append(node)
            continue
        x = node.input[0]
        for i, (op, bound) in enumerate((("Max", bounds[0]), ("Min", bounds[1]))):
            if bound is None:
                continue
            name = f"{node.output[0]}__clip_{op.lower()}"
            extra.append(numpy_helper.from_array(bound, f"{name}_bound"))
            out = name if op == "Max" and bounds[1] is not None else node.output[0]
            nodes.append(onnx.helper.make_node(op, [x, f"{name}_bound"], [out], name=f"{node.name}__{op}"))
            x = out
        if all(b is None for b in bounds):
            nodes.append(onnx.helper.make_node("Identity", [x], list(node.output), name=node.name))
    if not extra and len(nodes) == len(graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(extra)
    return out


def _clip_bounds(node, consts, dtypes):
    """(low, high) arrays of a Clip with constant, non-NaN bounds (None for a missing one), else None."""
    if node.op_type != "Clip" or node.domain not in ("", "ai.onnx"):
        return None
    if len(node.input) == 1:
        attrs = {a.name: a.f for a in node.attribute}
        dtype = onnx.helper.tensor_dtype_to_np_dtype(dtypes[node.input[0]]) if node.input[0] in dtypes else None
        if dtype is None or not np.issubdtype(dtype, np.floating):
            return None
        bounds = [np.array(attrs[k], dtype) if k in attrs else None for k in ("min", "max")]
    else:
        names = [*node.input[1:3], "", ""][:2]
        if any(n and n not in consts for n in names):
            return None
        bounds = [consts[n] if n else None for n in names]
    if any(b is not None and (b.size != 1 or np.isnan(b).any()) for b in bounds):
        return None
    return tuple(None if b is None else b.reshape(()) for b in bounds)


def import_onnx(model: onnx.ModelProto, clip_as_relax: bool = False) -> tvm.IRModule:
    """Import a static ONNX model into Relax (``clip_as_relax``: Clip as Max/Min, see
    :func:`clip_as_max_min`); raise a one-line :class:`ExplorerError` if TVM cannot."""
    from tvm.relax.frontend.onnx import from_onnx

    missing = unsupported_ops(model)
    if missing:
        listed = ", ".join(f"{op} ({n} node{'s' if n > 1 else ''})" for op, n in missing.most_common())
        raise ExplorerError(f"TVM's ONNX importer does not support: {listed}")
    try:
        return from_onnx(clip_as_max_min(model) if clip_as_relax else model, keep_params_in_input=False)
    except Exception as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ExplorerError(f"TVM could not import the model: {first}") from None


@functools.lru_cache(maxsize=4)
def imported(path: str, sha256: str, clip_as_relax: bool = False) -> tvm.IRModule:
    """The Relax module of the prepared model at ``path`` (``sha256`` keys the in-process cache:
    a worker compiling several strategies of one model imports it once); ``clip_as_relax`` as for
    :func:`import_onnx`."""
    return import_onnx(onnx.load(path), clip_as_relax)
