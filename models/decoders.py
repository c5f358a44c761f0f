"""Decoder-only language models for the zoo, written node by node as exporters write them.

Each model takes ``input_ids`` ``[batch, sequence]``, ``attention_mask`` ``[batch, past_sequence +
sequence]`` and, per layer, ``past_key_values.N.key`` / ``.value`` ``[batch, kv_heads, past_sequence,
head_dim]``; it returns ``logits`` ``[batch, sequence, vocab]`` and ``present.N.key`` / ``.value`` (the
cache with this step's keys and values appended). Batch and both sequence lengths are symbolic, as in
an export by Hugging Face Optimum; positions and the causal mask are computed from the shapes (Shape,
Range, comparisons), which preparation folds once a phase fixes them (see ``explorer/phases.py``).

- ``gpt2``: GPT-2 small (Radford et al. 2019; Hugging Face ``gpt2``): 12 layers, d_model 768, 12 heads,
  vocabulary 50257, 1024 positions, pre-LayerNorm, GELU (tanh form), tied input and output embeddings.
- ``llama-mini``: a Llama-style decoder (Touvron et al. 2023): RMSNorm, rotary position embeddings,
  grouped-query attention, SwiGLU feed-forward, no biases, an untied LM head; 4 layers, d_model 256,
  8 query heads sharing 2 key/value heads, feed-forward 768, vocabulary 32000.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from onnx import TensorProto

from ._graph import GraphBuilder


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A decoder's shape: what the KV cache and the published FLOP formulas need."""

    layers: int
    d_model: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    n_ctx: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def kv_cache_bytes(self, batch: int, tokens: int, bytes_per_element: int = 4) -> int:
        """Bytes of the keys and values of ``tokens`` positions, all layers."""
        return 2 * self.layers * batch * self.kv_heads * tokens * self.head_dim * bytes_per_element


GPT2 = DecoderConfig(layers=12, d_model=768, heads=12, kv_heads=12, ffn=3072, vocab=50257, n_ctx=1024)
LLAMA_MINI = DecoderConfig(layers=4, d_model=256, heads=8, kv_heads=2, ffn=768, vocab=32000, n_ctx=2048)

def _io(g: GraphBuilder, cfg: DecoderConfig):
    """Declare the exporter-named inputs and return (input_ids, attention_mask, past keys, past values)."""
    g.add_input("input_ids", ["batch", "sequence"], TensorProto.INT64)
    g.add_input("attention_mask", ["batch", "total_sequence"], TensorProto.INT64)
    past = [g.add_input(f"past_key_values.{i}.{kind}", ["batch", cfg.kv_heads, "past_sequence", cfg.head_dim])
            for i in range(cfg.layers) for kind in ("key", "value")]
    return "input_ids", "attention_mask", past[0::2], past[1::2]


def _outputs(g: GraphBuilder, cfg: DecoderConfig, logits: str, presents: list[tuple[str, str]]) -> None:
    g.add_output(logits, ["batch", "sequence", cfg.vocab])
    for i, (k, v) in enumerate(presents):
        for kind, t in (("key", k), ("value", v)):
            g.add_output(g.node("Identity", [t], f"present.{i}.{kind}"),
                         ["batch", cfg.kv_heads, "total_sequence", cfg.head_dim])


def _positions_and_masks(g: GraphBuilder, input_ids: str, attention_mask: str, past_key: str):
    """Positions ``past .. past + sequence - 1`` (int64 ``[sequence]``) and the additive attention bias
    ``[batch, 1, sequence, total]``: causal (a query sees keys up to its own position) plus padding."""
    i64 = lambda name, v: g.const(name, v, np.int64)  # noqa: E731
    seq = g.node("Gather", [g.node("Shape", [input_ids], "shape.input_ids"), i64("index.1", 1)], "sequence_length")
    past = g.node("Gather", [g.node("Shape", [past_key], "shape.past"), i64("index.2", 2)], "past_length")
    total = g.node("Add", [past, seq], "total_length")
    positions = g.node("Range", [past, total, i64("one.i64", 1)], "positions")
    keys = g.node("Range", [i64("zero.i64", 0), total, i64("one.i64", 1)], "key_positions")
    q = g.node("Unsqueeze", [positions, i64("axes.1", [1])], "positions.column")  # [S, 1]
    visible = g.node("LessOrEqual", [keys, q], "causal.visible")  # [S, T]
    neg = g.const("mask.min", -1e4)
    causal = g.node("Where", [visible, g.const("mask.zero", 0.0), neg], "causal.bias")
    pad = g.node("Cast", [attention_mask], "attention_mask.float", to=TensorProto.FLOAT)
    pad = g.node("Mul", [g.node("Sub", [g.const("mask.one", 1.0), pad], "attention_mask.inverted"), neg],
                 "attention_mask.bias")
    pad = g.node("Unsqueeze", [pad, i64("axes.1.2", [1, 2])], "attention_mask.bias4")  # [B, 1, 1, T]
    return positions, g.node("Add", [causal, pad], "attention.bias")


