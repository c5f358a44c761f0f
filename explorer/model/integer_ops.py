"""Integer ONNX operators TVM's importer lacks, rewritten as the QDQ form it has (pure ONNX).

``QLinearConv`` becomes DequantizeLinear (data, weight, int32 bias) -> Conv -> QuantizeLinear, and
``MatMulInteger`` becomes DequantizeLinear (scale 1, the zero points) -> MatMul -> Cast to int32.
Both are exact rewrites of the integer arithmetic for the sizes int8 models use; the int8 pass
(:mod:`explorer.tvm.passes.precision`, ``qdq``) then turns every such conv and matmul back into an int8 kernel
accumulating in int32, so the model is analysed and run as int8.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def expand_integer_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with QLinearConv and MatMulInteger expressed in QDQ form."""
    if not any(n.op_type in ("QLinearConv", "MatMulInteger") for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for i, node in enumerate(model.graph.node):
        p = f"_qlinear{i}_"
        if node.op_type == "QLinearConv":
            x, xs, xz, w, ws, wz, ys, yz = node.input[:8]
            nodes += [helper.make_node("DequantizeLinear", [x, xs, xz], [p + "x"]),
                      helper.make_node("DequantizeLinear", [w, ws, wz], [p + "w"], axis=0)]
            conv_in = [p + "x", p + "w"]
            if len(node.input) > 8 and node.input[8]:
                nodes += [helper.make_node("Mul", [xs, ws], [p + "bs"]),
                          helper.make_node("DequantizeLinear", [node.input[8], p + "bs"], [p + "b"], axis=0)]
                conv_in.append(p + "b")
            nodes += [helper.make_node("Conv", conv_in, [p + "y"], **{a.name: helper.get_attribute_value(a)
                                                                      for a in node.attribute}),
                      helper.make_node("QuantizeLinear", [p + "y", ys, yz], list(node.output))]
        elif node.op_type == "MatMulInteger":
            a, b = node.input[0], node.input[1]
            one = p + "one"
            out.graph.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]))
            dq = []
            for name, zp, tag in ((a, node.input[2] if len(node.input) > 2 else "", "a"),
                                  (b, node.input[3] if len(node.input) > 3 else "", "b")):
                dq.append(helper.make_node("DequantizeLinear", [name, one] + ([zp] if zp else []), [p + tag]))
            nodes += dq + [helper.make_node("MatMul", [p + "a", p + "b"], [p + "y"]),
                           helper.make_node("Cast", [p + "y"], list(node.output), to=TensorProto.INT32)]
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
