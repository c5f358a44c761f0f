"""Checks on a user's ONNX file before anything is allocated, compiled or run: one clear line each.

- initializers whose external data lies outside the model's folder are refused (never read, and the
  path is never echoed);
- every input, initializer and intermediate tensor must fit under a size limit (``--max-tensor-bytes``,
  default a quarter of this machine's memory) and have no zero-size dimension;
- the graph must pass the ONNX checker with strict shape inference at the chosen input shapes (a node
  with a missing input, a shape mismatch between nodes, a cycle, duplicate names, an initializer whose
  data does not match its declared shape);
- every operator must be one TVM's importer handles (``If`` included: TVM's frontend imports it
  itself); ``Loop`` and ``Scan`` are refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper

from explorer.core.errors import ExplorerError
from explorer.core.units import fmt_bytes
from models.decoders import weight_inputs

#: Control flow the explorer refuses: a static workload cannot be read from a loop of unknown trips.
REFUSED_OPS = ("Loop", "Scan")


def default_max_tensor_bytes() -> int:
    """A quarter of this machine's memory."""
    try:
        import psutil

        return int(psutil.virtual_memory().total // 4)
    except ImportError:  # psutil is a dependency; this is for a broken environment
        return 4 << 30


def load_external_data(proto: onnx.ModelProto, folder: Path) -> None:
    """Read initializers kept in external files, refusing any file outside ``folder``."""
    root = folder.resolve()
    for init in proto.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in init.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if root not in target.parents:
            raise ExplorerError(f"initializer {init.name!r} keeps its data in a file outside the model's folder; "
                                "refusing to read it (keep external data next to the model)")
        if not target.is_file():
            raise ExplorerError(f"initializer {init.name!r} keeps its data in a file that does not exist next to "
                                "the model; copy the model's data files with it")
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer):
        external_data_helper.load_external_data_for_model(proto, str(root))


def _elem_bytes(elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:
        return 4


def _check_size(what: str, dims: list[int], elem_type: int, limit: int) -> None:
    if any(d == 0 for d in dims):
        raise ExplorerError(f"{what} has a zero-size dimension {list(dims)}: there is no work to explore")
    nbytes = math.prod(max(d, 1) for d in dims) * _elem_bytes(elem_type)
    if nbytes > limit:
        raise ExplorerError(f"{what} would take {fmt_bytes(nbytes)} ({' x '.join(map(str, dims))}), over the limit "
                            f"of {fmt_bytes(limit)}; raise it with --max-tensor-bytes if this machine can hold it")


def check_declared_sizes(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], limit: int,
                         never_held: frozenset[str] = frozenset()) -> None:
    """Refuse an input (at its chosen shape) or initializer over ``limit`` bytes, or of zero size;
    inputs in ``never_held`` (weights declared as inputs, which nothing draws) are not refused."""
    for inp in proto.graph.input:
        if inp.name in shapes and inp.name not in never_held:
            _check_size(f"input {inp.name!r}", list(shapes[inp.name]), inp.type.tensor_type.elem_type, limit)
    for init in proto.graph.initializer:
        _check_size(f"initializer {init.name!r}", list(init.dims), init.data_type, limit)
        held, declared = _elements_held(init), math.prod(init.dims)
        if held is not None and held != declared:
            raise ExplorerError(f"initializer {init.name!r} holds {held} values but its shape {list(init.dims)} "
                                f"declares {declared}; the file is damaged or was written wrongly")


#: Element types whose values are not one per element of a typed field or ``itemsize`` raw bytes.
_UNCOUNTED = {onnx.TensorProto.STRING, onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128,
              *(getattr(onnx.TensorProto, t) for t in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, t))}


def _elements_held(init: onnx.TensorProto) -> int | None:
    """How many values an initializer's data holds (None where that cannot be counted simply)."""
    if init.data_type in _UNCOUNTED or init.data_location == onnx.TensorProto.EXTERNAL:
        return None
    if init.HasField("raw_data"):
        return len(init.raw_data) // _elem_bytes(init.data_type)
    fields = (init.float_data, init.int32_data, init.int64_data, init.double_data, init.uint64_data)
    return next((len(f) for f in fields if len(f)), 0)


