"""Deterministic, code-built ONNX model zoo (no downloads).

Models: ``mlp``, ``resnet18``, ``resnet50``, ``mobilenetv2``, ``bert-mini``, ``yolo-block``, and the
decoders ``gpt2`` and ``llama-mini`` (KV cache as inputs and outputs; swept per phase), and decoders
from shipped Hugging Face configs. ``NAME@tpN`` is one device's shard of a Llama-family decoder under
tensor parallelism over N devices.
"""

from .zoo import (
    ZOO_VERSION,
    ModelInfo,
    count_macs,
    get_model,
    list_models,
    onnx_path,
    split_tensor_parallel,
    tensor_parallel_name,
)

__all__ = ["ModelInfo", "list_models", "get_model", "onnx_path", "count_macs", "ZOO_VERSION", "split_tensor_parallel",
           "tensor_parallel_name"]
