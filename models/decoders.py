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
import re

import numpy as np
import onnx
from onnx import TensorProto

from ._graph import GraphBuilder


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A decoder's shape: what the builders, the KV cache and the published FLOP formulas need.

    The fields after ``n_ctx`` default to llama-mini's choices; a Hugging Face config sets them
    (:mod:`models.hf_configs`). ``head_dim`` 0 means ``d_model / heads``; ``rope_scaling`` is
    ``()`` or ``(("rope_type", ...), ("factor", ...), ...)`` (hashable); ``sliding_window`` 0 means
    none; ``qk_norm`` is Qwen3's RMSNorm over each head's queries and keys.

    A mixture of experts (``experts`` over 0) replaces each layer's feed-forward by ``experts`` SwiGLU
    experts of width ``ffn``, of which a router picks ``experts_per_token`` a token (:func:`_experts`):
    ``routing`` ``softmax-topk`` takes the top k of the softmax over all experts (Mixtral, Qwen3-MoE; their
    weights renormalised to sum to 1 where ``router_renormalize``), ``topk-softmax`` the softmax over the
    top k logits (gpt-oss). gpt-oss also has a router bias, expert biases (``mlp_bias``), a clamped SwiGLU
    (``swiglu_limit``), a learned sink logit per head in each attention softmax (``attention_sinks``) and
    windows that differ by layer (``layer_windows``, one per layer, 0 for full attention)."""

    layers: int
    d_model: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    n_ctx: int
    name: str = ""
    architecture: str = "LlamaForCausalLM"
    head_dim_override: int = 0
    rope_theta: float = 10000.0
    rope_scaling: tuple = ()
    rms_eps: float = 1e-6
    tie_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int = 0
    experts: int = 0
    experts_per_token: int = 0
    routing: str = "softmax-topk"
    router_renormalize: bool = True
    router_bias: bool = False
    swiglu_limit: float = 0.0
    attention_sinks: bool = False
    layer_windows: tuple = ()

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.d_model // self.heads

    def window(self, layer: int) -> int:
        """The sliding window of ``layer`` (0: it attends to every position)."""
        return self.layer_windows[layer] if self.layer_windows else self.sliding_window

    def kv_cache_bytes(self, batch: int, tokens: int, bytes_per_element: int = 4) -> int:
        """Bytes of the keys and values of ``tokens`` positions, all layers."""
        return 2 * self.layers * batch * self.kv_heads * tokens * self.head_dim * bytes_per_element

    def _expert_parameters(self) -> int:
        """One SwiGLU feed-forward (one expert of a mixture) with its biases."""
        return 3 * self.d_model * self.ffn + (2 * self.ffn + self.d_model if self.mlp_bias else 0)

    def _shared_layer_parameters(self) -> int:
        """A layer's parameters every token uses: attention with its biases and sinks, the norms (and
        Qwen3's per-head q/k norms), a mixture's router."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = self.d_model * q + 2 * self.d_model * kv + q * self.d_model
        if self.attention_bias:
            attention += q + 2 * kv + self.d_model
        attention += self.heads if self.attention_sinks else 0
        router = self.d_model * self.experts + (self.experts if self.router_bias else 0)
        return attention + router + 2 * self.d_model + (2 * self.head_dim if self.qk_norm else 0)

    def layer_parameters(self) -> int:
        """Parameters of one Llama-family layer: attention, its feed-forward (every expert of a mixture),
        the norms."""
        return self._shared_layer_parameters() + max(self.experts, 1) * self._expert_parameters()

    def parameters(self) -> int:
        """All parameters as Hugging Face counts them: embedding, layers, final norm and an LM head
        unless tied to the embedding."""
        embeddings = self.vocab * self.d_model * (1 if self.tie_embeddings else 2)
        return self.layers * self.layer_parameters() + embeddings + self.d_model

    def active_parameters(self) -> int:
        """The parameters a token's forward pass multiplies by (:data:`ACTIVE_RULE`): each layer's
        attention, norms and router and ``experts_per_token`` of its experts, the final norm and the LM
        head; not the embedding table, of which a token reads one row. A dense model's is its parameters
        less the embedding (unless tied to the LM head)."""
        per_layer = self._shared_layer_parameters() + (self.experts_per_token or 1) * self._expert_parameters()
        return self.layers * per_layer + self.vocab * self.d_model + self.d_model


#: What :meth:`DecoderConfig.active_parameters` counts, as the rows and listings state it. Publishers
#: differ: OpenAI's gpt-oss model card counts the same; Mistral (Mixtral) and Qwen (Qwen3-MoE) count the
#: embedding table too.
ACTIVE_RULE = "active: the parameters a token multiplies by (k of E experts, the LM head; not the embedding table)"


