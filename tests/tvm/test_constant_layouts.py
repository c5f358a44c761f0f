"""Transposes, reshapes and float casts of constants folded in numpy (explorer.tvm.passes.constant_layouts):
the constants TVM's FoldConstant would have built and run, bit for bit, and nothing else folded."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tvm import relax
from tvm.ir.expr import Constant

from explorer.tvm.passes.constant_layouts import fold_constant_layouts


def _module(make):
    """A ``main`` of no parameters returning ``make(...)`` of constants."""
    bb = relax.BlockBuilder()
    with bb.function("main", []):
        with bb.dataflow():
            out = bb.emit_output(make())
        bb.emit_func_output(out)
    return bb.get()


def _result(mod):
    """What ``main`` binds its output to (a constant once folded, else the call)."""
    return mod["main"].body.blocks[0].bindings[-1].value


def _tvm_folded(mod) -> np.ndarray:
    """The constant TVM's own FoldConstant computes for ``mod``'s output (legalized, built, run)."""
    folded = relax.transform.FoldConstant()(relax.transform.LegalizeOps()(mod))
    body = folded["main"].body
    value = body.body if not isinstance(body.body, relax.Var) else body.blocks[0].bindings[-1].value
    return value.value.numpy()


def test_a_transposed_constant_is_the_transposed_array():
    w = np.arange(6, dtype="float32").reshape(2, 3)
    folded = _result(fold_constant_layouts(_module(lambda: relax.op.permute_dims(relax.const(w), [1, 0]))))
    assert isinstance(folded, Constant)
    np.testing.assert_array_equal(folded.value.numpy(), [[0, 3], [1, 4], [2, 5]])


def test_a_reshaped_bias_keeps_its_values_in_the_new_shape():
    b = np.array([1, 2, 3], "int8")
    folded = _result(fold_constant_layouts(_module(lambda: relax.op.reshape(relax.const(b), (1, 3, 1, 1)))))
    assert folded.value.numpy().shape == (1, 3, 1, 1) and str(folded.ty.dtype) == "int8"
    np.testing.assert_array_equal(folded.value.numpy().ravel(), [1, 2, 3])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_float_cast_rounds_as_tvms_generated_code_does(dtype):
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-9, 6, 4000)  # subnormal results, overflow to infinity, ties
    w = np.concatenate([rng.standard_normal(4000) * scale, [65504, 65520, 3.4e38, -0.0, 1e-9]]).astype("float32")
    mod = _module(lambda: relax.op.astype(relax.const(w), dtype))
    ours = _result(fold_constant_layouts(mod)).value.numpy()
    assert ours.dtype == (np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    np.testing.assert_array_equal(ours.view(np.uint16), _tvm_folded(mod).view(np.uint16))


def test_a_cast_to_integers_is_left_to_tvm():
    w = np.array([1.5, -2.5, 300.0], "float32")  # rounding and saturation are TVM's to define
    folded = _result(fold_constant_layouts(_module(lambda: relax.op.astype(relax.const(w), "int8"))))
    assert isinstance(folded, relax.Call)
