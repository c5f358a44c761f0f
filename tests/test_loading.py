"""Loading ONNX files: static shapes, shape folding and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.loading import parse_input_shapes, prepare
from explorer.reference import reference_outputs
from explorer.tvm.frontend import import_onnx, unsupported_ops


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


def test_bad_input_shape_syntax_is_an_error():
    with pytest.raises(ExplorerError, match="expected NAME:D1,D2"):
        parse_input_shapes(["x=1,2"])


def test_unsupported_operator_is_named_with_its_count(unsupported_onnx):
    model = prepare(str(unsupported_onnx))
    assert unsupported_ops(model.load()) == {"Det": 2}
    with pytest.raises(ExplorerError, match=r"does not support: Det \(2 nodes\)"):
        import_onnx(model.load())


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