@dataclasses.dataclass(frozen=True)
class Shard:
    """One device's part of a decoder under tensor parallelism over ``devices`` devices, as Megatron-LM
    splits it (Shoeybi et al. 2019, "Megatron-LM", section 3; Narayanan et al. 2021, section 2.3): the
    query, key/value, gate and up projections column-parallel (each device its heads and its slice of the
    feed-forward), the output and down projections row-parallel (each device a partial sum, all-reduced),
    the embedding and the LM head vocabulary-parallel (the embedding's lookups all-reduced, the logits
    all-gathered). Key/value heads are split too, or replicated where the devices outnumber them."""

    index: int
    devices: int


def shard_error(cfg: DecoderConfig, devices: int) -> str:
    """Why ``cfg`` cannot be split over ``devices`` devices, or ''."""
    if devices < 1:
        return f"devices must be at least 1, not {devices}"
    for what, n in (("query heads", cfg.heads), ("feed-forward width", cfg.ffn)):
        if n % devices:
            return f"{cfg.name or 'the decoder'}'s {what} ({n}) do not split over {devices} devices"
    kv = cfg.kv_heads
    if (kv >= devices and kv % devices) or (kv < devices and devices % kv):
        return f"{cfg.name or 'the decoder'}'s {kv} key/value heads neither split over nor replicate on {devices} devices"
    return ""


