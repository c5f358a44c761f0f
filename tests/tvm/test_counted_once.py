"""The counted-once analysis: a decoder built from its distinct layers, its weights as parameters, gives the
operation counts and bytes of the whole model built with constant weights (docs/methodology/real-size.md)."""

import dataclasses

import onnx
import pandas as pd
import pytest

from models.decoders import GPT_OSS_MINI, LLAMA_MINI, build_llama, layer_period, representative_layers
from models.hf_configs import load_config
from tests.conftest import DATA

#: Columns that must agree exactly: operations, and bytes at every level of the gpu target.
EXACT = ["kernels", "macs", "flops", "dram_bytes", "onchip_bytes", "weight_bytes", "kv_cache_bytes", "constant_bytes"]
#: Bytes at each level of the gpu target, summed over a variant's kernel calls.
LEVELS = ["dram_bytes", "l2_bytes", "shared_bytes", "registers_bytes"]
CLOSE = ["energy_j", "latency_s"]
W1024 = load_config(DATA / "configs" / "llama-w1024-l6.json")


def _sweep(path, strategies, tmp_path, name):
    from explorer.sweep.sweep import run_sweep

    result = run_sweep([str(path)], targets=["gpu"], strategies=strategies, build=False, check=False, progress=False,
                       phases="prefill:32,decode:64", batches=[4], kv_cache_dtype="float16", out=tmp_path / name)
    levels = result.kernels.assign(instance=result.kernels["model"].str.split("@", n=1).str[1])
    levels = levels.groupby(["instance", "strategy"])[LEVELS].sum().reset_index()
    return result.variants.sort_values(["phase", "strategy"]).reset_index(drop=True), levels


def _compare(counted, whole, onchip_rtol: float = 0.0) -> None:
    (counted, counted_levels), (whole, whole_levels) = counted, whole
    assert len(counted) == len(whole) and counted["energy_j"].notna().all()
    for col in EXACT:
        if onchip_rtol and col == "onchip_bytes":
            assert (counted[col] / whole[col] - 1).abs().max() < onchip_rtol, col
            continue
        assert list(counted[col]) == list(whole[col]), col
    pd.testing.assert_frame_equal(counted_levels, whole_levels, check_exact=not onchip_rtol, rtol=onchip_rtol or 1e-5)
    for col in CLOSE:
        assert (counted[col] / whole[col] - 1).abs().max() < 1e-3, col


@pytest.fixture(scope="module")
def w1024_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("w1024")
    cfg = W1024
    onnx.save(build_llama(cfg=cfg, last_token_logits=True), d / "whole.onnx")
    onnx.save(build_llama(cfg=cfg, layer_ids=representative_layers(cfg.layers), weights_as_inputs=True,
                          last_token_logits=True), d / "counted.onnx")
    return d


def test_width_1024_six_layers_fp16_is_counted_once_exactly(w1024_files, tmp_path):
    counted = _sweep(w1024_files / "counted.onnx", "fused-fp16", tmp_path, "counted")
    whole = _sweep(w1024_files / "whole.onnx", "fused-fp16", tmp_path, "whole")
    _compare(counted, whole)


def test_a_gpt_oss_shaped_mixture_of_alternating_layers_is_counted_once_exactly(tmp_path):
    # 10 layers, sliding-window (16) and full attention alternating: built from the pairs 0-1, 2-3, 4-5
    # and 8-9, the pair 4-5 standing for 4-5 and 6-7; attention sinks, biases, 8 experts (4 a token)
    cfg = dataclasses.replace(GPT_OSS_MINI, layers=10, d_model=128, ffn=128, vocab=1000, heads=4, kv_heads=2,
                              layer_windows=(16, 0) * 5, name="gpt-oss-l10")
    layers = representative_layers(cfg.layers, layer_period(cfg))
    assert layers == (0, 1, 2, 3, 4, 5, 8, 9)
    onnx.save(build_llama(cfg=cfg, last_token_logits=True), tmp_path / "whole.onnx")
    onnx.save(build_llama(cfg=cfg, layer_ids=layers, weights_as_inputs=True, last_token_logits=True),
              tmp_path / "counted.onnx")
    # fp32: in fp16 a bias that is a weight parameter keeps a cast of its own in prefill (see the docs' gap).
    # On-chip bytes within 1e-3: the planner recycles the middle layers' new keys and values in the whole
    # model's activation memory, where each copy of the counted unit has its own (256 kB in prefill: 1e-5
    # of its on-chip bytes, 7.5e-4 of its L2's)
    _compare(_sweep(tmp_path / "counted.onnx", "fused", tmp_path, "counted"),
             _sweep(tmp_path / "whole.onnx", "fused", tmp_path, "whole"), onchip_rtol=1e-3)


def test_llama_mini_with_weights_as_parameters_matches_its_constant_build(tmp_path):
    onnx.save(build_llama(cfg=LLAMA_MINI), tmp_path / "constants.onnx")
    onnx.save(build_llama(cfg=LLAMA_MINI, weights_as_inputs=True), tmp_path / "parameters.onnx")
    _compare(_sweep(tmp_path / "parameters.onnx", "fused-fp16", tmp_path, "p"),
             _sweep(tmp_path / "constants.onnx", "fused-fp16", tmp_path, "c"))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known gap: with bf16 and weight-only strategies the counted-once DRAM bytes "
                                       "are 1.5-13% below the whole model's (operation counts and weight bytes agree)")
@pytest.mark.parametrize("strategy", ["fused-bf16", "fused-int8w", "fused-int4w"])
def test_width_1024_six_layers_other_served_strategies(w1024_files, tmp_path, strategy):
    _compare(_sweep(w1024_files / "counted.onnx", strategy, tmp_path, "counted"),
             _sweep(w1024_files / "whole.onnx", strategy, tmp_path, "whole"))