def _heads(g: GraphBuilder, x: str, name: str, heads: int, head_dim: int) -> str:
    """[B, S, heads * head_dim] -> [B, heads, S, head_dim]."""
    shape = g.const(f"shape.heads{heads}", [0, 0, heads, head_dim], np.int64)
    return g.node("Transpose", [g.node("Reshape", [x, shape], f"{name}.reshape")], f"{name}.transpose", perm=[0, 2, 1, 3])


def _attend(g: GraphBuilder, p: str, q: str, k_all: str, v_all: str, bias: str, cfg: DecoderConfig) -> str:
    """softmax(q k^T / sqrt(d) + bias) v over all heads, merged back to [B, S, d_model]. With fewer
    key/value heads than query heads (grouped-query attention) the query heads are grouped
    ``[B, kv_heads, heads / kv_heads, S, D]`` and the cache broadcast over each group by the MatMuls."""
    scale = g.const(f"attention.scale{cfg.head_dim}", 1.0 / math.sqrt(cfg.head_dim))
    if cfg.kv_heads != cfg.heads:
        groups = cfg.heads // cfg.kv_heads
        q = g.node("Reshape", [q, g.const(f"shape.groups{groups}", [0, cfg.kv_heads, groups, -1, cfg.head_dim], np.int64)],
                   f"{p}.query.groups")
        axis2 = g.const("axes.2", [2], np.int64)
        k_all = g.node("Unsqueeze", [k_all, axis2], f"{p}.key.group")
        v_all = g.node("Unsqueeze", [v_all, axis2], f"{p}.value.group")
        bias = g.node("Unsqueeze", [bias, axis2], f"{p}.bias.group")
        perm = [0, 1, 2, 4, 3]
    else:
        perm = [0, 1, 3, 2]
    kt = g.node("Transpose", [k_all], f"{p}.key.t", perm=perm)
    s = g.node("Mul", [g.node("MatMul", [q, kt], f"{p}.scores"), scale], f"{p}.scaled")
    s = g.node("Softmax", [g.node("Add", [s, bias], f"{p}.biased")], f"{p}.softmax", axis=-1)
    c = g.node("MatMul", [s, v_all], f"{p}.context")
    if cfg.kv_heads != cfg.heads:
        c = g.node("Reshape", [c, g.const(f"shape.heads{cfg.heads}.back", [0, cfg.heads, -1, cfg.head_dim], np.int64)],
                   f"{p}.context.heads")
    c = g.node("Transpose", [c], f"{p}.context.transpose", perm=[0, 2, 1, 3])
    return g.node("Reshape", [c, g.const("shape.merge_heads", [0, 0, cfg.d_model], np.int64)], f"{p}.context.merge")


def _dense(g: GraphBuilder, x: str, name: str, fin: int, fout: int, bias: bool = True, std: float | None = None) -> str:
    w = g.init(f"{name}.weight", g.normal((fin, fout), std if std is not None else 1.0 / math.sqrt(fin)))
    y = g.node("MatMul", [x, w], f"{name}.matmul")
    return g.node("Add", [y, g.init(f"{name}.bias", g.normal((fout,), 0.02))], f"{name}.add") if bias else y


