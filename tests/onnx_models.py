"""Small ONNX models built in code that tests of several tiers share: a model from its nodes saved to a
file, a model with an ``If`` on a frozen input, and one recurrent layer (RNN, GRU or LSTM) of every
variant the ONNX operators allow."""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import make_model

#: A recurrent layer's sequence length, batch, input and hidden sizes.
SEQ, BATCH, INPUT, HIDDEN = 5, 2, 3, 4


def recurrent_model(tmp_path, op, name="rnn", directions=1, bias=True, states=False, peepholes=False, layout=0,
                    opset=17, **attrs) -> str:
    """One ``op`` layer (RNN, GRU or LSTM) of SEQ x BATCH x INPUT -> HIDDEN, saved as ``tmp_path/name.onnx``; its path."""
    rng = np.random.default_rng(zlib.crc32(op.encode()))  # the same weights for every case of one operator
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    inits = [numpy_helper.from_array(rng.standard_normal((directions, gates * HIDDEN, INPUT)).astype(np.float32) / 2, "W"),
             numpy_helper.from_array(rng.standard_normal((directions, gates * HIDDEN, HIDDEN)).astype(np.float32) / 2, "R")]
    inputs = ["x", "W", "R", "", "", "", "", ""]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, SEQ, INPUT] if layout else
                                                  [SEQ, BATCH, INPUT])]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((directions, 2 * gates * HIDDEN)).astype(np.float32), "B"))
        inputs[3] = "B"
    state_shape = [BATCH, directions, HIDDEN] if layout else [directions, BATCH, HIDDEN]
    if states:
        inputs[5] = "h0"
        graph_inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, state_shape))
        if op == "LSTM":
            inputs[6] = "c0"
            graph_inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, state_shape))
    if peepholes:
        inits.append(numpy_helper.from_array(rng.standard_normal((directions, 3 * HIDDEN)).astype(np.float32), "P"))
        inputs[7] = "P"
    n_inputs = max(i for i, v in enumerate(inputs) if v) + 1
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    y_shape = [BATCH, SEQ, directions, HIDDEN] if layout else [SEQ, directions, BATCH, HIDDEN]
    if layout:  # an attribute since opset 14
        attrs["layout"] = layout
    node = helper.make_node(op, inputs[:n_inputs], outputs, hidden_size=HIDDEN,
                            direction="bidirectional" if directions == 2 else attrs.pop("direction", "forward"), **attrs)
    graph_outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape),
                     *[helper.make_tensor_value_info(o, TensorProto.FLOAT, state_shape) for o in outputs[1:]]]
    m = make_model([node], graph_inputs, graph_outputs, inits, opset=opset)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    return str(path)


def saved_model(tmp_path, name, nodes, inputs, outputs, inits=()):
    """The model of ``nodes`` saved as ``tmp_path/name``; its path."""
    path = tmp_path / name
    onnx.save(make_model(nodes, inputs, outputs, inits), str(path))
    return str(path)


def if_model(tmp_path):
    """y = x @ A if sr == 16000 else x @ B, as a voice-activity model picks weights by sample rate."""
    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal((8, 4)).astype(np.float32) for _ in range(2))

    def branch(name, w):
        return helper.make_graph([helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])],
                                 [numpy_helper.from_array(w, f"{name}_w")])

    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16"]),
             helper.make_node("If", ["is16"], ["y"], then_branch=branch("then", a), else_branch=branch("else", b))]
    path = saved_model(tmp_path, "vad.onnx", nodes,
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                  [numpy_helper.from_array(np.array(16000, np.int64), "k16")])
    return path, a, b
