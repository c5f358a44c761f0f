"""Preparing ONNX files: static shapes, shape folding, frozen inputs and clear errors."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from explorer.core.errors import ExplorerError
from explorer.model.arguments import parse_input_shapes
from explorer.model.prepare import prepare
from explorer.sweep.reference import reference_outputs
from explorer.tvm.frontend import import_onnx, unsupported_ops
from tests.onnx_models import if_model, saved_model


def _refused(model, shapes):
    """What onnx-simplifier made of PP-OCRv4's recogniser, in small: a model onnxruntime refuses."""
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    bad.graph.node[-1].input[0] = bad.graph.node[0].input[0]  # the Gemm reads x [1,3,4], not the [1,12] reshape
    return bad


def test_symbolic_batch_defaults_to_one_and_shape_subgraph_is_folded(symbolic_batch_onnx):
    model = prepare(str(symbolic_batch_onnx))
    assert [(i.name, i.shape) for i in model.inputs] == [("x", (1, 3, 4))]
    ops = {n.op_type for n in model.load().graph.node}
    assert "Shape" not in ops and "Gather" not in ops
    import_onnx(model.load())  # TVM accepts it


def test_input_shape_overrides_the_batch(symbolic_batch_onnx):
    model = prepare(str(symbolic_batch_onnx), parse_input_shapes(["x:4,3,4"]))
    assert model.inputs[0].shape == (4, 3, 4)
    out = reference_outputs(model, model.sample_inputs())
    assert out[0].shape == (4, 5)


def test_prepared_model_is_cached_by_content(symbolic_batch_onnx):
    a = prepare(str(symbolic_batch_onnx))
    b = prepare(str(symbolic_batch_onnx))
    assert a.path == b.path and a.sha256 == b.sha256


def test_input_shape_for_unknown_input_is_an_error(symbolic_batch_onnx):
    with pytest.raises(ExplorerError, match="model's inputs are \\['x'\\]"):
        prepare(str(symbolic_batch_onnx), {"images": (1, 3, 4)})


def test_unsupported_operator_is_refused_up_front_with_its_count(unsupported_onnx):
    with pytest.raises(ExplorerError, match=r"^TVM's ONNX importer does not support: Det \(2 nodes\)$"):
        prepare(str(unsupported_onnx))
    # the importer says the same where a model reaches it unprepared
    model = onnx.load(str(unsupported_onnx))
    assert unsupported_ops(model) == {"Det": 2}
    with pytest.raises(ExplorerError, match=r"does not support: Det \(2 nodes\)"):
        import_onnx(model)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(ExplorerError, match="zoo models: mlp, resnet18"):
        prepare("no-such-model")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ExplorerError, match="does not exist"):
        prepare(str(tmp_path / "missing.onnx"))


def test_sample_inputs_are_seeded(matmul_onnx):
    model = prepare(str(matmul_onnx))
    np.testing.assert_array_equal(model.sample_inputs(3)["x"], model.sample_inputs(3)["x"])


@pytest.mark.parametrize("name", ["mlp", "resnet18", "resnet50", "mobilenetv2", "bert-mini", "yolo-block"])
def test_every_zoo_model_prepares_and_imports_into_tvm(name):
    model = prepare(name)
    mod = import_onnx(model.load())
    assert "main" in [gv.name_hint for gv in mod.get_global_vars()]


def test_a_minus_one_dimension_is_symbolic(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, -1, -1])
    path = saved_model(tmp_path, "minus1.onnx", [helper.make_node("Relu", ["x"], ["y"])], [x],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, -1, -1])])
    assert prepare(path, {"x": (1, 3, 48, 192)}).inputs[0].shape == (1, 3, 48, 192)
    with pytest.raises(ExplorerError, match=r"has symbolic dimension '\?' at position 2"):
        prepare(path)


def test_token_ids_stay_within_the_table_they_index_and_masks_are_set(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((37, 8), np.float32), "E")
    path = saved_model(tmp_path, "ids.onnx",
                  [helper.make_node("Gather", ["E", "ids"], ["e"]), helper.make_node("Cast", ["attention_mask"], ["m"], to=1),
                   helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]), helper.make_node("Mul", ["e", "m3"], ["y"])],
                  [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 50]),
                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [2, 50])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 50, 8])],
                  [table, numpy_helper.from_array(np.array([2], np.int64), "axes")])
    model = prepare(path)
    feed = model.sample_inputs(0)
    assert feed["ids"].min() >= 0 and feed["ids"].max() == 36  # 100 draws from 37 rows reach the last
    assert (feed["attention_mask"] == 1).all()
    assert {s.name: (s.high, s.fill) for s in model.inputs} == {"ids": (37, None), "attention_mask": (2, 1)}


