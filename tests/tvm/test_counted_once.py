"""The counted-once analysis: a decoder built from its distinct layers, its weights as parameters, gives the
operation counts and bytes of the whole model built with constant weights (docs/methodology/real-size.md)."""

import onnx
import pandas as pd
import pytest

from models.decoders import LLAMA_MINI, build_llama
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


def _compare(counted, whole) -> None:
    (counted, counted_levels), (whole, whole_levels) = counted, whole
    assert len(counted) == len(whole) and counted["energy_j"].notna().all()
    for col in EXACT:
        assert list(counted[col]) == list(whole[col]), col
    pd.testing.assert_frame_equal(counted_levels, whole_levels)
    for col in CLOSE:
        assert (counted[col] / whole[col] - 1).abs().max() < 1e-3, col


@pytest.fixture(scope="module")
def w1024_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("w1024")
    cfg = W1024
    onnx.save(build_llama(cfg=cfg, last_token_logits=True), d / "whole.onnx")
    from models.decoders import representative_layers

    onnx.save(build_llama(cfg=cfg, layer_ids=representative_layers(cfg.layers), weights_as_inputs=True,
                          last_token_logits=True), d / "counted.onnx")
    return d


def test_width_1024_six_layers_fp16_is_counted_once_exactly(w1024_files, tmp_path):
    counted = _sweep(w1024_files / "counted.onnx", "fused-fp16", tmp_path, "counted")
    whole = _sweep(w1024_files / "whole.onnx", "fused-fp16", tmp_path, "whole")
    _compare(counted, whole)


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
