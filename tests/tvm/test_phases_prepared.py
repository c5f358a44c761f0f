"""A decoder's phases prepared as static models."""

from __future__ import annotations

import onnx
import pytest

from explorer.core.errors import ExplorerError
from explorer.model.phases import Phase
from explorer.model.prepare import prepare


def test_prepared_phases_are_static_and_count_the_cache(tiny_gpt2):
    prefill = prepare(str(tiny_gpt2), phase=Phase("prefill", 8), batch=2)
    decode = prepare(str(tiny_gpt2), phase=Phase("decode", 8), batch=2)
    assert (prefill.name, prefill.tokens, prefill.kv_cache_bytes) == ("tiny-gpt2@prefill8@b2", 16, 0)
    assert [i.name for i in prefill.inputs] == ["input_ids", "attention_mask"]
    assert decode.name == "tiny-gpt2@decode8@b2" and decode.tokens == 2
    # keys and values, 2 layers, batch 2, 4 heads, 8 positions, 16 per head, 4 bytes
    assert decode.kv_cache_bytes == 2 * 2 * 2 * 4 * 8 * 16 * 4
    assert dict((i.name, i.shape) for i in decode.inputs)["past_key_values.0.key"] == (2, 4, 8, 16)


def test_prepared_half_precision_cache_counts_half_the_bytes(tiny_gpt2):
    decode = prepare(str(tiny_gpt2), phase=Phase("decode", 8), batch=2, kv_cache_dtype="float16")
    prefill = prepare(str(tiny_gpt2), phase=Phase("prefill", 8), kv_cache_dtype="float16")
    assert decode.name == "tiny-gpt2@decode8@kv-float16@b2" and decode.kv_cache_dtype == "float16"
    assert decode.kv_cache_bytes == 2 * 2 * 2 * 4 * 8 * 16 * 2
    assert dict((i.name, i.dtype) for i in decode.inputs)["past_key_values.1.value"] == "float16"
    outputs = {o.name: o.type.tensor_type.elem_type for o in prefill.load().graph.output}
    assert outputs["present.0.key"] == onnx.TensorProto.FLOAT16 and outputs["logits"] == onnx.TensorProto.FLOAT


def test_a_decoder_without_a_phase_is_one_clear_error(tiny_gpt2):
    with pytest.raises(ExplorerError, match="is a decoder .* --phase prefill:P,decode:L"):
        prepare(str(tiny_gpt2))


def test_a_phase_on_a_model_that_is_no_decoder_is_one_clear_error(matmul_onnx):
    with pytest.raises(ExplorerError, match="--phase needs a decoder"):
        prepare(str(matmul_onnx), phase=Phase("decode", 4))


def test_a_static_batch_of_another_size_is_refused(matmul_onnx):
    with pytest.raises(ExplorerError, match="--batch 3: input 'x' of matmul.onnx has a static batch of 1"):
        prepare(str(matmul_onnx), batch=3)


