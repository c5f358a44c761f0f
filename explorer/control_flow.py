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
        prefix = f"{node.output[0]}_{'then' if taken else 'else'}_"
        produced = {o for n in branch.node for o in n.output}
        rename = {name: prefix + name for name in {i.name for i in branch.initializer} | produced}
        for result, want in zip(branch.output, node.output):
            if result.name in produced:  # the node that makes a branch output makes the If's output
                rename[result.name] = want
        for init in branch.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename[init.name]
            out.graph.initializer.append(copy)
        for n in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            del copy.input[:], copy.output[:]
            copy.input.extend(rename.get(i, i) for i in n.input)
            copy.output.extend(rename[o] for o in n.output)
            nodes.append(copy)
        for result, want in zip(branch.output, node.output):
            if rename.get(result.name) != want:  # an outer tensor or an initializer passed through
                nodes.append(helper.make_node("Identity", [rename.get(result.name, result.name)], [want]))
        folded += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, folded
