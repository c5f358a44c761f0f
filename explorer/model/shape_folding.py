"""Folding a static model's shape computations by evaluating them in onnxruntime.

onnx-simplifier folds ``Shape -> Slice -> Concat -> Reshape`` chains from its own shape inference,
and on some exports that inference is wrong (PP-OCRv4's recogniser: a Reshape target folded to 78
tokens where the model computes 40), which breaks a model that ran. This is the gentler fold that
:mod:`explorer.model.prepare` falls back to: with every input shape fixed, a tensor computed only from
constants and tensor shapes has one value whatever the inputs hold, so onnxruntime computes it once
on a sample input and it becomes an initializer. Nothing else is rewritten.

Shapes that depend on data (``NonZero``, ``Unique``, ...) are never folded, nor is anything computed
from them; nor are random generators.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

#: Operators whose output shape depends on their input data.
DATA_DEPENDENT_SHAPE = frozenset({"NonZero", "Unique", "Compress", "NonMaxSuppression", "Loop", "Scan", "If",
                                  "StringSplit", "RegexFullMatch"})

#: Operators whose output shape is read from the values of their inputs after the first.
SHAPE_FROM_VALUES = frozenset({
    "Reshape", "Expand", "Tile", "Slice", "Range", "ConstantOfShape", "Pad", "Resize", "Upsample", "OneHot", "TopK",
    "Squeeze", "Unsqueeze", "Split", "CenterCropPad", "Col2Im", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "DFT", "STFT"})

#: Operators whose outputs change from run to run.
RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli", "Dropout"})

_SHAPE_OPS = frozenset({"Shape", "Size"})


def input_independent(model: onnx.ModelProto) -> set[str]:
    """Names of the non-constant tensors whose values do not depend on what the inputs hold (the
    model's input shapes being fixed): shapes of tensors with data-independent shapes, and what is
    computed from those and constants alone."""
    graph = model.graph
    constant = {i.name for i in graph.initializer} | {""}
    inputs = {i.name for i in graph.input if i.name not in constant}
    fixed_shape = set(inputs) | constant   # tensors whose shape does not depend on data
    values = set(constant)                 # tensors whose values do not depend on data
    found = set()
    for node in graph.node:
        if node.op_type == "Constant":
            values.update(node.output)
            fixed_shape.update(node.output)
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type in RANDOM:
            continue
        if node.op_type in _SHAPE_OPS:
            if node.input[0] in fixed_shape:
                values.update(node.output)
                fixed_shape.update(node.output)
                found.update(node.output)
            continue
        if all(i in values for i in node.input):
            values.update(node.output)
            fixed_shape.update(node.output)
            found.update(node.output)
        elif (node.op_type not in DATA_DEPENDENT_SHAPE and all(i in fixed_shape for i in node.input)
              and (node.op_type not in SHAPE_FROM_VALUES or all(i in values for i in node.input[1:]))):
            fixed_shape.update(node.output)
    return found


def fold_shape_computations(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``model`` with every input-independent tensor that a remaining node (or the graph's output)
    reads replaced by an initializer holding the value onnxruntime computes for it on ``feed``, and
    the nodes left with no consumer removed."""
    import onnxruntime as ort

    static = input_independent(model)
    graph = model.graph
    wanted = {o.name for o in graph.output}
    frontier = []
    for node in graph.node:
        if not set(node.output) <= static:
            frontier += [i for i in node.input if i in static]
    frontier += [o for o in wanted if o in static]
    frontier = list(dict.fromkeys(frontier))
    if not frontier:
        return model
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in frontier)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    computed = dict(zip(frontier, sess.run(frontier, {n: feed[n] for n in names})))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in out.graph.node if not set(n.output) <= static]
    del out.graph.node[:]
    out.graph.node.extend(_live(kept, wanted))
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in computed.items())
    used = {i for n in out.graph.node for i in _reads(n)} | wanted
    live_inits = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(live_inits)
    del out.graph.value_info[:]
    return out


def _live(nodes: list[onnx.NodeProto], wanted: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` without those whose outputs nothing reads (in order)."""
    needed = set(wanted)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(_reads(node))
    return live[::-1]


def _reads(node: onnx.NodeProto) -> set[str]:
    """The tensors ``node`` reads: its inputs, and the outer tensors its sub-graphs (If, Loop) use."""
    names = set(node.input)
    for attr in node.attribute:
        for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            inner = {i.name for i in g.initializer} | {i.name for i in g.input}
            for n in g.node:
                names |= _reads(n) - inner
                inner |= set(n.output)
    return names
