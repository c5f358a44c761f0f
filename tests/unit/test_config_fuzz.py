"""Hostile Hugging Face configs (issue 37 part 6): whatever a config holds, the loader returns a decoder
or refuses it with a ConfigError (one line), never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models.hf_configs
from models.decoders import DecoderConfig
from models.hf_configs import ConfigError, parse_config

BASES = {name: json.loads((models.hf_configs.CONFIG_DIR / f"{name}.json").read_text())
         for name in ("llama-3.1-8b", "qwen3-30b-a3b", "gpt-oss-20b", "mixtral-8x7b")}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


@st.composite
def mutated_configs(draw):
    raw = dict(BASES[draw(st.sampled_from(sorted(BASES)))])
    keys = sorted(k for k in raw if k != "explorer")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        key = draw(st.sampled_from(keys + ["rope_scaling", "layer_types", "head_dim", "num_experts"]))
        action = draw(st.sampled_from(["delete", "replace", "scale"]))
        if action == "delete":
            raw.pop(key, None)
        elif action == "scale" and isinstance(raw.get(key), int) and not isinstance(raw.get(key), bool):
            raw[key] = raw[key] * draw(st.sampled_from([0, -1, 3, 10**6, 10**12]))
        else:
            raw[key] = draw(JSON_VALUES)
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_a_mutated_config_is_a_decoder_or_one_clear_refusal(raw):
    try:
        cfg = parse_config(raw, "config.json")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith("config.json")
        return
    assert isinstance(cfg, DecoderConfig) and cfg.parameters() > 0
