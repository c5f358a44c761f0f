"""Calibration for int8 post-training quantization: activation ranges from sample inputs.

The activations that int8 quantization needs a scale for are the data inputs of every Conv, and of
every MatMul or Gemm whose weight is a constant (an initializer), in graph order, except those the
model already quantizes (weights from DequantizeLinear). They are read by
running the prepared ONNX model in onnxruntime with those tensors added as outputs, over seeded
random inputs (the default) or the user's ``.npy`` files; the scale of each is symmetric per tensor,
``max |x| / 127``. TVM's ONNX importer keeps the graph order, so the quantization pass
(:mod:`explorer.tvm.passes.precision`) pairs the scales with the Relax ``conv2d``/``matmul`` calls by position.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import onnx

from explorer.core.prepared import PreparedModel
from explorer.model.samples import load_samples

#: Seeded random calibration samples used when no directory is given.
DEFAULT_SAMPLES = 4
_SEED_OFFSET = 1000  # calibration inputs differ from the accuracy-check input (seed 0)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-tensor activation scales in graph order, and what they were measured from."""

    scales: tuple[float, ...]
    source: str  # "seeded:<n>" or the sha256 of the calibration files

    @property
    def key(self) -> str:
        """Identifies the calibration in cache keys."""
        return hashlib.sha256(f"{self.source}|{self.scales}".encode()).hexdigest()[:16]


def quantized_inputs(model: onnx.ModelProto) -> list[str]:
    """Names of the activation tensors int8 quantization scales, in graph order."""
    rank = {i.name: len(i.dims) for i in model.graph.initializer}  # constant -> its rank
    rank |= {n.output[0]: len(next((a.t.dims for a in n.attribute if a.name == "value"), ()))
             for n in model.graph.node if n.op_type == "Constant"}
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    names = []
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] in dequantized:  # already quantized in the model
            continue
        # the int8 pass quantizes 2-D convolutions and matmuls whose weights are constants
        if (node.op_type == "Conv" and rank.get(node.input[1]) == 4) or (
                node.op_type in ("MatMul", "Gemm") and node.input[1] in rank and node.input[0] not in rank):
            names.append(node.input[0])
    return names


def calibration_feeds(prepared: PreparedModel, directory: str | Path | None = None,
                      samples: int = DEFAULT_SAMPLES) -> tuple[list[dict[str, np.ndarray]], str]:
    """The calibration inputs (the ``.npy`` files of ``directory``, else ``samples`` seeded samples)
    and what identifies them (:attr:`Calibration.source`)."""
    if directory is not None:
        feeds = load_samples(prepared, directory)
        digest = hashlib.sha256()
        for feed in feeds:
            for name in sorted(feed):
                digest.update(feed[name].tobytes())
        return feeds, digest.hexdigest()[:16]
    return [prepared.sample_inputs(_SEED_OFFSET + i) for i in range(samples)], f"seeded:{samples}"


def calibrate(prepared: PreparedModel, directory: str | Path | None = None,
              samples: int = DEFAULT_SAMPLES) -> Calibration:
    """Activation scales of ``prepared`` from onnxruntime runs on calibration inputs."""
    import onnxruntime as ort

    model = prepared.load()
    wanted = quantized_inputs(model)
    if not wanted:  # no constant weights (a decoder built from its config: its weights are inputs)
        return Calibration((), "nothing to calibrate")
    feeds, source = calibration_feeds(prepared, directory, samples)
    existing = {o.name for o in model.graph.output}
    for name in dict.fromkeys(wanted):
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    peak = dict.fromkeys(wanted, 0.0)
    for feed in feeds:
        values = dict(zip(out_names, sess.run(None, feed)))
        for name in peak:
            peak[name] = max(peak[name], float(np.max(np.abs(values[name]))))
    return Calibration(tuple(max(peak[n], 1e-12) / 127.0 for n in wanted), source)
