"""Tests for the code-built ONNX model zoo (models/). Fast: no TVM, onnxruntime only."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models
from models import ModelInfo, count_macs, get_model, list_models, onnx_path

NAMES = ["mlp", "resnet18", "resnet50", "mobilenetv2", "bert-mini", "yolo-block"]
OUTPUT_SHAPES = {
    "mlp": (8, 10),
    "resnet18": (1, 1000),
    "resnet50": (1, 1000),
    "mobilenetv2": (1, 1000),
    "bert-mini": (1, 128, 256),
    "yolo-block": (1, 255, 20, 20),
}


@pytest.fixture(scope="module")
def built() -> dict[str, onnx.ModelProto]:
    return {name: get_model(name).build() for name in NAMES}


DECODERS = ["gpt2", "llama-mini", "moe-mini", "gpt-oss-mini"]
CONFIGS = ["gpt-oss-120b", "gpt-oss-20b", "llama-2-70b", "llama-3.1-405b", "llama-3.1-70b", "llama-3.1-8b", "mixtral-8x7b",
           "qwen3-30b-a3b", "qwen3-32b", "qwen3-8b"]


def _replace_build(info, calls, real_build):
    import dataclasses

    def build():
        calls.append(1)
        return real_build()

    return dataclasses.replace(info, build=build)


def test_registry_names_and_types():
    infos = list_models()
    assert [m.name for m in infos] == NAMES + DECODERS + CONFIGS
    for info in infos:
        assert isinstance(info, ModelInfo)
        assert info.description and "\n" not in info.description
        static = info.decoder is None  # a decoder's batch and lengths are symbolic (-1) until a phase fixes them
        assert info.inputs and all(isinstance(n, str) and all(d > 0 or not static for d in s) for n, s in info.inputs)
        assert info.macs_source
        assert get_model(info.name) is info


def test_gpt2_has_the_published_size():
    # GPT-2 small: 124 M parameters (Radford et al. 2019; Hugging Face's gpt2 counts 124,439,808)
    model = get_model("gpt2").build()
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0)
    assert abs(params - 124_439_808) < 0.001 * 124_439_808, params
    names = [i.name for i in model.graph.input]
    assert names[:2] == ["input_ids", "attention_mask"] and names[2:4] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in model.graph.output][:2] == ["logits", "present.0.key"]


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError) as exc:
        get_model("nope")
    msg = str(exc.value)
    assert "nope" in msg
    for name in NAMES:
        assert name in msg


@pytest.mark.parametrize("name", NAMES)
def test_checker_and_onnxruntime(name, built):
    model = built[name]
    info = get_model(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    # graph inputs are exactly the declared ones (weights are initializers, not inputs)
    declared = {n: s for n, s in info.inputs}
    graph_inputs = {
        i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in model.graph.input
    }
    assert graph_inputs == declared
    # every node has a unique, non-empty name
    node_names = [n.name for n in model.graph.node]
    assert all(node_names) and len(set(node_names)) == len(node_names)

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in info.inputs}
    outs = sess.run(None, feeds)
    assert len(outs) == 1
    out = outs[0]
    assert out.shape == OUTPUT_SHAPES[name]
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    # activations stay O(1): outputs neither vanish nor explode
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert 0.1 < rms < 10.0, rms


@pytest.mark.parametrize("name", NAMES)
def test_build_is_deterministic(name, built):
    again = get_model(name).build()
    assert again.SerializeToString() == built[name].SerializeToString()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2"])
def test_macs_match_published(name, built):
    info = get_model(name)
    macs = count_macs(built[name])
    assert info.published_macs is not None
    assert abs(macs / info.published_macs - 1.0) < 0.01, (macs, info.published_macs)


def test_macs_exact_values(built):
    assert count_macs(built["mlp"]) == 8 * (784 * 512 + 512 * 256 + 256 * 10) == 4_280_320
    # torchvision reference counts (conv + fc multiply-adds)
    assert count_macs(built["resnet18"]) == 1_814_073_344
    assert count_macs(built["resnet50"]) == 4_089_184_256
    assert count_macs(built["mobilenetv2"]) == 300_774_272
    # 4 layers * (4*S*H*H + 2*S*S*H + 2*S*H*I), S=128 H=256 I=1024
    assert count_macs(built["bert-mini"]) == 4 * (4 * 128 * 256 * 256 + 2 * 128 * 128 * 256 + 2 * 128 * 256 * 1024)
    assert get_model("bert-mini").published_macs == count_macs(built["bert-mini"])
    assert get_model("mlp").published_macs == 4_280_320
    assert get_model("yolo-block").published_macs is None
    assert 100e6 < count_macs(built["yolo-block"]) < 500e6


def test_count_macs_grouped_conv_and_gemm_transpose():
    from onnx import TensorProto, helper, numpy_helper

    w_dw = numpy_helper.from_array(np.zeros((8, 1, 3, 3), np.float32), "w_dw")  # depthwise 8 groups
    w_g = numpy_helper.from_array(np.zeros((16, 4, 1, 1), np.float32), "w_g")  # 2 groups of 8 -> 16
    b = numpy_helper.from_array(np.zeros((4, 5), np.float32), "b")  # Gemm with transA: A^T [3,4] @ B [4,5]
    nodes = [
        helper.make_node("Conv", ["x", "w_dw"], ["y1"], group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["y1", "w_g"], ["y2"], group=2),
        helper.make_node("Gemm", ["a", "b"], ["y3"], transA=1),
        helper.make_node("MatMul", ["m1", "m2"], ["y4"]),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("m1", TensorProto.FLOAT, [2, 1, 6, 7]),
            helper.make_tensor_value_info("m2", TensorProto.FLOAT, [3, 7, 9]),
        ],
        [
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("y3", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("y4", TensorProto.FLOAT, None),
        ],
        initializer=[w_dw, w_g, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    expected = (
        (1 * 8 * 5 * 5) * (1 * 3 * 3)  # depthwise: each output sees 1 input channel * 3x3
        + (1 * 16 * 5 * 5) * 4  # grouped 1x1: each output sees 8/2 input channels
        + 3 * 5 * 4  # Gemm M*N*K
        + (2 * 3 * 6 * 9) * 7  # broadcast batched MatMul
    )
    assert count_macs(model) == expected


def test_onnx_path_caches(tmp_path, monkeypatch):
    p = onnx_path("mlp", cache_dir=tmp_path)
    assert p.is_file() and p.parent == tmp_path
    assert p.name.startswith("mlp-") and p.suffix == ".onnx"
    assert p.read_bytes() == get_model("mlp").build().SerializeToString()
    inode = p.stat().st_ino  # a rewrite (a new file renamed into place) would be another
    mtime = p.stat().st_mtime_ns
    os.utime(p, ns=(mtime - 10_000_000_000, mtime - 10_000_000_000))
    old = p.stat().st_mtime_ns

    calls = []
    info = get_model("mlp")
    real_build = info.build
    monkeypatch.setattr(models.zoo, "_BY_NAME", {**models.zoo._BY_NAME, "mlp": _replace_build(info, calls, real_build)})
    p2 = onnx_path("mlp", cache_dir=tmp_path)
    assert p2 == p
    assert p2.stat().st_ino == inode  # the same file, not rewritten
    assert p2.stat().st_mtime_ns > old  # used: its last use refreshed for the cache's eviction order
    assert calls == []  # not rebuilt
    assert [f.name for f in tmp_path.iterdir()] == [p.name]  # no stray temp files
    onnx.checker.check_model(onnx.load(str(p2)))


def test_onnx_path_default_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    p = onnx_path("mlp")
    assert p.parent == tmp_path / "models"
    assert p.is_file()


def test_onnx_path_unknown_name(tmp_path):
    with pytest.raises(KeyError):
        onnx_path("nope", cache_dir=tmp_path)
