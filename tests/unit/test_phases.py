"""A decoder's phases as graph rewrites: shapes, the dropped past inputs and a half-precision cache."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from explorer.core.errors import ExplorerError
from explorer.model.phases import Phase, drop_past, is_decoder, parse_phases, phase_shapes, with_kv_cache_dtype
from models.decoders import DecoderConfig, build_gpt2, build_llama

TINY = DecoderConfig(layers=2, d_model=64, heads=4, kv_heads=4, ffn=256, vocab=500, n_ctx=64)
TINY_GQA = DecoderConfig(layers=2, d_model=64, heads=4, kv_heads=2, ffn=192, vocab=500, n_ctx=64)


def run_ort(model: onnx.ModelProto, ids: np.ndarray, past: list[np.ndarray] | None, cfg: DecoderConfig):
    feed = {"input_ids": ids, "attention_mask": np.ones((ids.shape[0], ids.shape[1] + (past[0].shape[2] if past else 0)),
                                                        np.int64)}
    names = {i.name for i in model.graph.input}
    for i in range(cfg.layers):
        for j, kind in enumerate(("key", "value")):
            name = f"past_key_values.{i}.{kind}"
            if name in names:
                feed[name] = past[2 * i + j] if past else np.zeros((ids.shape[0], cfg.kv_heads, 0, cfg.head_dim), np.float32)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def test_parse_phases():
    assert parse_phases("prefill:128,decode:64") == [Phase("prefill", 128), Phase("decode", 64)]
    with pytest.raises(ExplorerError, match="bad --phase 'decode:0'"):
        parse_phases("decode:0")
    with pytest.raises(ExplorerError, match="bad --phase 'warmup:3'"):
        parse_phases("warmup:3")


def test_phase_shapes_of_a_decode_step():
    model = build_gpt2(cfg=TINY)
    shapes = phase_shapes(model, Phase("decode", 10), batch=3)
    assert shapes["input_ids"] == (3, 1) and shapes["attention_mask"] == (3, 11)
    assert shapes["past_key_values.1.value"] == (3, 4, 10, 16)


@pytest.mark.parametrize("build,cfg", [(build_gpt2, TINY), (build_llama, TINY_GQA)])
def test_the_cache_a_prefill_writes_is_what_decode_continues_from(build, cfg):
    # the zoo's decoders are real decoders: prefill of 5 tokens then decode of 1 = prefill of all 6
    model = build(cfg=cfg)
    ids = np.random.default_rng(0).integers(0, cfg.vocab, (2, 6)).astype(np.int64)
    first = run_ort(model, ids[:, :5], None, cfg)
    step = run_ort(model, ids[:, 5:], first[1:], cfg)
    full = run_ort(model, ids, None, cfg)
    assert np.abs(full[0][:, -1] - step[0][:, 0]).max() < 1e-4


def test_prefill_drops_the_past_inputs_and_computes_the_same():
    model = build_gpt2(cfg=TINY)
    shapes = phase_shapes(model, Phase("prefill", 5))
    dropped = drop_past(model, shapes)
    assert not is_decoder(dropped) and [i.name for i in dropped.graph.input] == ["input_ids", "attention_mask"]
    ids = np.random.default_rng(1).integers(0, TINY.vocab, (1, 5)).astype(np.int64)
    want, got = run_ort(model, ids, None, TINY), run_ort(dropped, ids, None, TINY)
    assert all(np.array_equal(a, b) for a, b in zip(want, got))


def test_a_half_precision_cache_is_extended_in_half_precision():
    model = build_gpt2(seed=1, cfg=TINY)
    half = with_kv_cache_dtype(model, "float16")
    rng = np.random.default_rng(2)
    ids = rng.integers(0, TINY.vocab, (1, 1)).astype(np.int64)
    past = [rng.standard_normal((1, 4, 6, 16)).astype(np.float32) for _ in range(2 * TINY.layers)]
    want = run_ort(model, ids, [p.astype(np.float16).astype(np.float32) for p in past], TINY)
    got = run_ort(half, ids, [p.astype(np.float16) for p in past], TINY)
    # the presents: the past as given, then the step's keys and values rounded once to half precision
    # (exactly the fp32 model's in the first layer, which reads nothing rounded before it makes them)
    assert all(g.dtype == np.float16 for g in got[1:])
    assert all(np.array_equal(w.astype(np.float16), g) for w, g in zip(want[1:3], got[1:3]))
    assert all(np.array_equal(g[:, :, :6], p.astype(np.float16)) for g, p in zip(got[1:], past))
    # the layers read the step's keys and values from the cache, rounded: the logits move by that much
    assert 0 < np.abs(want[0] - got[0]).max() < 1e-2 * np.abs(want[0]).max()


