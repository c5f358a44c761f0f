"""A mixture of experts as models/decoders.py writes it: its routing and experts against a reference
written from the architectures' definitions (Hugging Face's Mixtral, Qwen3-MoE and gpt-oss blocks),
and only the routed experts' weights in the graph's products."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.utils import Extractor

from models.decoders import GPT_OSS_MINI, MOE_MINI, DecoderConfig, build_llama


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference(m: np.ndarray, w: dict, p: str, cfg: DecoderConfig) -> np.ndarray:
    """The feed-forward of a mixture, token by token: route, then the routed experts' weighted sum."""
    tokens = m.reshape(-1, cfg.d_model).astype(np.float64)
    logits = tokens @ w[f"{p}.router.weight"] + (w[f"{p}.router.bias"] if cfg.router_bias else 0)
    k = cfg.experts_per_token
    out = np.zeros_like(tokens)
    for t in range(len(tokens)):
        if cfg.routing == "topk-softmax":
            chosen = np.argsort(-logits[t], kind="stable")[:k]
            weights = _softmax(logits[t][chosen])
        else:
            probs = _softmax(logits[t])
            chosen = np.argsort(-probs, kind="stable")[:k]
            weights = probs[chosen] / (probs[chosen].sum() if cfg.router_renormalize else 1)
        for e, weight in zip(chosen, weights):
            def dense(x, name):
                y = x @ w[f"{p}.experts.{name}.weight"][e]
                return y + w[f"{p}.experts.{name}.bias"][e] if cfg.mlp_bias else y
            gate, up = dense(tokens[t], "gate_proj"), dense(tokens[t], "up_proj")
            if cfg.swiglu_limit:
                gate, up = np.minimum(gate, cfg.swiglu_limit), np.clip(up, -cfg.swiglu_limit, cfg.swiglu_limit)
                hidden = gate / (1 + np.exp(-1.702 * gate)) * (up + 1)
            else:
                hidden = gate / (1 + np.exp(-gate)) * up
            out[t] += weight * dense(hidden, "down_proj")
    return out.reshape(m.shape)


@pytest.mark.parametrize("cfg", [MOE_MINI, GPT_OSS_MINI], ids=["mixtral-style", "gpt-oss-style"])
def test_the_graph_s_mixture_is_the_architecture_s(cfg):
    model = build_llama(cfg=cfg)
    p = "model.layers.1.mlp"
    block = Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(["model.layers.1.post_attention_layernorm"], [f"{p}.experts.out"])
    weights = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    m = np.random.default_rng(3).standard_normal((2, 3, cfg.d_model)).astype(np.float32)
    (got,) = ort.InferenceSession(block.SerializeToString()).run(None, {"model.layers.1.post_attention_layernorm": m})
    np.testing.assert_allclose(got, reference(m, weights, p, cfg), rtol=1e-4, atol=1e-4)


def test_qwen3_moe_without_renormalisation_keeps_the_softmax_weights():
    cfg = DecoderConfig(layers=1, d_model=32, heads=4, kv_heads=2, ffn=48, vocab=100, n_ctx=64, experts=6,
                        experts_per_token=3, router_renormalize=False, qk_norm=True, architecture="Qwen3MoeForCausalLM")
    model = build_llama(cfg=cfg)
    p = "model.layers.0.mlp"
    block = Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(["model.layers.0.post_attention_layernorm"], [f"{p}.experts.out"])
    weights = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    m = np.random.default_rng(4).standard_normal((1, 4, 32)).astype(np.float32)
    (got,) = ort.InferenceSession(block.SerializeToString()).run(None, {"model.layers.0.post_attention_layernorm": m})
    np.testing.assert_allclose(got, reference(m, weights, p, cfg), rtol=1e-4, atol=1e-4)


def test_only_the_routed_experts_weights_reach_a_product():
    model = build_llama(cfg=MOE_MINI)
    producers = {o: n for n in model.graph.node for o in n.output}
    stacked = {i.name for i in model.graph.initializer if ".experts." in i.name and i.name.endswith(".weight")}
    products = [n for n in model.graph.node if n.op_type == "MatMul" and ".experts." in n.name]
    assert len(products) == 3 * MOE_MINI.layers
    for n in products:
        gather = producers[n.input[1]]
        # each product's weights are the stacked experts' gathered by the router's top-k indices
        assert gather.op_type == "Gather" and gather.input[0] in stacked and producers[gather.input[1]].op_type == "TopK"


def test_attention_sinks_take_a_share_of_each_softmax():
    cfg = GPT_OSS_MINI
    model = build_llama(cfg=cfg)
    p = "model.layers.0.self_attn"
    block = Extractor(onnx.shape_inference.infer_shapes(model)).extract_model([f"{p}.biased"], [f"{p}.softmax"])
    heads = cfg.heads
    s = np.random.default_rng(5).standard_normal((1, cfg.kv_heads, heads // cfg.kv_heads, 3, 7)).astype(np.float32)
    sinks = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == f"{p}.sinks")
    (got,) = ort.InferenceSession(block.SerializeToString()).run(None, {f"{p}.biased": s})
    sink = sinks.reshape(1, cfg.kv_heads, -1, 1, 1)
    expected = np.exp(s) / (np.exp(s).sum(axis=-1, keepdims=True) + np.exp(sink))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert (got.sum(axis=-1) < 1).all()


def test_the_shipped_graph_is_a_valid_onnx_model():
    onnx.checker.check_model(build_llama(cfg=GPT_OSS_MINI))