def sharded_config(cfg: DecoderConfig, devices: int) -> DecoderConfig:
    """The shape of one device's shard: a ``devices``-th of the query heads, the key/value heads (at least
    one, replicated), the feed-forward width and the vocabulary (rounded up; the last device's rows beyond
    it are zero)."""
    return dataclasses.replace(cfg, heads=cfg.heads // devices, kv_heads=max(cfg.kv_heads // devices, 1),
                               ffn=cfg.ffn // devices, vocab=-(-cfg.vocab // devices), head_dim_override=cfg.head_dim)


def shard_weight(name: str, full: np.ndarray, cfg: DecoderConfig, shard: Shard) -> np.ndarray:
    """The slice of the whole model's weight ``name`` that ``shard`` holds (see :class:`Shard`): columns of
    a column-parallel projection (and its bias), rows of a row-parallel one (whose bias only the first
    device adds), rows of the embedding and columns of the LM head (zero-padded to the shard's
    vocabulary); norms and a mixture's router whole, each expert split as a dense feed-forward is
    (vLLM's tensor-parallel experts), attention sinks by head."""
    local = sharded_config(cfg, shard.devices)
    i, hd = shard.index, cfg.head_dim
    kv_first = i * cfg.kv_heads // shard.devices if cfg.kv_heads < shard.devices else i * local.kv_heads
    column = {
        "q_proj": (i * local.heads * hd, (i + 1) * local.heads * hd),
        "k_proj": (kv_first * hd, (kv_first + local.kv_heads) * hd),
        "v_proj": (kv_first * hd, (kv_first + local.kv_heads) * hd),
        "gate_proj": (i * local.ffn, (i + 1) * local.ffn),
        "up_proj": (i * local.ffn, (i + 1) * local.ffn),
    }
    row = {"o_proj": (i * local.heads * hd, (i + 1) * local.heads * hd), "down_proj": (i * local.ffn, (i + 1) * local.ffn)}
    part = name.split(".")[-2] if name.count(".") >= 1 else ""
    kind = name.split(".")[-1]
    if part in column:
        lo, hi = column[part]
        return full[..., lo:hi]
    if part in row:
        lo, hi = row[part]  # an expert's down projection is [experts, ffn, d_model]: rows along ffn
        return full[..., lo:hi, :] if kind == "weight" else (full if i == 0 else np.zeros_like(full))
    if kind == "sinks":
        return full[i * local.heads:(i + 1) * local.heads]
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = full if name == "model.embed_tokens.weight" else full.T
        padded = np.zeros((local.vocab * shard.devices, rows.shape[1]), rows.dtype)
        padded[: rows.shape[0]] = rows
        mine = padded[i * local.vocab: (i + 1) * local.vocab]
        return mine if name == "model.embed_tokens.weight" else np.ascontiguousarray(mine.T)
    return full


#: The names of a shard's collectives: all-reduces of partial sums, and the logits' all-gather.
ALLREDUCE_PREFIX = "tp.allreduce."
ALLGATHER_LOGITS = "tp.allgather.logits"


GPT2 = DecoderConfig(layers=12, d_model=768, heads=12, kv_heads=12, ffn=3072, vocab=50257, n_ctx=1024)
LLAMA_MINI = DecoderConfig(layers=4, d_model=256, heads=8, kv_heads=2, ffn=768, vocab=32000, n_ctx=2048)
#: A small mixture of experts as Mixtral routes one: 8 experts of width 384, 2 a token.
MOE_MINI = DecoderConfig(layers=4, d_model=256, heads=8, kv_heads=2, ffn=384, vocab=32000, n_ctx=2048, name="moe-mini",
                         architecture="MixtralForCausalLM", experts=8, experts_per_token=2)
#: A small gpt-oss: sliding-window (64) and full attention alternating, attention sinks, biases, 8 experts
#: of width 256 (4 a token) behind a biased router, the clamped SwiGLU and YaRN rope scaling.
GPT_OSS_MINI = DecoderConfig(
    layers=4, d_model=256, heads=8, kv_heads=2, ffn=256, vocab=32000, n_ctx=2048, name="gpt-oss-mini",
    architecture="GptOssForCausalLM", head_dim_override=64, rope_theta=150000.0, attention_bias=True, experts=8,
    experts_per_token=4, routing="topk-softmax", router_bias=True, mlp_bias=True, swiglu_limit=7.0,
    attention_sinks=True, layer_windows=(64, 0, 64, 0),
    rope_scaling=(("rope_type", "yarn"), ("beta_fast", 32.0), ("beta_slow", 1.0), ("factor", 32.0),
                  ("original_max_position_embeddings", 4096.0), ("truncate", False)))

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


def _positions_and_masks(g: GraphBuilder, input_ids: str, attention_mask: str, past_key: str,
                         windows: tuple[int, ...] = (0,)) -> tuple[str, dict[int, str]]:
    """Positions ``past .. past + sequence - 1`` (int64 ``[sequence]``) and, for each of ``windows``, the
    additive attention bias ``[batch, 1, sequence, total]``: causal (a query sees keys up to its own
    position, and with a sliding window only the last ``window`` of them, as Mistral's) plus padding."""
    i64 = lambda name, v: g.const(name, v, np.int64)  # noqa: E731
    seq = g.node("Gather", [g.node("Shape", [input_ids], "shape.input_ids"), i64("index.1", 1)], "sequence_length")
    past = g.node("Gather", [g.node("Shape", [past_key], "shape.past"), i64("index.2", 2)], "past_length")
    total = g.node("Add", [past, seq], "total_length")
    positions = g.node("Range", [past, total, i64("one.i64", 1)], "positions")
    keys = g.node("Range", [i64("zero.i64", 0), total, i64("one.i64", 1)], "key_positions")
    q = g.node("Unsqueeze", [positions, i64("axes.1", [1])], "positions.column")  # [S, 1]
    causal_visible = g.node("LessOrEqual", [keys, q], "causal.visible")  # [S, T]
    neg = g.const("mask.min", -1e4)
    pad = g.node("Cast", [attention_mask], "attention_mask.float", to=TensorProto.FLOAT)
    pad = g.node("Mul", [g.node("Sub", [g.const("mask.one", 1.0), pad], "attention_mask.inverted"), neg],
                 "attention_mask.bias")
    pad = g.node("Unsqueeze", [pad, i64("axes.1.2", [1, 2])], "attention_mask.bias4")  # [B, 1, 1, T]
    biases = {}
    for window in sorted(set(windows)):
        at = f".window{window}" if window else ""
        visible = causal_visible
        if window:
            recent = g.node("Greater", [keys, g.node("Sub", [q, i64(f"window{window}", window)], f"window{window}.start")],
                            f"window{window}.visible")
            visible = g.node("And", [visible, recent], f"causal{at}.visible")
        causal = g.node("Where", [visible, g.const("mask.zero", 0.0), neg], f"causal{at}.bias")
        biases[window] = g.node("Add", [causal, pad], f"attention{at}.bias")
    return positions, biases


def _heads(g: GraphBuilder, x: str, name: str, heads: int, head_dim: int) -> str:
    """[B, S, heads * head_dim] -> [B, heads, S, head_dim]."""
    shape = g.const(f"shape.heads{heads}", [0, 0, heads, head_dim], np.int64)
    return g.node("Transpose", [g.node("Reshape", [x, shape], f"{name}.reshape")], f"{name}.transpose", perm=[0, 2, 1, 3])


def _attend(g: GraphBuilder, p: str, q: str, k_all: str, v_all: str, bias: str, cfg: DecoderConfig,
            sinks: str | None = None) -> str:
    """softmax(q k^T / sqrt(d) + bias) v over all heads, merged back to [B, S, d_model]. With fewer
    key/value heads than query heads (grouped-query attention) the query heads are grouped
    ``[B, kv_heads, heads / kv_heads, S, D]`` and the cache broadcast over each group by the MatMuls.
    ``sinks`` (``[heads]``, gpt-oss) adds each head's learned logit to the softmax's denominator only:
    ``exp(s_i - m) / (sum_j exp(s_j - m) + exp(sink - m))``, ``m`` the larger of the row's maximum and
    the sink."""
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
    s = g.node("Add", [s, bias], f"{p}.biased")
    if sinks is None:
        s = g.node("Softmax", [s], f"{p}.softmax", axis=-1)
    else:
        groups = [cfg.kv_heads, cfg.heads // cfg.kv_heads] if cfg.kv_heads != cfg.heads else [cfg.heads]
        sink = g.node("Reshape", [sinks, g.const(f"shape.sinks{'x'.join(map(str, groups))}", [1, *groups, 1, 1], np.int64)],
                      f"{p}.sinks.heads")
        top = g.node("Max", [g.node("ReduceMax", [s], f"{p}.row_max", axes=[-1], keepdims=1), sink], f"{p}.max")
        e = g.node("Exp", [g.node("Sub", [s, top], f"{p}.shifted")], f"{p}.exp")
        denom = g.node("Add", [g.node("ReduceSum", [e, g.const("axes.last", [-1], np.int64)], f"{p}.exp_sum", keepdims=1),
                               g.node("Exp", [g.node("Sub", [sink, top], f"{p}.sink.shifted")], f"{p}.sink.exp")], f"{p}.denominator")
        s = g.node("Div", [e, denom], f"{p}.softmax")
    c = g.node("MatMul", [s, v_all], f"{p}.context")
    if cfg.kv_heads != cfg.heads:
        c = g.node("Reshape", [c, g.const(f"shape.heads{cfg.heads}.back", [0, cfg.heads, -1, cfg.head_dim], np.int64)],
                   f"{p}.context.heads")
    c = g.node("Transpose", [c], f"{p}.context.transpose", perm=[0, 2, 1, 3])
    width = cfg.heads * cfg.head_dim  # d_model, but for a head_dim of its own (Qwen3-32B: 64 x 128 on 5120)
    return g.node("Reshape", [c, g.const(f"shape.merge_heads{width}", [0, 0, width], np.int64)], f"{p}.context.merge")


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
    positions, biases = _positions_and_masks(g, ids, mask, past_k[0])
    bias = biases[0]
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


def rope_inverse_frequencies(cfg: DecoderConfig) -> np.ndarray:
    """Rotary inverse frequencies ``theta^(-2i / head_dim)``, rescaled as the config's ``rope_scaling``
    says (Hugging Face's ``_compute_llama3_parameters`` for ``llama3``, ``_compute_yarn_parameters`` for
    ``yarn``; ``linear`` divides by the factor)."""
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim))
    scaling = dict(cfg.rope_scaling)
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        return inv / scaling["factor"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    if kind == "yarn":  # Peng et al. 2023, "YaRN": interpolate the slow dimensions, keep the fast ones
        dim, base, factor = cfg.head_dim, cfg.rope_theta, scaling["factor"]
        old = scaling["original_max_position_embeddings"]

        def correction(rotations):
            return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = correction(scaling["beta_fast"]), correction(scaling["beta_slow"])
        if scaling.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        ramp = np.clip((np.arange(dim // 2) - low) / ((high - low) or 0.001), 0, 1)
        return inv / factor * ramp + inv * (1 - ramp)
    return inv


def rope_attention_factor(cfg: DecoderConfig) -> float:
    """The factor YaRN scales the rotary cos and sin by (``0.1 ln(factor) + 1``); 1 for other scalings."""
    scaling = dict(cfg.rope_scaling)
    if scaling.get("rope_type") != "yarn" or scaling["factor"] <= 1:
        return 1.0
    return 0.1 * math.log(scaling["factor"]) + 1.0


def build_llama(seed: int = 7, cfg: DecoderConfig = LLAMA_MINI, layer_ids: tuple[int, ...] | None = None,
                weights_as_inputs: bool = False, last_token_logits: bool = False, shard: Shard | None = None,
                weights_from: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A Llama-family decoder (Llama, Mistral, Qwen3) with the KV cache as inputs and outputs (see the
    module's docstring), named as Hugging Face's exporters name it.

    ``layer_ids`` builds only those layers (each named by its index in the whole model, its cache
    inputs too): the distinct layers a model is analysed by (:func:`representative_layers`).
    ``weights_as_inputs`` declares every weight as a graph input of its shape instead of an
    initializer of random values, so a model of any size is a small file; the model's metadata says
    so (``explorer.weights``). ``last_token_logits`` computes the LM head for each sequence's last
    position only, as a server's sampler does (logits ``[batch, 1, vocab]``).

    ``shard`` builds one device's part under tensor parallelism (:class:`Shard`): its heads, feed-forward
    slice and vocabulary, with an ``Identity`` named ``tp.allreduce.*`` where its partial sums are
    all-reduced (after the embedding, each attention and each feed-forward) and ``tp.allgather.logits``
    where its logits are gathered; its logits are its vocabulary's. ``weights_from`` gives the whole
    model's weights by name (a shard takes its slices of them) in place of random ones."""
    sharded = shard is not None and shard.devices > 1
    full, cfg = cfg, sharded_config(cfg, shard.devices) if sharded else cfg
    g = GraphBuilder(seed)
    layer_ids = tuple(range(cfg.layers)) if layer_ids is None else tuple(layer_ids)
    ids, mask = "input_ids", "attention_mask"
    g.add_input(ids, ["batch", "sequence"], TensorProto.INT64)
    g.add_input(mask, ["batch", "total_sequence"], TensorProto.INT64)
    past = {i: [g.add_input(f"past_key_values.{i}.{kind}", ["batch", cfg.kv_heads, "past_sequence", cfg.head_dim])
                for kind in ("key", "value")] for i in layer_ids}

    def weight(name: str, shape: tuple[int, ...], draw) -> str:
        if weights_as_inputs:
            return g.add_input(name, list(shape))
        if weights_from is not None:
            value = weights_from[name]
            value = shard_weight(name, value, full, shard) if sharded else value
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"weight {name} is {value.shape}, the graph wants {shape}")
            return g.init(name, value)
        return g.init(name, draw())

    def all_reduce(x: str, name: str) -> str:
        return g.node("Identity", [x], f"{ALLREDUCE_PREFIX}{name}") if sharded else x

    def dense(x, name, fin, fout, bias):
        w = weight(f"{name}.weight", (fin, fout), lambda: g.normal((fin, fout), 1.0 / math.sqrt(fin)))
        y = g.node("MatMul", [x, w], f"{name}.matmul")
        if not bias:
            return y
        return g.node("Add", [y, weight(f"{name}.bias", (fout,), lambda: g.normal((fout,), 0.02))], f"{name}.add")

    def experts(m: str, p: str) -> str:
        """A mixture of experts on ``m`` ``[B, S, d_model]`` (see :class:`DecoderConfig`): the router's top
        k experts a token, their weights gathered by the router's indices and only those computed, their
        outputs summed by the routing weights."""
        e, k, d, f = cfg.experts, cfg.experts_per_token, cfg.d_model, cfg.ffn
        i64 = lambda name, v: g.const(name, v, np.int64)  # noqa: E731
        tokens = g.node("Reshape", [m, i64(f"shape.tokens{d}", [-1, d])], f"{p}.tokens")  # [T, d]
        logits = dense(tokens, f"{p}.router", d, e, cfg.router_bias)  # [T, E]
        kk = i64(f"topk.{k}", [k])
        if cfg.routing == "topk-softmax":  # gpt-oss: the softmax over the k largest logits
            top, index = f"{p}.router.top", f"{p}.router.top:1"
            g.node("TopK", [logits, kk], top, n_outputs=2, axis=-1)
            routed = g.node("Softmax", [top], f"{p}.router.weights", axis=-1)
        else:  # Mixtral, Qwen3-MoE: the k largest of the softmax over every expert
            top, index = f"{p}.router.top", f"{p}.router.top:1"
            g.node("TopK", [g.node("Softmax", [logits], f"{p}.router.softmax", axis=-1), kk], top, n_outputs=2, axis=-1)
            routed = (g.node("Div", [top, g.node("ReduceSum", [top, g.const("axes.last", [-1], np.int64)], f"{p}.router.sum",
                                                 keepdims=1)], f"{p}.router.weights") if cfg.router_renormalize else top)
        row = g.node("Reshape", [tokens, i64(f"shape.row{d}", [-1, 1, 1, d])], f"{p}.tokens.row")  # [T, 1, 1, d]

        def routed_dense(x: str, name: str, fin: int, fout: int) -> str:
            w = weight(f"{name}.weight", (e, fin, fout), lambda: g.normal((e, fin, fout), 1.0 / math.sqrt(fin)))
            y = g.node("MatMul", [x, g.node("Gather", [w, index], f"{name}.routed", axis=0)], f"{name}.matmul")  # [T, k, 1, fout]
            if not cfg.mlp_bias:
                return y
            b = weight(f"{name}.bias", (e, fout), lambda: g.normal((e, fout), 0.02))
            b = g.node("Unsqueeze", [g.node("Gather", [b, index], f"{name}.bias.routed", axis=0), i64("axes.2", [2])],
                       f"{name}.bias.row")
            return g.node("Add", [y, b], f"{name}.add")

        gate, up = routed_dense(row, f"{p}.experts.gate_proj", d, f), routed_dense(row, f"{p}.experts.up_proj", d, f)
        if cfg.swiglu_limit:  # gpt-oss: clamped, gate * sigmoid(1.702 gate) * (up + 1)
            limit = cfg.swiglu_limit
            gate = g.node("Min", [gate, g.const(f"swiglu.limit{limit}", limit)], f"{p}.experts.gate.clamped")
            up = g.node("Clip", [up, g.const(f"swiglu.low{limit}", -limit), g.const(f"swiglu.limit{limit}", limit)],
                        f"{p}.experts.up.clamped")
            act = g.node("Mul", [gate, g.node("Sigmoid", [g.node("Mul", [gate, g.const("swiglu.alpha", 1.702)], f"{p}.experts.gate.scaled")],
                                              f"{p}.experts.sigmoid")], f"{p}.experts.glu")
            hidden = g.node("Mul", [g.node("Add", [up, g.const("one.f32", 1.0)], f"{p}.experts.up.plus1"), act], f"{p}.experts.swiglu")
        else:
            act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{p}.experts.sigmoid")], f"{p}.experts.silu")
            hidden = g.node("Mul", [act, up], f"{p}.experts.swiglu")
        out = routed_dense(hidden, f"{p}.experts.down_proj", f, d)  # [T, k, 1, d]
        scale = g.node("Unsqueeze", [routed, i64("axes.2.3", [2, 3])], f"{p}.router.weights4")  # [T, k, 1, 1]
        summed = g.node("ReduceSum", [g.node("Mul", [out, scale], f"{p}.experts.weighted"), i64("axes.1", [1])],
                        f"{p}.experts.sum", keepdims=0)  # [T, 1, d]
        return g.node("Reshape", [summed, g.node("Shape", [m], f"{p}.shape")], f"{p}.experts.out")

    embed = weight("model.embed_tokens.weight", (cfg.vocab, cfg.d_model), lambda: g.normal((cfg.vocab, cfg.d_model), 0.02))
    positions, biases = _positions_and_masks(g, ids, mask, past[layer_ids[0]][0], tuple(cfg.window(i) for i in layer_ids))
    # rotary angles from the positions: angle(pos, i) = pos * inv_freq[i], repeated over the two halves
    inv = g.const("rotary.inv_freq", rope_inverse_frequencies(cfg).reshape(1, -1))
    pos = g.node("Cast", [g.node("Unsqueeze", [positions, g.const("axes.1", [1], np.int64)], "rotary.positions")],
                 "rotary.positions.float", to=TensorProto.FLOAT)
    ang = g.node("Mul", [pos, inv], "rotary.angles.half")
    ang = g.node("Concat", [ang, ang], "rotary.angles", axis=-1)
    cos, sin = g.node("Cos", [ang], "rotary.cos"), g.node("Sin", [ang], "rotary.sin")
    if rope_attention_factor(cfg) != 1.0:
        factor = g.const("rotary.attention_factor", rope_attention_factor(cfg))
        cos, sin = g.node("Mul", [cos, factor], "rotary.cos.scaled"), g.node("Mul", [sin, factor], "rotary.sin.scaled")
    half = cfg.head_dim // 2

    def rms(x, name, width):
        w = weight(f"{name}.weight", (width,), lambda: g.uniform((width,), 0.9, 1.1))
        ms = g.node("ReduceMean", [g.node("Mul", [x, x], f"{name}.sq")], f"{name}.mean", axes=[-1], keepdims=1)
        r = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [ms, g.const("rms.eps", cfg.rms_eps)], f"{name}.eps")],
                                         f"{name}.sqrt")], f"{name}.rsqrt")
        return g.node("Mul", [g.node("Mul", [x, r], f"{name}.normed"), w], name)

    def rotate(t, name):  # t * cos + rotate_half(t) * sin, rotate_half(x) = concat(-x2, x1)
        x1, x2 = f"{name}.half", f"{name}.half:1"
        g.node("Split", [t, g.const(f"split.{half}", [half, half], np.int64)], x1, n_outputs=2, axis=-1)
        rot = g.node("Concat", [g.node("Neg", [x2], f"{name}.neg"), x1], f"{name}.rotate_half", axis=-1)
        return g.node("Add", [g.node("Mul", [t, cos], f"{name}.cos"), g.node("Mul", [rot, sin], f"{name}.sin")], f"{name}.rotary")

    presents = []
    if sharded:  # this device's rows of the vocabulary; other tokens look up zeros, summed away
        i64 = lambda name, v: g.const(name, v, np.int64)  # noqa: E731
        start = shard.index * cfg.vocab
        local = g.node("Sub", [ids, i64(f"vocab.start{start}", start)], "model.embed_tokens.local_ids")
        inside = g.node("And", [g.node("GreaterOrEqual", [local, i64("zero.i64.embed", 0)], "model.embed_tokens.above"),
                                g.node("Less", [local, i64(f"vocab.rows{cfg.vocab}", cfg.vocab)], "model.embed_tokens.below")],
                        "model.embed_tokens.inside")
        safe = g.node("Where", [inside, local, i64("zero.i64.where", 0)], "model.embed_tokens.safe_ids")
        mask = g.node("Cast", [g.node("Unsqueeze", [inside, i64("axes.last", [-1])], "model.embed_tokens.inside3")],
                      "model.embed_tokens.mask", to=TensorProto.FLOAT)
        h = all_reduce(g.node("Mul", [g.node("Gather", [embed, safe], "model.embed_tokens.rows"), mask],
                              "model.embed_tokens"), "embed")
    else:
        h = g.node("Gather", [embed, ids], "model.embed_tokens")
    q_dim, kv_dim = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    for i in layer_ids:
        p = f"model.layers.{i}"
        x = h
        a = rms(x, f"{p}.input_layernorm", cfg.d_model)
        q = _heads(g, dense(a, f"{p}.self_attn.q_proj", cfg.d_model, q_dim, cfg.attention_bias), f"{p}.self_attn.query",
                   cfg.heads, cfg.head_dim)
        k = _heads(g, dense(a, f"{p}.self_attn.k_proj", cfg.d_model, kv_dim, cfg.attention_bias), f"{p}.self_attn.key",
                   cfg.kv_heads, cfg.head_dim)
        v = _heads(g, dense(a, f"{p}.self_attn.v_proj", cfg.d_model, kv_dim, cfg.attention_bias), f"{p}.self_attn.value",
                   cfg.kv_heads, cfg.head_dim)
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's head_dim, before the rotary embedding
            q, k = rms(q, f"{p}.self_attn.q_norm", cfg.head_dim), rms(k, f"{p}.self_attn.k_norm", cfg.head_dim)
        q, k = rotate(q, f"{p}.self_attn.q"), rotate(k, f"{p}.self_attn.k")
        k_all = g.node("Concat", [past[i][0], k], f"{p}.self_attn.key.cache", axis=2)
        v_all = g.node("Concat", [past[i][1], v], f"{p}.self_attn.value.cache", axis=2)
        presents.append((i, k_all, v_all))
        sinks = weight(f"{p}.self_attn.sinks", (cfg.heads,), lambda: g.normal((cfg.heads,), 1.0)) if cfg.attention_sinks else None
        c = _attend(g, f"{p}.self_attn", q, k_all, v_all, biases[cfg.window(i)], cfg, sinks)
        attended = all_reduce(dense(c, f"{p}.self_attn.o_proj", q_dim, cfg.d_model, cfg.attention_bias), f"{i}.attn")
        x = g.node("Add", [x, attended], f"{p}.attn.residual")
        m = rms(x, f"{p}.post_attention_layernorm", cfg.d_model)
        if cfg.experts:
            down = experts(m, f"{p}.mlp")
        else:
            gate = dense(m, f"{p}.mlp.gate_proj", cfg.d_model, cfg.ffn, cfg.mlp_bias)
            up = dense(m, f"{p}.mlp.up_proj", cfg.d_model, cfg.ffn, cfg.mlp_bias)
            silu = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{p}.mlp.sigmoid")], f"{p}.mlp.silu")
            down = dense(g.node("Mul", [silu, up], f"{p}.mlp.swiglu"), f"{p}.mlp.down_proj", cfg.ffn, cfg.d_model, cfg.mlp_bias)
        h = g.node("Add", [x, all_reduce(down, f"{i}.mlp")], f"{p}.mlp.residual")
    if last_token_logits:  # the sampler needs each sequence's last position only
        h = g.node("Slice", [h, g.const("last.start", [-1], np.int64), g.const("last.end", [2**62], np.int64),
                             g.const("last.axis", [1], np.int64)], "model.last_position")
    h = rms(h, "model.norm", cfg.d_model)
    if cfg.tie_embeddings:
        logits = g.node("MatMul", [h, g.node("Transpose", [embed], "lm_head.tied", perm=[1, 0])], "lm_head.matmul")
    else:
        logits = dense(h, "lm_head", cfg.d_model, cfg.vocab, False)
    if sharded:
        logits = g.node("Identity", [logits], ALLGATHER_LOGITS)
    logits = g.node("Identity", [logits], "logits")
    g.add_output(logits, ["batch", 1 if last_token_logits else "sequence", cfg.vocab])
    for i, k_all, v_all in presents:
        for kind, t in (("key", k_all), ("value", v_all)):
            g.add_output(g.node("Identity", [t], f"present.{i}.{kind}"), ["batch", cfg.kv_heads, "total_sequence", cfg.head_dim])
    name = cfg.name or "llama-mini"
    part = f", device {shard.index} of {shard.devices} (tensor parallel)" if sharded else ""
    model = g.build(name, f"{cfg.architecture}: {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads "
                          f"({cfg.kv_heads} key/value heads of {cfg.head_dim}), SwiGLU {cfg.ffn}, vocabulary {cfg.vocab}, "
                          f"KV cache{part}")
    props = {WEIGHTS_KEY: "inputs", **layer_repeats_prop(cfg, layer_ids)} if weights_as_inputs else {}
    if sharded:
        props[DEVICES_KEY] = str(shard.devices)
    if props:
        onnx.helper.set_model_props(model, props)
    return model


