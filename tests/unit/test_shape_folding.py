"""Folding shape computations by evaluating them in onnxruntime (:mod:`explorer.model.shape_folding`)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from explorer.model.shape_folding import fold_shape_computations, input_independent
from tests.conftest import make_model


def _ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _model():
    """y = reshape(x, [shape(x)[0], -1]) + 1, and z = nonzero(x) whose shape depends on x's values."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Add", ["flat", "one_f"], ["y"]),
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Shape", ["nz"], ["nz_shape"]),
        helper.make_node("Cast", ["nz_shape"], ["z"], to=TensorProto.FLOAT),
    ]
    inits = [_ints("zero", [0]), _ints("one", [1]), _ints("minus1", [-1]),
             numpy_helper.from_array(np.array(1, np.float32), "one_f")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12]),
                       helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])], inits)


def test_shapes_of_data_independent_tensors_are_input_independent_and_nonzero_is_not():
    assert input_independent(_model()) == {"shape", "batch", "target"}


def test_the_reshape_target_becomes_a_constant_and_its_computation_goes():
    feed = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    folded = fold_shape_computations(_model(), feed)
    assert [n.op_type for n in folded.graph.node] == ["Reshape", "Add", "NonZero", "Shape", "Cast"]
    target = next(i for i in folded.graph.initializer if i.name == "target")
    assert numpy_helper.to_array(target).tolist() == [2, -1]
    assert {i.name for i in folded.graph.initializer} == {"target", "one_f"}  # unread constants are dropped
