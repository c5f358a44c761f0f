"""Magnitude pruning of a model's conv and matmul weights, in numpy, before TVM imports it.

A strategy's ``sparsity`` (:data:`explorer.core.strategies.SPARSITY_PATTERN`) prunes every constant weight
that a ``Conv``, ``MatMul`` or ``Gemm`` multiplies with (its second input, an initializer):

- ``2:4``: along the reduction axis of each output (a conv weight's ``C_in x kh x kw`` per output
  channel, a matmul weight's ``K`` per column), the two largest magnitudes of every four consecutive
  weights are kept (NVIDIA's 2:4 structured sparsity). Where the reduction length is not a multiple of
  4 (a 3x3 conv of 3 channels has 27), the last group is shorter and keeps at most 2 of its weights.
- ``unstructured:P``: the P% smallest magnitudes of each weight tensor are zeroed.

The model is otherwise unchanged: its builds run the pruned weights dense, its accuracy is measured
against the dense fp32 model, and :mod:`cost_models.sparsity` charges each target what its hardware
makes of the zeros.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

#: Operators whose second input is a weight to prune.
WEIGHT_OPS = ("Conv", "MatMul", "Gemm")


def _reduction_rows(weight: np.ndarray, op: str, trans_b: bool) -> tuple[np.ndarray, callable]:
    """``weight`` as ``[outputs, reduction]`` rows and the function that puts such rows back."""
    if op == "Conv":
        return weight.reshape(weight.shape[0], -1), lambda rows: rows.reshape(weight.shape)
    if op == "Gemm" and trans_b:  # B is [N, K]
        return weight, lambda rows: rows
    # MatMul / Gemm: [..., K, N]: one row per column n (and leading batch index)
    moved = np.moveaxis(weight, -2, -1)
    shape = moved.shape
    return moved.reshape(-1, shape[-1]), lambda rows: np.moveaxis(rows.reshape(shape), -1, -2)


def prune_2_4(rows: np.ndarray) -> np.ndarray:
    """Each row of ``rows`` with the two largest magnitudes of every four consecutive values kept (a
    last group of fewer than four keeps at most two)."""
    n, k = rows.shape
    groups = -(-k // 4)
    padded = np.zeros((n, groups * 4), rows.dtype)
    padded[:, :k] = rows
    magnitude = np.abs(padded).astype(np.float64)
    magnitude[:, k:] = -1.0  # the padding of a short last group is never kept
    magnitude = magnitude.reshape(n, groups, 4)
    order = np.argsort(-magnitude, axis=-1, kind="stable")
    keep = np.zeros_like(magnitude, dtype=bool)
    np.put_along_axis(keep, order[..., :2], True, axis=-1)
    return np.where(keep.reshape(n, -1), padded, 0)[:, :k].astype(rows.dtype)


def prune_unstructured(weight: np.ndarray, percent: int) -> np.ndarray:
    """``weight`` with its ``percent``% smallest magnitudes zeroed (exactly that many, ties by position)."""
    flat = weight.reshape(-1)
    drop = int(round(flat.size * percent / 100))
    out = flat.copy()
    out[np.argsort(np.abs(flat), kind="stable")[:drop]] = 0
    return out.reshape(weight.shape)


def prune(model: onnx.ModelProto, sparsity: str) -> onnx.ModelProto:
    """A copy of ``model`` with its conv and matmul weights pruned to ``sparsity`` (``2:4`` or
    ``unstructured:P``; ``none`` gives the model unchanged)."""
    if sparsity == "none":
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: i for i in model.graph.initializer}
    done = set()
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in inits or node.input[1] in done:
            continue
        init = inits[node.input[1]]
        weight = numpy_helper.to_array(init)
        if weight.ndim < 2 or not np.issubdtype(weight.dtype, np.floating):
            continue
        if sparsity == "2:4":
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            rows, back = _reduction_rows(weight, node.op_type, trans_b)
            pruned = back(prune_2_4(rows))
        else:
            pruned = prune_unstructured(weight, int(sparsity.split(":")[1]))
        init.CopyFrom(numpy_helper.from_array(pruned.astype(weight.dtype), init.name))
        done.add(init.name)
    return model


def density(weight: np.ndarray) -> float:
    """The share of ``weight``'s elements that are not zero."""
    return float(np.count_nonzero(weight)) / weight.size if weight.size else 1.0
