"""RNN, GRU and LSTM unrolled before import, against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from explorer.core.errors import ExplorerError
from explorer.model.prepare import prepare
from explorer.sweep.reference import reference_outputs
from tests.onnx_models import SEQ, recurrent_model

CASES = {
    "rnn forward": dict(op="RNN"),
    "rnn bidirectional with initial state, relu": dict(op="RNN", directions=2, states=True, activations=["Relu", "Relu"]),
    "rnn reverse, no bias": dict(op="RNN", bias=False, direction="reverse"),
    "gru forward": dict(op="GRU"),
    "gru bidirectional, linear before reset, initial state": dict(op="GRU", directions=2, states=True,
                                                                   linear_before_reset=1),
    "gru clipped, opset 12": dict(op="GRU", clip=0.5, opset=12),
    "lstm forward": dict(op="LSTM"),
    "lstm bidirectional with states and peepholes": dict(op="LSTM", directions=2, states=True, peepholes=True),
    "lstm input forget": dict(op="LSTM", input_forget=1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unrolled_recurrence_matches_onnxruntime(case, tmp_path):
    path = recurrent_model(tmp_path, name=case.replace(" ", "_").replace(",", ""), **CASES[case])
    model = prepare(path)
    ops = {n.op_type for n in model.load().graph.node}
    assert not ops & {"RNN", "GRU", "LSTM"} and "MatMul" in ops
    feed = model.sample_inputs(0)
    original = reference_outputs(model, feed)  # the prepared (unrolled) model
    import onnxruntime as ort

    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
    assert len(original) == len(want)
    for got, ref in zip(original, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_a_batch_first_lstm_unrolls_like_the_sequence_first_one(tmp_path):
    # onnxruntime refuses layout=1, so the reference is the layout=0 model on transposed inputs
    first = prepare(recurrent_model(tmp_path, op="LSTM", name="batch_first", layout=1, states=True))
    seq_first = recurrent_model(tmp_path, op="LSTM", name="seq_first", states=True)
    feed = first.sample_inputs(0)
    got = reference_outputs(first, feed)
    import onnxruntime as ort

    want = ort.InferenceSession(seq_first, providers=["CPUExecutionProvider"]).run(
        None, {k: np.ascontiguousarray(np.swapaxes(v, 0, 1)) for k, v in feed.items()})
    np.testing.assert_allclose(got[0], np.transpose(want[0], (2, 0, 1, 3)), rtol=1e-5, atol=1e-5)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, np.swapaxes(w, 0, 1), rtol=1e-5, atol=1e-5)


def test_partial_sequence_lengths_are_refused_by_name(tmp_path):
    path = recurrent_model(tmp_path, op="GRU", name="lens")
    m = onnx.load(path)
    m.graph.initializer.append(numpy_helper.from_array(np.array([SEQ, 2], np.int32), "lens"))
    node = m.graph.node[0]
    node.input[4:] = []
    node.input.extend(["lens"]) if len(node.input) == 4 else None
    onnx.save(m, path)
    with pytest.raises(ExplorerError, match="sequence_lens other than the full length is not expanded"):
        prepare(path)


def test_an_activation_the_expansion_lacks_is_refused_by_name(tmp_path):
    path = recurrent_model(tmp_path, op="RNN", name="hard", activations=["HardSigmoid"])
    with pytest.raises(ExplorerError, match="activation HardSigmoid is not expanded"):
        prepare(path)