def test_a_preparation_onnxruntime_refuses_falls_back_to_folding_shapes_in_onnxruntime(symbolic_batch_onnx,
                                                                                        monkeypatch, tmp_path):
    from explorer.model import static

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr(static, "_simplify", _refused)
    model = prepare(str(symbolic_batch_onnx))
    assert model.preparation == "shapes folded by onnxruntime"
    assert [n.op_type for n in model.load().graph.node] == ["Reshape", "Gemm"]
    import_onnx(model.load())  # the Reshape target is a constant now, as TVM's importer needs
    assert prepare(str(symbolic_batch_onnx)).preparation == "shapes folded by onnxruntime"  # remembered


def test_a_preparation_that_changes_the_outputs_is_not_used(symbolic_batch_onnx, monkeypatch, tmp_path):
    from onnx import numpy_helper

    from explorer.model import static

    def wrong(model, shapes):  # runs, but computes something else
        out = static.onnx.ModelProto()
        out.CopyFrom(model)
        w = next(i for i in out.graph.initializer if i.name == "W")
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, "W"))
        return out

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr(static, "_simplify", wrong)
    assert prepare(str(symbolic_batch_onnx)).preparation == "shapes folded by onnxruntime"


def test_when_every_fold_breaks_the_model_only_shapes_are_fixed(symbolic_batch_onnx, monkeypatch, tmp_path):
    from explorer.model import static

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr(static, "_simplify", _refused)
    monkeypatch.setattr(static, "fold_shape_computations", lambda model, feed: _refused(model, None))
    model = prepare(str(symbolic_batch_onnx))
    assert model.preparation == "shapes only"
    assert [n.op_type for n in model.load().graph.node][0] == "Shape"


def test_the_tensor_size_limit_can_be_raised(tmp_path):
    from onnx import TensorProto, helper

    path = saved_model(tmp_path, "wide.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024])])
    with pytest.raises(ExplorerError, match=r"input 'x' would take 4.10 kB \(1 x 1024\), over the limit of 4.00 kB"):
        prepare(path, max_tensor_bytes=4000)
    assert prepare(path, max_tensor_bytes=4096).inputs[0].shape == (1, 1024)


def test_a_frozen_input_folds_an_if_to_the_branch_it_takes(tmp_path):
    path, a, b = if_model(tmp_path)
    for sr, want in ((16000, a), (8000, b)):
        model = prepare(path, input_values={"sr": sr})
        assert [n.op_type for n in model.load().graph.node] == ["MatMul"] and [i.name for i in model.inputs] == ["x"]
        x = model.sample_inputs(0)["x"]
        np.testing.assert_allclose(reference_outputs(model, {"x": x})[0], x @ want, rtol=1e-5)


def test_freezing_an_input_the_model_lacks_is_one_clear_error(tmp_path):
    path, _, _ = if_model(tmp_path)
    with pytest.raises(ExplorerError, match=r"--input-value names \['rate'\], but the model's inputs are \['sr', 'x'\]"):
        prepare(path, input_values={"rate": 16000})


def test_an_if_on_an_input_left_unfrozen_is_refused_naming_the_input(tmp_path):
    path, _, _ = if_model(tmp_path)
    with pytest.raises(ExplorerError, match=r"1 If node whose condition depends on its inputs \(sr\).*--input-value sr=VALUE"):
        prepare(path)


def test_onnxruntime_crashing_on_a_model_is_one_clear_error_not_a_dead_process(conv_add_relu_onnx, monkeypatch,
                                                                                tmp_path):
    # silero-vad with its sample rate frozen made onnxruntime segfault while creating the session
    import signal

    from explorer.model import static

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr(static, "_ort_outputs", lambda blob, feed, conn: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(ExplorerError, match="onnxruntime cannot run the model at the chosen input shapes: "
                                            "onnxruntime crashed on it"):
        prepare(str(conv_add_relu_onnx))
