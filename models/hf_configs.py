"""Decoders from Hugging Face ``config.json`` files: the shipped ones (``models/configs/``) and any file.

Six architectures are built (:func:`models.decoders.build_llama`): ``LlamaForCausalLM`` (Llama 2 and
3.x, with ``llama3`` or ``linear`` rope scaling), ``MistralForCausalLM`` (sliding-window attention),
``Qwen3ForCausalLM`` (per-head q/k RMSNorm, ``head_dim`` apart from ``hidden_size / heads``), and the
mixtures of experts ``MixtralForCausalLM``, ``Qwen3MoeForCausalLM`` and ``GptOssForCausalLM`` (biases,
attention sinks, alternating sliding-window and full attention, a clamped SwiGLU, YaRN rope scaling). A
field the builder cannot honour is refused with :class:`ConfigError`, one line naming it, never ignored.

A config's decoder is built from its distinct layers (:func:`models.decoders.representative_layers`)
with its weights as graph inputs: no weight is ever held, so a 405B model is a file of a few
hundred kilobytes, and the analysis counts the middle layer once for each layer it stands for.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .decoders import DecoderConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM", "MixtralForCausalLM",
                 "Qwen3MoeForCausalLM", "GptOssForCausalLM")
_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
#: gpt-oss's layer types and the window each attends over (``sliding_attention`` uses ``sliding_window``).
_LAYER_TYPES = ("sliding_attention", "full_attention")


class ConfigError(ValueError):
    """A config that is not one the builder can honour (the message is one line)."""


@dataclasses.dataclass(frozen=True)
class ShippedConfig:
    """A config shipped with the explorer, with where its fields and its published size were read."""

    name: str
    path: Path
    config: DecoderConfig
    source: str
    published_parameters: int
    parameters_source: str
    parameters_rounding: int = 1  # the published count is rounded to this (a model card's "20.91B": 1e7)
    published_active: int = 0  # the publisher's active parameters (0: none published)
    active_rounding: int = 1
    active_source: str = ""
    active_includes_embedding: bool = False  # the publisher counts the embedding table as active


#: The largest size of one dimension the builder takes (ONNX shapes and TVM's loops index with 32 bits).
MAX_DIMENSION = 2**31 - 1

#: The most parameters a config may declare: beyond ten times the largest published model (~2 T), a
#: config is a typo or hostile, and its shapes would overflow the builders' int64 byte counts.
MAX_PARAMETERS = 2 * 10**13


def _field(raw: dict, key: str, kind, where: str, default=None, required: bool = True):
    value = raw.get(key)
    if value is None:
        if required and default is None:
            raise ConfigError(f"{where}: the config has no {key!r}")
        return default
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{where}: {key!r} must be a positive integer, not {value!r}")
    if kind is int and value > MAX_DIMENSION:
        raise ConfigError(f"{where}: {key!r} is {value}, beyond the {MAX_DIMENSION} the builder takes")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf")):
        raise ConfigError(f"{where}: {key!r} must be a positive number, not {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false, not {value!r}")
    return kind(value)


def _rope_scaling(raw: dict, where: str) -> tuple:
    scaling = raw.get("rope_scaling")
    if scaling is None:
        return ()
    if not isinstance(scaling, dict):
        raise ConfigError(f"{where}: 'rope_scaling' must be an object or null, not {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise ConfigError(f"{where}: rope_scaling type {kind!r} is not built (known: {', '.join(_ROPE_TYPES)})")
    needed = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                                                 "original_max_position_embeddings"),
              "yarn": ("factor", "beta_fast", "beta_slow", "original_max_position_embeddings")}.get(kind, ())
    values = {k: _field(scaling, k, float, f"{where}: rope_scaling") for k in needed}
    if kind == "yarn":
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            if scaling.get(key) is not None:
                raise ConfigError(f"{where}: rope_scaling {key!r} (YaRN's attention factor given) is not built")
        values["truncate"] = _field(scaling, "truncate", bool, f"{where}: rope_scaling", default=True, required=False)
    return (("rope_type", kind), *sorted(values.items()))


def _mixture(raw: dict, arch: str, where: str) -> dict:
    """The :class:`DecoderConfig` fields of a mixture of experts (none for a dense architecture)."""
    if arch == "MixtralForCausalLM":
        return dict(experts=_field(raw, "num_local_experts", int, where),
                    experts_per_token=_field(raw, "num_experts_per_tok", int, where))
    if arch == "Qwen3MoeForCausalLM":
        if raw.get("mlp_only_layers") or raw.get("decoder_sparse_step", 1) != 1:
            raise ConfigError(f"{where}: dense layers among the experts' (mlp_only_layers, decoder_sparse_step) are not built")
        return dict(experts=_field(raw, "num_experts", int, where),
                    experts_per_token=_field(raw, "num_experts_per_tok", int, where),
                    ffn=_field(raw, "moe_intermediate_size", int, where),
                    router_renormalize=_field(raw, "norm_topk_prob", bool, where, default=False, required=False))
    if arch == "GptOssForCausalLM":
        k = raw.get("num_experts_per_tok", raw.get("experts_per_token"))
        return dict(experts=_field(raw, "num_local_experts", int, where),
                    experts_per_token=_field({"num_experts_per_tok": k}, "num_experts_per_tok", int, where),
                    routing="topk-softmax", router_bias=True, mlp_bias=True, attention_sinks=True,
                    swiglu_limit=_field(raw, "swiglu_limit", float, where))
    return {}


def _layer_windows(raw: dict, layers: int, where: str) -> tuple:
    """gpt-oss's window per layer from its ``layer_types`` (``sliding_attention``: ``sliding_window``)."""
    types = raw.get("layer_types")
    if not isinstance(types, list) or len(types) != layers or any(t not in _LAYER_TYPES for t in types):
        raise ConfigError(f"{where}: 'layer_types' must list {layers} of {', '.join(_LAYER_TYPES)}")
    window = _field(raw, "sliding_window", int, where)
    return tuple(window if t == "sliding_attention" else 0 for t in types)