#: Model metadata of a decoder built with its weights as graph inputs (``explorer.weights = inputs``),
#: and of one built from its distinct layers (``explorer.layer_repeats``: see :func:`layer_repeats_prop`).
WEIGHTS_KEY = "explorer.weights"
REPEATS_KEY = "explorer.layer_repeats"
#: Model metadata of one device's shard under tensor parallelism: the devices the model is split over.
DEVICES_KEY = "explorer.tensor_parallel_devices"


def layer_period(cfg: DecoderConfig) -> int:
    """The layers after which a decoder's layers repeat: 1, or gpt-oss's 2 (sliding-window and full
    attention alternating): the smallest period of its windows."""
    windows = [cfg.window(i) for i in range(cfg.layers)]
    return next(p for p in range(1, cfg.layers + 1) if all(w == windows[i % p] for i, w in enumerate(windows)))


def representative_layers(layers: int, period: int = 1) -> tuple[int, ...]:
    """The layers a decoder of ``layers`` layers repeating every ``period`` is analysed by: the first
    ``period`` (its norm meets the embedding), the second ``period`` (the memory planner settles), the third
    (the unit that stands for every middle one) and the last ``period`` (its residual meets the final norm
    and the LM head); all of them where that is not fewer. For identical layers: 0, 1, 2 and the last, and
    every layer of a model of five or fewer."""
    built = list(range(3 * period)) + list(range(layers - period, layers))
    if len(built) >= layers - 1 or (layers - 4 * period) % period:
        return tuple(range(layers))
    return tuple(built)


