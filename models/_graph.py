"""A small deterministic ONNX graph builder used by the model zoo.

Everything here is plain ``onnx.helper`` / ``onnx.numpy_helper``; weights come
from one seeded ``numpy.random.Generator`` per model, drawn in graph order, so
the same builder always produces byte-identical ONNX.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 8 is the one that goes with opset 17; pinning it (instead of
# onnx.helper's newest) keeps older onnxruntime / TVM importers happy and the
# bytes independent of the installed onnx version.
IR_VERSION = 8
PRODUCER = "tvm-energy-models"


class GraphBuilder:
    """Accumulates nodes and initializers; hands out unique, meaningful names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._tensor_names: set[str] = set()
        self._node_names: set[str] = set()
        self._consts: dict[str, str] = {}

    # ---------------------------------------------------------------- tensors
    def _claim(self, name: str) -> str:
        if name in self._tensor_names:
            raise ValueError(f"duplicate tensor name {name!r}")
        self._tensor_names.add(name)
        return name

    def add_input(self, name: str, shape: Sequence[int | str], elem_type: int = TensorProto.FLOAT) -> str:
        """A graph input; a ``str`` dimension is symbolic (its name)."""
        self._claim(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def add_output(self, name: str, shape: Sequence[int | str], elem_type: int = TensorProto.FLOAT) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def init(self, name: str, array: np.ndarray) -> str:
        """Add an initializer (weights are stored as float32 / int64 as given)."""
        self._claim(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, name: str, value, dtype=np.float32) -> str:
        """A shared constant initializer (created once, reused by name)."""
        if name not in self._consts:
            self._consts[name] = self.init(name, np.asarray(value, dtype=dtype))
        return self._consts[name]

    # ---------------------------------------------------------------- weights
    def normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        return (self.rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std)).astype(np.float32)

    def uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, size=tuple(shape)).astype(np.float32)

    # ------------------------------------------------------------------ nodes
    def node(self, op: str, inputs: Sequence[str], name: str, n_outputs: int = 1, **attrs) -> str:
        """Add a node named ``name``; its (first) output tensor is also called ``name``."""
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        outs = [self._claim(name)] + [self._claim(f"{name}:{i}") for i in range(1, n_outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0]

    # ----------------------------------------------------------- composites
    def conv(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        pad: int | None = None,
        groups: int = 1,
        bias: bool = False,
        gain: float = 2.0,
    ) -> str:
        """Conv with He-normal weights (std = sqrt(gain / fan_in)), torchvision layout."""
        if pad is None:
            pad = k // 2
        fan_in = (cin // groups) * k * k
        w = self.init(f"{name}.weight", self.normal((cout, cin // groups, k, k), math.sqrt(gain / fan_in)))
        ins = [x, w]
        if bias:
            ins.append(self.init(f"{name}.bias", self.normal((cout,), 0.01)))
        return self.node(
            "Conv",
            ins,
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            dilations=[1, 1],
            group=groups,
        )

    def batchnorm(self, x: str, name: str, c: int, eps: float = 1e-5, gamma: float = 1.0) -> str:
        """Inference BatchNormalization with gamma ~ ``gamma`` and running stats near (0, 1)."""
        scale = self.init(f"{name}.weight", gamma * self.uniform((c,), 0.9, 1.1))
        beta = self.init(f"{name}.bias", self.normal((c,), 0.05))
        mean = self.init(f"{name}.running_mean", self.normal((c,), 0.05))
        var = self.init(f"{name}.running_var", self.uniform((c,), 0.8, 1.2))
        return self.node("BatchNormalization", [x, scale, beta, mean, var], name, epsilon=eps)

    def linear(self, x: str, name: str, fin: int, fout: int, gain: float = 1.0) -> str:
        """Gemm with torchvision's Linear layout (weight [out, in], transB=1)."""
        w = self.init(f"{name}.weight", self.normal((fout, fin), math.sqrt(gain / fin)))
        b = self.init(f"{name}.bias", self.normal((fout,), 0.01))
        return self.node("Gemm", [x, w, b], name, transB=1)

    # ------------------------------------------------------------------ model
    def build(self, graph_name: str, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs, self.outputs, initializer=self.initializers, doc_string=doc
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER,
            doc_string=doc,
        )
        return model
