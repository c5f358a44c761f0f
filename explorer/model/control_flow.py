"""``If`` nodes whose condition is a constant, replaced by the branch they take (pure ONNX).

Freezing an input (``--input-value sr=16000``) makes a condition on it constant once the shape
computations are folded; onnx-simplifier's constant folding leaves the ``If`` itself. Here the taken
branch's nodes and initializers move into the graph, and its outputs become the ``If``'s.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper


def fold_constant_if(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every ``If`` on a constant condition inlined, and how many were."""
    inits = {i.name: i for i in model.graph.initializer}
    if not any(n.op_type == "If" and n.input[0] in inits for n in model.graph.node):
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, folded = [], 0
    for node in model.graph.node:
        if node.op_type != "If" or node.input[0] not in inits:
            nodes.append(node)
            continue
        taken = bool(numpy_helper.to_array(inits[node.input[0]]).reshape(-1)[0])
        branch = next(a.g for a in node.attribute if a.name == ("then_branch" if taken else "else_branch"))
        # ONNX names are unique across a model's scopes, so the branch's own names can stay; only the
        # tensors it returns take the If's output names (in nested graphs that read them too)
        produced = {o for n in branch.node for o in n.output}
        rename = {r.name: want for r, want in zip(branch.output, node.output) if r.name in produced}
        out.graph.initializer.extend(branch.initializer)
        for n in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            _rename(copy, rename)
            nodes.append(copy)
        for result, want in zip(branch.output, node.output):
            if result.name not in rename:  # an outer tensor or an initializer passed through
                nodes.append(helper.make_node("Identity", [result.name], [want]))
        folded += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, folded


def _rename(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    """Rename ``node``'s inputs and outputs, and the outer names its nested graphs read, in place."""
    for i, name in enumerate(node.input):
        node.input[i] = rename.get(name, name)
    for i, name in enumerate(node.output):
        node.output[i] = rename.get(name, name)
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
            local = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
            for inner in graph.node:
                _rename(inner, {k: v for k, v in rename.items() if k not in local})