def routed_weights(proto: onnx.ModelProto) -> set[str]:
    """The tensors of a mixture of experts' routed weights (a ``Gather`` of stacked expert weights by the
    router's indices, feeding a ``MatMul``): never held, as the compiled kernels read each token's experts
    where they are (:mod:`explorer.tvm.passes.experts`)."""
    inits = {i.name for i in proto.graph.initializer} | weight_inputs(proto)
    consumers: dict[str, set[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.op_type)
    return {n.output[0] for n in proto.graph.node
            if n.op_type == "Gather" and n.input[0] in inits and consumers.get(n.output[0]) == {"MatMul"}}


def check_inferred_sizes(proto: onnx.ModelProto, limit: int) -> None:
    """Refuse any intermediate tensor the prepared model's shape inference sizes over ``limit`` bytes (but
    a mixture's routed weights, which nothing holds: :func:`routed_weights`)."""
    skip = routed_weights(proto)
    for vi in [*proto.graph.value_info, *proto.graph.output]:
        if vi.name in skip:
            continue
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            _check_size(f"tensor {vi.name!r}", dims, vi.type.tensor_type.elem_type, limit)


def check_graph(proto: onnx.ModelProto) -> None:
    """The ONNX checker with strict shape inference; its reason in one line where it refuses."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
        reason = next((ln for ln in lines if "Error" in ln or "error" in ln), lines[0])
        raise ExplorerError(f"the model is not valid ONNX: {reason[:300]}") from None


def supported_ops() -> frozenset[str]:
    """Operators TVM's ONNX importer handles, read from TVM once per TVM version (cached, so that
    checking a model costs no TVM import; :mod:`explorer.tvm.compiler_facts`)."""
    from explorer.tvm.compiler_facts import importer_ops

    return importer_ops()


def check_operators(proto: onnx.ModelProto) -> None:
    """Refuse control flow the explorer cannot analyse, and operators TVM cannot import, with counts."""
    from collections import Counter

    ops = Counter(n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx"))
    loops = [op for op in REFUSED_OPS if op in ops]
    if loops:
        raise ExplorerError(f"the model uses {', '.join(loops)} control flow, which the explorer cannot analyse "
                            "(a static workload needs a fixed number of iterations)")
    from explorer.model.recurrent import RECURRENT_OPS

    known = supported_ops() | frozenset(RECURRENT_OPS)  # unrolled before import (explorer.model.recurrent)
    missing = Counter({op: n for op, n in ops.items() if op not in known})
    missing.update(n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx"))
    if missing:
        listed = ", ".join(f"{_shown(op)} ({n} node{'s' if n > 1 else ''})" for op, n in missing.most_common())
        raise ExplorerError(f"TVM's ONNX importer does not support: {listed}")


def _shown(name: str) -> str:
    """An operator name as a message shows it: quoted and escaped where it is not plain text."""
    return name if isinstance(name, str) and name.isidentifier() else ascii(name)


def check_no_if_left(proto: onnx.ModelProto) -> None:
    """Refuse a prepared model in which an ``If`` still depends on an input, naming the inputs to freeze."""
    ifs = [n for n in proto.graph.node if n.op_type == "If"]
    if not ifs:
        return
    producer = {o: n for n in proto.graph.node for o in n.output}
    inputs = {i.name for i in proto.graph.input}
    seen, found, stack = set(), set(), [ifs[0].input[0]]
    while stack:  # the graph inputs the first If's condition is computed from
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.add(name)
        elif name in producer:
            stack.extend(producer[name].input)
    hint = ", ".join(f"--input-value {n}=VALUE" for n in sorted(found)) or "--input-value NAME=VALUE"
    raise ExplorerError(f"the model has {len(ifs)} If node{'s' if len(ifs) > 1 else ''} whose condition depends on "
                        f"its inputs ({', '.join(sorted(found)) or '?'}); the explorer analyses one path: freeze it "
                        f"with {hint}")