def build_gpt2(seed: int = 124, cfg: DecoderConfig = GPT2) -> onnx.ModelProto:
    """GPT-2 with the KV cache as inputs and outputs (see the module's docstring)."""
    g = GraphBuilder(seed)
    ids, mask, past_k, past_v = _io(g, cfg)
    wte = g.init("transformer.wte.weight", g.normal((cfg.vocab, cfg.d_model), 0.02))
    wpe = g.init("transformer.wpe.weight", g.normal((cfg.n_ctx, cfg.d_model), 0.01))
    positions, bias = _positions_and_masks(g, ids, mask, past_k[0])
    h = g.node("Add", [g.node("Gather", [wte, ids], "transformer.wte"), g.node("Gather", [wpe, positions], "transformer.wpe")],
               "transformer.embed")

    def layernorm(x, name):
        gamma = g.init(f"{name}.weight", g.uniform((cfg.d_model,), 0.9, 1.1))
        beta = g.init(f"{name}.bias", g.normal((cfg.d_model,), 0.02))
        return g.node("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-5)

    presents = []
    c0, c1, c2 = g.const("gelu.coeff", 0.044715), g.const("gelu.sqrt_2_over_pi", math.sqrt(2 / math.pi)), g.const("gelu.one", 1.0)
    half = g.const("gelu.half", 0.5)
    for i in range(cfg.layers):
        p = f"transformer.h.{i}"
        a = layernorm(h, f"{p}.ln_1")
        qkv = _dense(g, a, f"{p}.attn.c_attn", cfg.d_model, 3 * cfg.d_model)
        q, k, v = (f"{p}.attn.split", f"{p}.attn.split:1", f"{p}.attn.split:2")
        g.node("Split", [qkv, g.const("split.3", [cfg.d_model] * 3, np.int64)], q, n_outputs=3, axis=-1)
        q, k, v = (_heads(g, t, f"{p}.attn.{n}", cfg.heads, cfg.head_dim) for t, n in ((q, "query"), (k, "key"), (v, "value")))
        k_all = g.node("Concat", [past_k[i], k], f"{p}.attn.key.cache", axis=2)
        v_all = g.node("Concat", [past_v[i], v], f"{p}.attn.value.cache", axis=2)
        presents.append((k_all, v_all))
        c = _attend(g, f"{p}.attn", q, k_all, v_all, bias, cfg)
        # GPT-2 scales the residual projections by 1/sqrt(2 n_layer) at initialisation
        h = g.node("Add", [h, _dense(g, c, f"{p}.attn.c_proj", cfg.d_model, cfg.d_model, std=0.02 / math.sqrt(2 * cfg.layers))],
                   f"{p}.attn.residual")
        m = _dense(g, layernorm(h, f"{p}.ln_2"), f"{p}.mlp.c_fc", cfg.d_model, cfg.ffn)
        # GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [m, m], f"{p}.mlp.gelu.sq"), m], f"{p}.mlp.gelu.cube")
        inner = g.node("Mul", [g.node("Add", [m, g.node("Mul", [cube, c0], f"{p}.mlp.gelu.c")], f"{p}.mlp.gelu.sum"), c1],
                       f"{p}.mlp.gelu.inner")
        t = g.node("Add", [g.node("Tanh", [inner], f"{p}.mlp.gelu.tanh"), c2], f"{p}.mlp.gelu.plus1")
        m = g.node("Mul", [g.node("Mul", [m, t], f"{p}.mlp.gelu.mul"), half], f"{p}.mlp.gelu")
        h = g.node("Add", [h, _dense(g, m, f"{p}.mlp.c_proj", cfg.ffn, cfg.d_model, std=0.02 / math.sqrt(2 * cfg.layers))],
                   f"{p}.mlp.residual")
    h = layernorm(h, "transformer.ln_f")
    # the LM head is the input embedding, transposed (tied): a Gemm with transB on the 2-D view
    flat = g.node("Reshape", [h, g.const("shape.tokens", [-1, cfg.d_model], np.int64)], "lm_head.flatten")
    logits = g.node("Gemm", [flat, wte], "lm_head", transB=1)
    out_shape = g.node("Concat", [g.node("Slice", [g.node("Shape", [ids], "shape.ids.out"), g.const("zero.1", [0], np.int64),
                                                    g.const("two.1", [2], np.int64)], "shape.batch_sequence"),
                                  g.const("vocab.1", [cfg.vocab], np.int64)], "shape.logits", axis=0)
    logits = g.node("Reshape", [logits, out_shape], "logits")
    _outputs(g, cfg, logits, presents)
    return g.build("gpt2", f"GPT-2 small: {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads, "
                           f"vocabulary {cfg.vocab}, KV cache as inputs and outputs")


def build_llama(seed: int = 7, cfg: DecoderConfig = LLAMA_MINI) -> onnx.ModelProto:
    """A Llama-style decoder with the KV cache as inputs and outputs (see the module's docstring)."""
    g = GraphBuilder(seed)
    ids, mask, past_k, past_v = _io(g, cfg)
    embed = g.init("model.embed_tokens.weight", g.normal((cfg.vocab, cfg.d_model), 0.02))
    positions, bias = _positions_and_masks(g, ids, mask, past_k[0])
    # rotary tables: angle(pos, i) = pos / 10000^(2i / head_dim), repeated over the two halves
    inv = 1.0 / (10000 ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim))
    ang = np.outer(np.arange(cfg.n_ctx, dtype=np.float64), inv)
    ang = np.concatenate([ang, ang], axis=1)
    cos = g.node("Gather", [g.init("rotary.cos", np.cos(ang).astype(np.float32)), positions], "rotary.cos.positions")
    sin = g.node("Gather", [g.init("rotary.sin", np.sin(ang).astype(np.float32)), positions], "rotary.sin.positions")
    half = cfg.head_dim // 2

    def rms(x, name):
        w = g.init(f"{name}.weight", g.uniform((cfg.d_model,), 0.9, 1.1))
        ms = g.node("ReduceMean", [g.node("Mul", [x, x], f"{name}.sq")], f"{name}.mean", axes=[-1], keepdims=1)
        r = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [ms, g.const("rms.eps", 1e-6)], f"{name}.eps")], f"{name}.sqrt")],
                   f"{name}.rsqrt")
        return g.node("Mul", [g.node("Mul", [x, r], f"{name}.normed"), w], name)

    def rotate(t, name):  # t * cos + rotate_half(t) * sin, rotate_half(x) = concat(-x2, x1)
        x1, x2 = f"{name}.half", f"{name}.half:1"
        g.node("Split", [t, g.const(f"split.{half}", [half, half], np.int64)], x1, n_outputs=2, axis=-1)
        rot = g.node("Concat", [g.node("Neg", [x2], f"{name}.neg"), x1], f"{name}.rotate_half", axis=-1)
        return g.node("Add", [g.node("Mul", [t, cos], f"{name}.cos"), g.node("Mul", [rot, sin], f"{name}.sin")], f"{name}.rotary")

    presents = []
    h = g.node("Gather", [embed, ids], "model.embed_tokens")
    for i in range(cfg.layers):
        p = f"model.layers.{i}"
        x = h
        a = rms(x, f"{p}.input_layernorm")
        q = _heads(g, _dense(g, a, f"{p}.self_attn.q_proj", cfg.d_model, cfg.d_model, bias=False), f"{p}.self_attn.query",
                   cfg.heads, cfg.head_dim)
        kv_dim = cfg.kv_heads * cfg.head_dim
        k = _heads(g, _dense(g, a, f"{p}.self_attn.k_proj", cfg.d_model, kv_dim, bias=False), f"{p}.self_attn.key",
                   cfg.kv_heads, cfg.head_dim)
        v = _heads(g, _dense(g, a, f"{p}.self_attn.v_proj", cfg.d_model, kv_dim, bias=False), f"{p}.self_attn.value",
                   cfg.kv_heads, cfg.head_dim)
        q, k = rotate(q, f"{p}.self_attn.q"), rotate(k, f"{p}.self_attn.k")
        k_all = g.node("Concat", [past_k[i], k], f"{p}.self_attn.key.cache", axis=2)
        v_all = g.node("Concat", [past_v[i], v], f"{p}.self_attn.value.cache", axis=2)
        presents.append((k_all, v_all))
        c = _attend(g, f"{p}.self_attn", q, k_all, v_all, bias, cfg)
        x = g.node("Add", [x, _dense(g, c, f"{p}.self_attn.o_proj", cfg.d_model, cfg.d_model, bias=False)], f"{p}.attn.residual")
        m = rms(x, f"{p}.post_attention_layernorm")
        gate = _dense(g, m, f"{p}.mlp.gate_proj", cfg.d_model, cfg.ffn, bias=False)
        up = _dense(g, m, f"{p}.mlp.up_proj", cfg.d_model, cfg.ffn, bias=False)
        silu = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{p}.mlp.sigmoid")], f"{p}.mlp.silu")
        down = _dense(g, g.node("Mul", [silu, up], f"{p}.mlp.swiglu"), f"{p}.mlp.down_proj", cfg.ffn, cfg.d_model, bias=False)
        h = g.node("Add", [x, down], f"{p}.mlp.residual")
    h = rms(h, "model.norm")
    logits = _dense(g, h, "lm_head", cfg.d_model, cfg.vocab, bias=False)
    logits = g.node("Identity", [logits], "logits")
    _outputs(g, cfg, logits, presents)
    return g.build("llama-mini", f"Llama-style decoder: {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads "
                                 f"({cfg.kv_heads} key/value heads), SwiGLU {cfg.ffn}, vocabulary {cfg.vocab}, KV cache")
