"""Decoder phases (prefill without past inputs, decode against a cache; a decoder file exported in the
common KV-cache naming swept through both) and the batch axis."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from explorer.core.errors import ExplorerError
from explorer.model.phases import Phase, drop_past, is_decoder, parse_phases, phase_shapes, with_kv_cache_dtype
from explorer.model.prepare import prepare
from models.decoders import DecoderConfig, build_gpt2, build_llama

TINY = DecoderConfig(layers=2, d_model=64, heads=4, kv_heads=4, ffn=256, vocab=500, n_ctx=64)
TINY_GQA = DecoderConfig(layers=2, d_model=64, heads=4, kv_heads=2, ffn=192, vocab=500, n_ctx=64)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A GPT-2 of 2 layers, as an exporter writes it (symbolic batch and lengths, past_key_values.N.*)."""
    path = tmp_path_factory.mktemp("decoders") / "tiny-gpt2.onnx"
    onnx.save(build_gpt2(seed=1, cfg=TINY), path)
    return path


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


def test_prepared_phases_are_static_and_count_the_cache(tiny_gpt2):
    prefill = prepare(str(tiny_gpt2), phase=Phase("prefill", 8), batch=2)
    decode = prepare(str(tiny_gpt2), phase=Phase("decode", 8), batch=2)
    assert (prefill.name, prefill.tokens, prefill.kv_cache_bytes) == ("tiny-gpt2@prefill8@b2", 16, 0)
    assert [i.name for i in prefill.inputs] == ["input_ids", "attention_mask"]
    assert decode.name == "tiny-gpt2@decode8@b2" and decode.tokens == 2
    # keys and values, 2 layers, batch 2, 4 heads, 8 positions, 16 per head, 4 bytes
    assert decode.kv_cache_bytes == 2 * 2 * 2 * 4 * 8 * 16 * 4
    assert dict((i.name, i.shape) for i in decode.inputs)["past_key_values.0.key"] == (2, 4, 8, 16)


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


def test_an_exported_decoder_sweeps_through_both_phases(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", str(tiny_gpt2), "--phase", "prefill:8,decode:8",
                           "--targets", "cpu,npu", "--strategies", "fused,fused-fp16", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    v = pd.read_csv(out / "variants.csv").set_index(["model", "strategy", "target"])
    assert set(v.index.get_level_values("model")) == {"tiny-gpt2@prefill8", "tiny-gpt2@decode8"}
    fp32 = v.xs(("fused", "cpu"), level=("strategy", "target"))
    assert fp32["within_tolerance"].all()  # both phases match onnxruntime
    prefill, decode = fp32.loc["tiny-gpt2@prefill8"], fp32.loc["tiny-gpt2@decode8"]
    assert (prefill["phase"], prefill["tokens"], decode["phase"], decode["tokens"]) == ("prefill:8", 8, "decode:8", 1)
    assert decode["energy_per_token_j"] == decode["energy_j"] and prefill["energy_per_token_j"] == prefill["energy_j"] / 8
    assert prefill["energy_per_token_j"] < decode["energy_per_token_j"]  # the weights are read once for 8 tokens
    assert decode["tokens_per_j"] == pytest.approx(1 / decode["energy_j"])
    assert decode["measured_tokens_per_s"] == pytest.approx(1 / decode["measured_latency_s"])
    assert decode["kv_cache_bytes"] == 2 * 2 * 4 * 8 * 16 * 4
    fp16 = v.xs(("fused-fp16", "cpu"), level=("strategy", "target"))
    assert fp16["accuracy_loss_pct"].notna().all()  # reduced precision: judged by its accuracy
    # the arg-max over the vocabulary of every position's logits, against fp32 (the caches left out)
    assert fp32["next_token_agreement"].eq(1.0).all() and fp16["next_token_agreement"].between(0, 1).all()
    assert v["next_token_agreement"].notna().sum() == 4  # the cpu rows, which ran


# --- the batch axis ------------------------------------------------------------------------------

def test_the_zoo_builds_at_the_batch_and_rows_count_per_sample(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", "mlp", "--batch", "2,4", "--targets", "cpu",
                           "--strategies", "fused", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    v = pd.read_csv(out / "variants.csv").set_index("model")
    assert list(v.index) == ["mlp@b2", "mlp@b4"] and list(v["batch"]) == [2, 4]
    assert v.loc["mlp@b4", "macs"] == 2 * v.loc["mlp@b2", "macs"] == 4 * (784 * 512 + 512 * 256 + 256 * 10)
    for _, r in v.iterrows():
        assert r["energy_per_sample_j"] == r["energy_j"] / r["batch"]
        assert r["measured_samples_per_s"] == pytest.approx(r["batch"] / r["measured_latency_s"])
    assert pd.isna(v["tokens"]).all()  # not a decoder


def test_a_static_batch_of_another_size_is_refused(matmul_onnx):
    with pytest.raises(ExplorerError, match="--batch 3: input 'x' of matmul.onnx has a static batch of 1"):
        prepare(str(matmul_onnx), batch=3)


def test_gpt2_decode_flops_are_kaplans_per_token_formula():
    # Kaplan et al. 2020, Table 1: forward FLOPs per token 2N + 2 n_layer n_ctx d_model + 2 d_model n_vocab,
    # N = 12 n_layer d_model^2; the TIR's multiply-adds x 2, decode at a context of 128 (analysed, not built)
    from explorer.sweep.sweep import run_sweep

    v = run_sweep(["gpt2"], targets=["npu"], strategies=["fused"], phases="decode:128", build=False,
                  progress=False).variants.iloc[0]
    layers, d, vocab, ctx = 12, 768, 50257, 128
    kaplan = 2 * 12 * layers * d * d + 2 * layers * ctx * d + 2 * d * vocab
    assert abs(2 * v["macs"] / kaplan - 1) < 0.02
    # exactly: the weights once, both context products (q.k and p.v) over the 129 positions, the tied LM head
    # (its 50257 columns padded to 50272, whole 16-lane vectors: pad_matmul_columns), and each of the 25
    # LayerNorms' sum of squared deviations
    assert v["macs"] == 12 * layers * d * d + 2 * layers * (ctx + 1) * d + d * 50272 + (2 * layers + 1) * d


def test_gpt2_fp16_decode_moves_little_more_than_its_weights_and_cache():
    # a decode step streams the weights and the KV cache (read, and the present written): the fused fp16
    # build's DRAM traffic within 1.25x of those compulsory bytes on the gpu and the npu (issue 16)
    from explorer.sweep.sweep import run_sweep

    result = run_sweep(["gpt2"], targets=["gpu", "npu"], strategies=["fused-fp16"], phases="decode:128", build=False,
                       kv_cache_dtype="float16", progress=False)
    v = result.variants.set_index("target")
    k = result.kernels.groupby("target")[["compulsory_bytes", "dram_bytes"]].sum()
    for target in ("gpu", "npu"):
        compulsory = k.loc[target, "compulsory_bytes"]  # the weights and model inputs (the past cache among them)
        assert compulsory >= v.loc[target, "weight_bytes"] + v.loc[target, "kv_cache_bytes"]
        assert k.loc[target, "dram_bytes"] == v.loc[target, "dram_bytes"] <= 1.25 * compulsory, target