def layer_repeats_prop(cfg: DecoderConfig, layer_ids: tuple[int, ...]) -> dict[str, str]:
    """``{REPEATS_KEY: "2:N"}`` where layer 2 of ``layer_ids`` stands for N layers of the whole model, or
    ``"4-5:N"`` where layers 4 and 5, a unit of the layers' period, stand for N units; empty when every
    layer is built."""
    missing = cfg.layers - len(layer_ids)
    if missing <= 0:
        return {}
    period = layer_period(cfg)
    unit = layer_ids[2 * period: 3 * period]
    label = str(unit[0]) if period == 1 else f"{unit[0]}-{unit[-1]}"
    return {REPEATS_KEY: f"{label}:{missing // period + 1}"}


#: A decoder's past key/value inputs, as exporters name them.
PAST_INPUT = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")


def weight_inputs(model: onnx.ModelProto) -> set[str]:
    """The inputs that are weights: every input but the decoder's data (ids, mask, positions, cache) of a
    model built with its weights as inputs (metadata ``explorer.weights = inputs``); none for any other."""
    if {p.key: p.value for p in model.metadata_props}.get(WEIGHTS_KEY) != "inputs":
        return set()
    data = {"input_ids", "attention_mask", "position_ids"}
    return {i.name for i in model.graph.input if i.name not in data and not PAST_INPUT.match(i.name)}


def tensor_parallel_devices(model: onnx.ModelProto) -> int:
    """The devices a shard built by :func:`build_llama` is one of (metadata ``explorer.tensor_parallel_devices``);
    1 for any other model."""
    return int({p.key: p.value for p in model.metadata_props}.get(DEVICES_KEY, 1))


def layer_repeats(model: onnx.ModelProto) -> tuple[tuple[int, ...], int] | None:
    """``(layers, count)`` where the model was built from its distinct layers and the unit of ``layers``
    (one layer, or a period of them) stands for ``count`` units of the whole model (metadata
    ``explorer.layer_repeats``); None otherwise."""
    value = {p.key: p.value for p in model.metadata_props}.get(REPEATS_KEY)
    if not value:
        return None
    unit, count = value.split(":")
    first, _, last = unit.partition("-")
    return tuple(range(int(first), int(last or first) + 1)), int(count)
