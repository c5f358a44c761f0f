"""Decoders swept in phases and batches."""

from __future__ import annotations

import pandas as pd
import pytest


def test_an_exported_decoder_sweeps_through_both_phases(cli, tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    done = cli("sweep", str(tiny_gpt2), "--phase", "prefill:8,decode:8", "--targets", "cpu,npu", "--strategies", "fused,fused-fp16", "--out", str(out), "--quiet", timeout=900)
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

def test_the_zoo_builds_at_the_batch_and_rows_count_per_sample(cli, tmp_path):
    out = tmp_path / "run"
    done = cli("sweep", "mlp", "--batch", "2,4", "--targets", "cpu", "--strategies", "fused", "--out", str(out), "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr
    v = pd.read_csv(out / "variants.csv").set_index("model")
    assert list(v.index) == ["mlp@b2", "mlp@b4"] and list(v["batch"]) == [2, 4]
    assert v.loc["mlp@b4", "macs"] == 2 * v.loc["mlp@b2", "macs"] == 4 * (784 * 512 + 512 * 256 + 256 * 10)
    for _, r in v.iterrows():
        assert r["energy_per_sample_j"] == r["energy_j"] / r["batch"]
        assert r["measured_samples_per_s"] == pytest.approx(r["batch"] / r["measured_latency_s"])
    assert pd.isna(v["tokens"]).all()  # not a decoder


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
