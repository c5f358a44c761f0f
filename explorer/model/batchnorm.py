"""Inference-mode BatchNormalization folded into the Conv before it, once per model, in numpy.

Every deployment build folds a BatchNorm that follows a convolution into the convolution's weights
and bias: ``W' = W * s`` and ``b' = (b - mean) * s + beta`` per output channel, with
``s = gamma / sqrt(var + epsilon)``. TVM does it with ``FoldBatchnormToConv2D`` + ``FoldConstant``,
which builds and runs a small kernel for every folded constant, in every compile (most of a
ResNet's compile time). Done here, on the prepared ONNX graph, it is done once and shared by every
strategy and target.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every inference-mode BatchNormalization whose input is a Conv's
    only use, with constant weights and statistics, is folded into that Conv."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses = Counter(name for n in graph.node for name in n.input)
    uses.update(o.name for o in graph.output)
    producer = {out: n for n in graph.node for out in n.output}
    folds = {}  # id of the BatchNormalization node -> the Conv node replacing the pair
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or _attr(bn, "training_mode", 0):
            continue
        conv = producer.get(bn.input[0])
        stats = bn.input[1:5]
        if (conv is None or conv.op_type != "Conv" or uses[conv.output[0]] != 1 or conv.input[1] not in inits
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits)
                or not all(s in inits for s in stats)):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[s]).astype(np.float64) for s in stats)
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.dtype != np.float32:
            continue
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 and conv.input[2]
                else np.zeros(weight.shape[0]))
        scale = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
        folded_w = (weight.astype(np.float64) * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        folded_b = ((bias - mean) * scale + beta).astype(np.float32)
        w_name, b_name = f"{bn.output[0]}_folded_W", f"{bn.output[0]}_folded_B"
        folds[id(bn)] = (conv, helper.make_node("Conv", [conv.input[0], w_name, b_name], list(bn.output),
                                                name=conv.name, **{a.name: helper.get_attribute_value(a)
                                                                   for a in conv.attribute}),
                         [numpy_helper.from_array(folded_w, w_name), numpy_helper.from_array(folded_b, b_name)])
    if not folds:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    replaced = {id(conv) for conv, _, _ in folds.values()}
    nodes, new_inits = [], []
    by_conv = {id(conv): (new, extra) for conv, new, extra in folds.values()}
    for node in graph.node:
        if id(node) in folds:
            continue  # the BatchNormalization: its output is now the folded Conv's
        if id(node) in replaced:
            new, extra = by_conv[id(node)]
            nodes.append(new)
            new_inits += extra
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    still_used = {name for n in nodes for name in n.input}
    listed = {o.name for o in graph.output} | {i.name for i in graph.input}
    kept = [i for i in out.graph.initializer if i.name in still_used or i.name in listed]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + new_inits)
    return out
