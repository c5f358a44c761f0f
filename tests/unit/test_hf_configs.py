"""Decoders from Hugging Face configs: the shipped ones, their sizes, and configs the builder refuses."""

import json

import onnx
import pytest

import models
from models.decoders import build_llama, layer_repeats, representative_layers, weight_inputs
from models.hf_configs import ConfigError, load_config, parse_config, shipped_configs

SHIPPED = {c.name: c for c in shipped_configs()}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_has_its_published_parameter_count(name):
    shipped = SHIPPED[name]
    # exact where the count is the checkpoint's; to the last digit a model card gives (gpt-oss: 0.01 B)
    assert abs(shipped.config.parameters() - shipped.published_parameters) < shipped.parameters_rounding


@pytest.mark.parametrize("name", sorted(n for n, c in SHIPPED.items() if c.published_active))
def test_a_mixture_s_active_parameters_are_its_publisher_s_under_their_rule(name):
    shipped = SHIPPED[name]
    cfg = shipped.config
    # the explorer's rule leaves the embedding table out; Mistral and Qwen count it, OpenAI does not
    active = cfg.active_parameters() + (cfg.vocab * cfg.d_model if shipped.active_includes_embedding else 0)
    assert abs(active - shipped.published_active) < shipped.active_rounding


def test_active_parameters_by_hand_for_gpt_oss_20b():
    cfg = SHIPPED["gpt-oss-20b"].config
    attention = 2880 * 4096 + 4096 + 2 * (2880 * 512 + 512) + 4096 * 2880 + 2880 + 64  # biases and sinks
    expert = 2880 * 2880 * 3 + 2 * 2880 + 2880
    router = 2880 * 32 + 32
    assert cfg.active_parameters() == 24 * (attention + 2 * 2880 + router + 4 * expert) + 201088 * 2880 + 2880


def test_shipped_configs_are_the_ones_the_issues_name():
    assert set(SHIPPED) == {"llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-2-70b", "qwen3-8b", "qwen3-32b",
                            "mixtral-8x7b", "qwen3-30b-a3b", "gpt-oss-20b", "gpt-oss-120b"}


def test_gpt_oss_alternates_sliding_window_and_full_attention():
    cfg = SHIPPED["gpt-oss-20b"].config
    assert [cfg.window(i) for i in range(4)] == [128, 0, 128, 0]
    assert (cfg.experts, cfg.experts_per_token, cfg.routing, cfg.attention_sinks) == (32, 4, "topk-softmax", True)


def test_qwen3_32b_reads_head_dim_from_its_config():
    cfg = SHIPPED["qwen3-32b"].config
    assert (cfg.d_model, cfg.heads, cfg.head_dim, cfg.qk_norm) == (5120, 64, 128, True)


def test_a_model_of_many_layers_is_built_from_four_with_its_weights_as_inputs():
    model = models.get_model("llama-3.1-405b").build()
    layers = {i.name.split(".")[2] for i in model.graph.input if i.name.startswith("model.layers.")}
    assert layers == {"0", "1", "2", "125"}
    assert layer_repeats(model) == ((2,), 123)
    assert not model.graph.initializer or max(i.ByteSize() for i in model.graph.initializer) < 4096
    assert "model.layers.2.mlp.down_proj.weight" in weight_inputs(model)


def test_a_model_of_five_layers_is_built_whole():
    assert representative_layers(5) == (0, 1, 2, 3, 4)


def test_alternating_layers_are_analysed_by_units_of_two():
    model = models.get_model("gpt-oss-20b").build()
    layers = {int(i.name.split(".")[2]) for i in model.graph.input if i.name.startswith("model.layers.")}
    # the first, second and third pairs, and the last; the third stands for the 9 pairs of layers 4-21
    assert layers == {0, 1, 2, 3, 4, 5, 22, 23}
    assert layer_repeats(model) == ((4, 5), 9)
    assert representative_layers(8, 2) == tuple(range(8))


def test_the_models_listing_shows_billions_to_two_decimals(cli):
    out = cli("models").stdout
    assert "405.85" in out and "8.03" in out and "32.76" in out


def test_an_unknown_architecture_is_refused_in_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "hidden_size": 64}))
    with pytest.raises(ConfigError, match="architecture .*GPT2LMHeadModel.* is not built"):
        load_config(path)


def test_a_rope_scaling_the_builder_cannot_honour_is_refused():
    raw = json.loads((models.hf_configs.CONFIG_DIR / "llama-3.1-8b.json").read_text())
    raw["rope_scaling"] = {"rope_type": "dynamic", "factor": 4.0}
    with pytest.raises(ConfigError, match="rope_scaling type 'dynamic' is not built"):
        parse_config(raw, "config.json")


def test_a_malformed_field_is_refused():
    raw = json.loads((models.hf_configs.CONFIG_DIR / "qwen3-8b.json").read_text())
    raw["num_key_value_heads"] = 5
    with pytest.raises(ConfigError, match="32 attention heads do not divide into 5"):
        parse_config(raw, "config.json")


def test_a_config_that_is_not_json_is_exit_2_in_one_line(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    result = cli("sweep", path, "--phase", "decode:8", "--targets", "gpu", "--no-build")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a JSON config" in result.stderr


def test_mistral_sliding_window_masks_keys_older_than_the_window():
    raw = json.loads((models.hf_configs.CONFIG_DIR / "llama-3.1-8b.json").read_text())
    raw.update(architectures=["MistralForCausalLM"], sliding_window=4, num_hidden_layers=1, hidden_size=64,
               intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=50, rope_scaling=None)
    model = build_llama(cfg=parse_config(raw, "mistral"))
    ops = [n.op_type for n in model.graph.node]
    assert "And" in ops  # causal and within the window
    onnx.checker.check_model(model)


def test_a_head_dim_of_its_own_merges_heads_to_heads_times_head_dim():
    model = models.get_model("qwen3-32b").build()  # 64 heads of 128 on a 5120 width
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
