"""Tensor parallelism (models.decoders.Shard): N shards of a small Llama run on the CPU, their partial sums
added at each all-reduce and their logits gathered, match the unsharded model."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from models.decoders import (
    ALLGATHER_LOGITS,
    ALLREDUCE_PREFIX,
    DecoderConfig,
    Shard,
    build_llama,
    shard_error,
    sharded_config,
)

#: 8 query heads over 2 key/value heads, a vocabulary no device count divides, biases on attention.
TINY = DecoderConfig(layers=2, d_model=64, heads=8, kv_heads=2, ffn=96, vocab=101, n_ctx=64, name="tiny-tp",
                     attention_bias=True)
PAST, STEP, BATCH = 3, 2, 2


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _feeds(cfg: DecoderConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, cfg.vocab, (BATCH, STEP)).astype(np.int64),
             "attention_mask": np.ones((BATCH, PAST + STEP), np.int64)}
    for i in range(cfg.layers):
        for kind in ("key", "value"):
            feeds[f"past_key_values.{i}.{kind}"] = rng.standard_normal((BATCH, cfg.kv_heads, PAST, cfg.head_dim)).astype(np.float32)
    return feeds


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(outputs, {k: v for k, v in feeds.items() if k in names})


def _stage(model: onnx.ModelProto, inputs: list[str], output: str) -> onnx.ModelProto:
    """The part of ``model`` that computes ``output`` from ``inputs`` (graph inputs or collectives' results)."""
    return onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(inputs, [output])


def _shard_feeds(feeds: dict[str, np.ndarray], cfg: DecoderConfig, shard: Shard) -> dict[str, np.ndarray]:
    """A shard's slice of the past keys and values: its key/value heads (the one it replicates)."""
    local = sharded_config(cfg, shard.devices)
    first = shard.index * cfg.kv_heads // shard.devices if cfg.kv_heads < shard.devices else shard.index * local.kv_heads
    return {k: (v[:, first:first + local.kv_heads] if k.startswith("past_key_values") else v) for k, v in feeds.items()}


def _sharded_logits(cfg: DecoderConfig, devices: int) -> np.ndarray:
    """The logits of ``devices`` shards run collective by collective: each all-reduce's partial sums
    added over the shards and fed to every shard's next stage, the logits concatenated."""
    weights = _weights(build_llama(cfg=cfg))
    shards = [build_llama(cfg=cfg, shard=Shard(i, devices), weights_from=weights) for i in range(devices)]
    feeds = [_shard_feeds(_feeds(cfg), cfg, s) for s in (Shard(i, devices) for i in range(devices))]
    collectives = [n for n in shards[0].graph.node if n.name.startswith(ALLREDUCE_PREFIX)]
    assert len(collectives) == 1 + 2 * cfg.layers  # the embedding's, and two a layer
    graph_inputs = [i.name for i in shards[0].graph.input]
    done: list[str] = []
    for node in collectives:
        partials = [_run(_stage(m, graph_inputs + done, node.input[0]), f, [node.input[0]])[0] for m, f in zip(shards, feeds)]
        total = np.sum(partials, axis=0)
        for f in feeds:
            f[node.output[0]] = total
        done.append(node.output[0])
    gather = next(n for n in shards[0].graph.node if n.name == ALLGATHER_LOGITS)
    pieces = [_run(_stage(m, graph_inputs + done, gather.input[0]), f, [gather.input[0]])[0] for m, f in zip(shards, feeds)]
    return np.concatenate(pieces, axis=-1)[..., :cfg.vocab]


@pytest.mark.parametrize("devices", [2, 4])
def test_shards_summed_at_each_all_reduce_give_the_unsharded_logits(devices):
    # 2 devices: 4 query heads and one key/value head each; 4 devices: 2 query heads each, every key/value
    # head replicated on two; the vocabulary of 101 padded to 51 or 26 rows a device
    (want,) = _run(build_llama(cfg=TINY), _feeds(TINY), ["logits"])
    np.testing.assert_allclose(_sharded_logits(TINY, devices), want, rtol=1e-5, atol=1e-5)


def test_a_tied_embedding_is_the_lm_head_of_each_device_s_vocabulary():
    cfg = dataclasses.replace(TINY, tie_embeddings=True, attention_bias=False)
    (want,) = _run(build_llama(cfg=cfg), _feeds(cfg), ["logits"])
    np.testing.assert_allclose(_sharded_logits(cfg, 2), want, rtol=1e-5, atol=1e-5)


def test_a_shard_holds_its_heads_feed_forward_and_vocabulary():
    local = sharded_config(TINY, 4)
    assert (local.heads, local.kv_heads, local.ffn, local.vocab, local.head_dim) == (2, 1, 24, 26, 8)


def test_a_shard_is_lowered_with_its_own_shapes():
    model = build_llama(cfg=TINY, shard=Shard(1, 2))
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs["past_key_values.0.key"] == ["batch", 1, "past_sequence", 8]
    weights = _weights(model)
    assert weights["model.layers.0.self_attn.q_proj.weight"].shape == (64, 32)
    assert weights["model.layers.0.self_attn.o_proj.weight"].shape == (32, 64)
    assert weights["model.layers.0.mlp.down_proj.weight"].shape == (48, 64)
    assert weights["lm_head.weight"].shape == (64, 51)


def test_a_split_that_does_not_divide_the_heads_is_refused_in_one_line():
    assert shard_error(TINY, 3) == "tiny-tp's query heads (8) do not split over 3 devices"
    assert shard_error(dataclasses.replace(TINY, kv_heads=4, heads=12, ffn=96), 8) == \
        "tiny-tp's query heads (12) do not split over 8 devices"
    assert shard_error(dataclasses.replace(TINY, heads=12, kv_heads=4, ffn=96), 6) == \
        "tiny-tp's 4 key/value heads neither split over nor replicate on 6 devices"
    assert shard_error(dataclasses.replace(TINY, heads=12, kv_heads=3, ffn=96), 6) == ""  # each on two devices
    assert shard_error(TINY, 4) == ""