def parse_config(raw: object, where: str, name: str = "") -> DecoderConfig:
    """The :class:`DecoderConfig` of a Hugging Face config (a parsed ``config.json``); ``where`` names it
    in messages. Raises :class:`ConfigError` for an unknown architecture, a field the builder cannot
    honour, or a malformed value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a config is a JSON object, not {type(raw).__name__}")
    archs = raw.get("architectures")
    if not isinstance(archs, list) or len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise ConfigError(f"{where}: architecture {archs!r} is not built (known: {', '.join(ARCHITECTURES)})")
    arch = archs[0]
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"{where}: hidden_act {act!r} is not built (the Llama family's SwiGLU uses silu)")
    if arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM") and raw.get("use_sliding_window"):
        raise ConfigError(f"{where}: use_sliding_window true (Qwen3's per-layer windows) is not built")
    d_model = _field(raw, "hidden_size", int, where)
    heads = _field(raw, "num_attention_heads", int, where)
    kv_heads = _field(raw, "num_key_value_heads", int, where, default=heads)
    if heads % kv_heads:
        raise ConfigError(f"{where}: {heads} attention heads do not divide into {kv_heads} key/value heads")
    head_dim = _field(raw, "head_dim", int, where, default=0, required=False)
    if not head_dim and d_model % heads:
        raise ConfigError(f"{where}: hidden_size {d_model} is not a multiple of {heads} heads and no head_dim is given")
    if (head_dim or d_model // heads) % 2:
        raise ConfigError(f"{where}: the rotary embedding needs an even head_dim, not {head_dim or d_model // heads}")
    window = raw.get("sliding_window") if arch in ("MistralForCausalLM", "MixtralForCausalLM") else None
    layers = _field(raw, "num_hidden_layers", int, where)
    fields = {"ffn": _field(raw, "intermediate_size", int, where),
              "mlp_bias": _field(raw, "mlp_bias", bool, where, default=False, required=False) if arch == "LlamaForCausalLM" else False,
              **_mixture(raw, arch, where)}
    if arch == "GptOssForCausalLM":
        fields["layer_windows"] = _layer_windows(raw, layers, where)
    cfg = DecoderConfig(
        layers=layers, d_model=d_model, heads=heads, kv_heads=kv_heads, **fields,
        vocab=_field(raw, "vocab_size", int, where),
        n_ctx=_field(raw, "max_position_embeddings", int, where, default=2048, required=False),
        name=name, architecture=arch,
        head_dim_override=0 if head_dim in (0, d_model // heads) else head_dim,
        rope_theta=_field(raw, "rope_theta", float, where, default=10000.0, required=False),
        rope_scaling=_rope_scaling(raw, where),
        rms_eps=_field(raw, "rms_norm_eps", float, where, default=1e-6, required=False),
        tie_embeddings=_field(raw, "tie_word_embeddings", bool, where, default=False, required=False),
        attention_bias=_field(raw, "attention_bias", bool, where, default=False, required=False),
        qk_norm=arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"),
        sliding_window=0 if window is None else _field({"sliding_window": window}, "sliding_window", int, where),
    )
    if cfg.parameters() > MAX_PARAMETERS:
        raise ConfigError(f"{where}: {cfg.parameters():.3g} parameters, beyond the {MAX_PARAMETERS:.0e} the builder "
                          "takes (the largest published models have about 2e12)")
    return cfg


def load_config(path: str | Path, name: str = "") -> DecoderConfig:
    """The decoder of the ``config.json`` at ``path`` (named ``name``, else the file's stem, or the
    directory's name for a file called ``config.json``)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path.name} is not a JSON config: {str(err).splitlines()[0]}") from None
    default = path.parent.name if path.name == "config.json" else path.stem
    meta = raw.get("explorer", {}) if isinstance(raw, dict) else {}
    return parse_config(raw, path.name, name or meta.get("name") or default)


def shipped_configs() -> list[ShippedConfig]:
    """The configs under ``models/configs/``, by name."""
    out = []
    for path in sorted(CONFIG_DIR.glob("*.json")):
        meta = json.loads(path.read_text())["explorer"]
        out.append(ShippedConfig(meta["name"], path, load_config(path), meta["source"],
                                 int(meta["published_parameters"]), meta["parameters_source"],
                                 int(meta.get("parameters_rounding", 1)), int(meta.get("published_active", 0)),
                                 int(meta.get("active_rounding", 1)), meta.get("active_source", ""),
                                 bool(meta.get("active_includes_embedding", False))))
    return out
