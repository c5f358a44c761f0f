"""A model made ready to compile: a static ONNX file on disk, its hash and its inputs.

:func:`explorer.model.prepare.prepare` makes one; everything after it (the TVM boundary, the
stores, the sweep) handles this record only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx

#: numpy's name of each ONNX element type the explorer reads.
ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input with its static shape, and what sample values suit it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    high: int = 2              # integer samples lie in [0, high): a table's rows for ids a Gather indexes
    fill: int | None = None    # every sample element this value (masks: 1, booleans: True)


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A static, simplified ONNX model on disk, identified by the hash of its bytes."""

    name: str
    path: Path
    sha256: str
    inputs: tuple[InputSpec, ...]
    preparation: str = "simplified"  # "shapes folded by onnxruntime" or "shapes only": see :func:`explorer.model.static.make_static`
    phase: str = ""  # a decoder's phase (explorer.model.phases.Phase.label: "prefill:128", "decode:128"); "" otherwise
    batch: int = 1  # the first input's first dimension
    tokens: int = 0  # tokens one inference of a decoder's phase produces, over the batch (0: not a decoder)
    kv_cache_bytes: int = 0  # bytes of KV cache a decode step reads (the past inputs)
    kv_cache_dtype: str = ""  # the dtype the cache is kept in between steps ("" when not a decoder's phase)

    @property
    def key(self) -> str:
        """Short content hash: the model part of every cache key."""
        return self.sha256[:16]

    def load(self) -> onnx.ModelProto:
        """The prepared ONNX model."""
        return onnx.load(str(self.path))

    def sample_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded inputs: standard normal floats; integers in ``[0, high)`` (token ids within the
        table they index); masks and booleans all set."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            if spec.fill is not None:
                out[spec.name] = np.full(spec.shape, spec.fill).astype(spec.dtype)
            elif spec.dtype.startswith("float"):
                out[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            else:
                out[spec.name] = rng.integers(0, spec.high, spec.shape).astype(spec.dtype)
        return out


def input_specs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    """The graph inputs of ``model`` (its initializers left out), with the sample values that suit each."""
    inits = {i.name: i for i in model.graph.initializer}
    tables: dict[str, int] = {}  # input -> rows of the table a Gather indexes with it
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[0] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = list(inits[node.input[0]].dims)
            if dims:
                rows = dims[axis % len(dims)]
                tables[node.input[1]] = min(tables.get(node.input[1], rows), rows)
    specs = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        dtype = ONNX_TO_NUMPY.get(i.type.tensor_type.elem_type, "float32")
        shape = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        fill = 1 if dtype == "bool" or (not dtype.startswith("float") and "mask" in i.name.lower()) else None
        specs.append(InputSpec(i.name, shape, dtype, high=max(tables.get(i.name, 2), 1), fill=fill))
    return tuple(specs)
