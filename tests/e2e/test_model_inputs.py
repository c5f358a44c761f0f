"""Models with control flow, frozen inputs and recurrent layers, swept through the command."""

from __future__ import annotations

import numpy as np
import onnx
import pytest


def _saved(tmp_path, name, nodes, inputs, outputs, inits=()):
    from tests.conftest import make_model

    path = tmp_path / name
    onnx.save(make_model(nodes, inputs, outputs, inits), str(path))
    return str(path)


def _if_model(tmp_path):
    """y = x @ A if sr == 16000 else x @ B, as a voice-activity model picks weights by sample rate."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal((8, 4)).astype(np.float32) for _ in range(2))

    def branch(name, w):
        return helper.make_graph([helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])],
                                 [numpy_helper.from_array(w, f"{name}_w")])

    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16"]),
             helper.make_node("If", ["is16"], ["y"], then_branch=branch("then", a), else_branch=branch("else", b))]
    path = _saved(tmp_path, "vad.onnx", nodes,
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                  [numpy_helper.from_array(np.array(16000, np.int64), "k16")])
    return path, a, b


import zlib

from onnx import TensorProto, helper, numpy_helper

from tests.conftest import make_model

SEQ, BATCH, INPUT, HIDDEN = 5, 2, 3, 4


def _model(tmp_path, op, name="rnn", directions=1, bias=True, states=False, peepholes=False, layout=0, opset=17,
           **attrs):
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


def test_a_model_with_a_frozen_if_sweeps_on_cpu_and_npu_and_matches_onnxruntime(cli, tmp_path):

    import pandas as pd

    path, _, _ = _if_model(tmp_path)
    out = tmp_path / "out"
    proc = cli("sweep", path, "--input-value", "sr=16000", "--targets", "cpu,npu", "--strategies", "baseline,fused", "--out", str(out), "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    v = pd.read_csv(out / "variants.csv")
    cpu = v[v.target == "cpu"]
    assert (cpu.status == "ok").all() and cpu.within_tolerance.all() and (cpu.macs == 8 * 4).all()
    assert (v[v.target == "npu"].status_kind == "analysed").all()


@pytest.mark.parametrize("verb, args, says", [
    ("run", ["--repeat", "1"], "latency: median"),
    ("fusion", [], "kernels 1 -> 1"),
])
def test_every_verb_that_prepares_a_model_takes_input_value(cli, tmp_path, verb, args, says):

    path, _, _ = _if_model(tmp_path)
    proc = cli(verb, path, "--input-value", "sr=16000", *args, "--quiet", timeout=600, env={"EXPLORER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout


def test_a_gru_model_sweeps_on_cpu_and_npu_and_matches_onnxruntime(cli, tmp_path):
    import pandas as pd

    path = _model(tmp_path, op="GRU", name="encoder", directions=2, linear_before_reset=1)
    out = tmp_path / "out"
    proc = cli("sweep", path, "--targets", "cpu,npu", "--strategies", "baseline,fused", "--out", str(out), "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    v = pd.read_csv(out / "variants.csv")
    cpu = v[v.target == "cpu"]
    assert (cpu.status == "ok").all() and cpu.within_tolerance.all()
    # per step and direction, 3 gates' input matmuls [2 x 3] x [3 x 4] and recurrent ones [2 x 4] x [4 x 4];
    # the first step's recurrent ones multiply the zero initial state and fold away
    assert (v.macs == 2 * (SEQ * 3 * BATCH * INPUT * HIDDEN + (SEQ - 1) * 3 * BATCH * HIDDEN * HIDDEN)).all()
