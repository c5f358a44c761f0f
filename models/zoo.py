"""The model zoo: a registry of deterministic, code-built ONNX models.

No downloads: every model is written node by node with ``onnx.helper`` and
seeded numpy weights (see ``models/architectures.py``), so the same name always
yields byte-identical ONNX. Architectures follow the published ones so the MAC
counts from :func:`count_macs` can be checked against the literature.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import pathlib
import re
import tempfile
from typing import Callable

import onnx
from onnx import shape_inference

from . import architectures as _arch
from . import decoders as _dec
from . import hf_configs as _hf

# Bump when the serialised form changes for a reason the source hash cannot see.
ZOO_VERSION = "1"

__all__ = ["ModelInfo", "list_models", "get_model", "onnx_path", "count_macs", "ZOO_VERSION"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str  # one line
    inputs: tuple[tuple[str, tuple[int, ...]], ...]  # input names and static shapes
    published_macs: float | None  # multiply-adds from the literature, None if no published figure
    macs_source: str  # citation for published_macs (paper, table) or how it was derived
    build: Callable[[], onnx.ModelProto] = dataclasses.field(compare=False, hash=False, repr=False)
    decoder: _dec.DecoderConfig | None = None  # a decoder's shape; its inputs' symbolic dims are -1 above
    parameters: int | None = None  # parameters of the whole model (a config's, counted from its shapes)
    devices: int = 1  # devices the model is split over (tensor parallelism); this entry is one device's part


_MLP_MACS = 8 * (784 * 512 + 512 * 256 + 256 * 10)  # 4_280_320
# Per layer: Q, K, V and output projections 4*S*H*H, QK^T and AV 2*S*S*H, FFN 2*S*H*I.
_BERT_MINI_MACS = 4 * (4 * 128 * 256 * 256 + 2 * 128 * 128 * 256 + 2 * 128 * 256 * 1024)  # 436_207_616

_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        name="mlp",
        description="MLP 784-512-256-10 with Gemm+ReLU, batch 8",
        inputs=(("input", (8, 784)),),
        published_macs=float(_MLP_MACS),
        macs_source="hand count: 8 * (784*512 + 512*256 + 256*10) = 4,280,320 multiply-adds (exact)",
        build=_arch.build_mlp,
    ),
    ModelInfo(
        name="resnet18",
        description="ResNet-18 (torchvision), 1x3x224x224, Conv+BatchNormalization+ReLU, residual Add",
        inputs=(("input", (1, 3, 224, 224)),),
        published_macs=1.82e9,
        macs_source=(
            "He et al., 'Deep Residual Learning for Image Recognition', CVPR 2016, Table 1: "
            "1.8e9 FLOPs (= multiply-adds); 1.82 G is the commonly quoted precise figure"
        ),
        build=_arch.build_resnet18,
    ),
    ModelInfo(
        name="resnet50",
        description="ResNet-50 v1.5 (torchvision, stride in the 3x3 conv), 1x3x224x224, bottleneck blocks",
        inputs=(("input", (1, 3, 224, 224)),),
        published_macs=4.09e9,
        macs_source=(
            "torchvision ResNet50_Weights.IMAGENET1K_V1 model card: 4.09 GFLOPS (multiply-adds) for v1.5; "
            "He et al., CVPR 2016, Table 1 gives 3.8e9 for the original v1 (stride in the first 1x1 conv)"
        ),
        build=_arch.build_resnet50,
    ),
    ModelInfo(
        name="mobilenetv2",
        description="MobileNetV2 width 1.0 (torchvision), 1x3x224x224, ReLU6 as Clip, depthwise group convs",
        inputs=(("input", (1, 3, 224, 224)),),
        published_macs=300e6,
        macs_source=(
            "Sandler et al., 'MobileNetV2: Inverted Residuals and Linear Bottlenecks', CVPR 2018, "
            "Table 4: 300M multiply-adds, 3.4M parameters"
        ),
        build=_arch.build_mobilenetv2,
    ),
    ModelInfo(
        name="bert-mini",
        description="BERT encoder, 4 layers, hidden 256, 4 heads, FFN 1024, seq 128, batch 1, on float embeddings",
        inputs=(("embeddings", (1, 128, 256)),),
        published_macs=float(_BERT_MINI_MACS),
        macs_source=(
            "no published figure; analytic count for the BERT-mini shape (Turc et al. 2019, L=4 H=256): "
            "4 layers * (4*S*H*H + 2*S*S*H + 2*S*H*I) with S=128 H=256 I=1024 = 436,207,616 (MatMuls only)"
        ),
        build=_arch.build_bert_mini,
    ),
    ModelInfo(
        name="yolo-block",
        description="YOLOv5n backbone + upsample/concat neck block + 1x1 head, 1x3x320x320, Conv+BN+SiLU, C3, SPPF",
        inputs=(("images", (1, 3, 320, 320)),),
        published_macs=None,
        macs_source=(
            "no published figure: layers 0-13 of Ultralytics yolov5n.yaml (v6.0, depth 0.33, width 0.25) "
            "at 320x320 plus a 1x1 detect conv; use count_macs"
        ),
        build=_arch.build_yolo_block,
    ),
)

def _decoder_inputs(cfg: _dec.DecoderConfig, layer_ids: tuple[int, ...] | None = None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    past = tuple((f"past_key_values.{i}.{kind}", (-1, cfg.kv_heads, -1, cfg.head_dim))
                 for i in (range(cfg.layers) if layer_ids is None else layer_ids) for kind in ("key", "value"))
    return (("input_ids", (-1, -1)), ("attention_mask", (-1, -1)), *past)


def _small_llama(name: str, cfg: _dec.DecoderConfig, description: str, what: str) -> ModelInfo:
    """A Llama-family decoder of the zoo built whole with random weights (``what`` it is, for its MAC
    source)."""
    return ModelInfo(
        name=name, description=description, inputs=_decoder_inputs(cfg), published_macs=None,
        macs_source=f"no published figure ({what} sized for this machine); use count_macs at a phase",
        build=functools.partial(_dec.build_llama, cfg=cfg), decoder=cfg, parameters=cfg.parameters())


#: Decoders: symbolic batch and sequence lengths, fixed by a phase (``--phase prefill:P,decode:L``).
_DECODERS: tuple[ModelInfo, ...] = (
    ModelInfo(
        name="gpt2",
        description="GPT-2 small (124 M parameters: 12 layers, d_model 768, 12 heads, vocabulary 50257), KV cache in and out",
        inputs=_decoder_inputs(_dec.GPT2),
        published_macs=None,
        macs_source=(
            "per token: Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', Table 1: forward FLOPs "
            "2N + 2 n_layer n_ctx d_model (+ 2 d_model n_vocab for the LM head), N = 12 n_layer d_model^2; "
            "multiply-adds are half of that"
        ),
        build=_dec.build_gpt2,
        decoder=_dec.GPT2,
    ),
    _small_llama("llama-mini", _dec.LLAMA_MINI,
                 "Llama-style decoder (RMSNorm, rotary, grouped-query attention 8/2 heads, SwiGLU), 4 layers, d_model 256, KV cache",
                 "a small Llama-architecture model"),
    _small_llama("moe-mini", _dec.MOE_MINI,
                 "Mixtral-style mixture of experts: llama-mini's attention, 8 SwiGLU experts of 384 a layer, 2 a token, 4 layers",
                 "a small mixture of experts"),
    _small_llama("gpt-oss-mini", _dec.GPT_OSS_MINI,
                 "gpt-oss-style mixture of experts: sliding-window and full attention alternating, attention sinks, "
                 "biases, 8 experts of 256 (4 a token), clamped SwiGLU, YaRN; 4 layers, d_model 256",
                 "a small gpt-oss-shaped model"),
)


def config_model(cfg: _dec.DecoderConfig, source: str) -> ModelInfo:
    """The zoo entry of a decoder built from a Hugging Face config (see :mod:`models.hf_configs`): its
    distinct layers, its weights as graph inputs, the LM head on each sequence's last position."""
    layer_ids = _dec.representative_layers(cfg.layers, _dec.layer_period(cfg))
    return ModelInfo(
        name=cfg.name,
        description=(f"{cfg.architecture} from its config: {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads "
                     f"({cfg.kv_heads} KV) of {cfg.head_dim}, ffn {cfg.ffn}, vocabulary {cfg.vocab}; weights not held"),
        inputs=_decoder_inputs(cfg, layer_ids),
        published_macs=None,
        macs_source=f"config read from {source}; use count_macs at a phase",
        build=functools.partial(_dec.build_llama, cfg=cfg, layer_ids=layer_ids, weights_as_inputs=True,
                                last_token_logits=True),
        decoder=cfg,
        parameters=cfg.parameters(),
    )


#: A model name for one device of ``N`` under tensor parallelism: ``NAME@tpN``.
_TENSOR_PARALLEL = re.compile(r"^(?P<base>.+)@tp(?P<devices>\d+)$")


def tensor_parallel_name(name: str, devices: int) -> str:
    """``name`` for one device of ``devices`` (``NAME@tpN``; the name itself for one device)."""
    return name if devices == 1 else f"{name}@tp{devices}"


def split_tensor_parallel(name: str) -> tuple[str, int]:
    """(the model's own name, devices) of a name that may end in ``@tpN``."""
    match = _TENSOR_PARALLEL.match(str(name))
    return (match["base"], int(match["devices"])) if match else (str(name), 1)


def sharded(info: ModelInfo, devices: int) -> ModelInfo:
    """One device's shard of the Llama-family decoder ``info`` under tensor parallelism over ``devices``
    (:class:`models.decoders.Shard`); ValueError with a one-line reason where it cannot be split."""
    if devices == 1:
        return info
    cfg = info.decoder
    builder = getattr(info.build, "func", info.build)
    if cfg is None or builder is not _dec.build_llama:
        raise ValueError(f"{info.name}: tensor parallelism (@tp{devices}, --devices) splits Llama-family decoders only")
    error = _dec.shard_error(cfg, devices)
    if error:
        raise ValueError(error)
    keywords = dict(getattr(info.build, "keywords", {}))
    keywords.pop("shard", None)
    return dataclasses.replace(info, name=tensor_parallel_name(info.name, devices), devices=devices,
                               description=f"{info.description}; one device of {devices} (tensor parallel)",
                               build=functools.partial(_dec.build_llama, **{"cfg": cfg, **keywords},
                                                       shard=_dec.Shard(0, devices)))


_CONFIGS = tuple(config_model(c.config, c.source) for c in _hf.shipped_configs())
_MODELS = _MODELS + _DECODERS + _CONFIGS

_BY_NAME = {m.name: m for m in _MODELS}


def list_models() -> list[ModelInfo]:
    """All models in the zoo, in a fixed order."""
    return list(_MODELS)


def get_model(name: str) -> ModelInfo:
    """Look a model up by name (``NAME@tpN``: one device's shard of a decoder under tensor parallelism
    over N devices); an unknown name raises KeyError listing the known ones, a decoder that cannot be
    split so ValueError."""
    base, devices = split_tensor_parallel(name)
    try:
        info = _BY_NAME[base]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(_BY_NAME)}") from None
    return sharded(info, devices)


@functools.cache
def _builder_hash() -> str:
    """Hash of the zoo's source (every .py in this package) and version: changes with any builder."""
    h = hashlib.sha256(ZOO_VERSION.encode())
    pkg = pathlib.Path(__file__).resolve().parent
    for f in sorted([*pkg.glob("*.py"), *pkg.glob("configs/*.json")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _default_cache_dir() -> pathlib.Path:
    env = os.environ.get("EXPLORER_CACHE")
    if env:
        return pathlib.Path(env).expanduser() / "models"
    return pathlib.Path.home() / ".cache" / "tvm-energy-explorer" / "models"


def onnx_path(name: str, cache_dir: str | os.PathLike | None = None, batch: int | None = None) -> pathlib.Path:
    """Write the model to ONNX on first use and return the cached path.

    Default cache dir: $EXPLORER_CACHE/models if the env var is set, else
    ~/.cache/tvm-energy-explorer/models. The file name includes a hash of the
    builder source so a changed architecture never reuses an old file. Writes
    are atomic (temp file in the same directory + os.replace). ``batch`` builds
    the model at that batch (a decoder's batch is symbolic and ignores it).
    """
    base, devices = split_tensor_parallel(name)
    info = get_model(name) if not base.endswith(".json") else sharded(config_model(_hf.load_config(base), base), devices)
    d = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    batch = None if info.decoder is not None else batch  # a decoder's batch is symbolic: its phase sets it
    version = _builder_hash()
    if base.endswith(".json"):  # a user's config: its content names the file too
        version += "-" + hashlib.sha256(pathlib.Path(base).read_bytes()).hexdigest()[:8]
    path = d / f"{info.name}{'' if batch is None else f'-b{batch}'}-{version}.onnx"
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)  # used: the cache evicts the least recently used (explorer.store.eviction)
        return path
    d.mkdir(parents=True, exist_ok=True)
    data = (info.build() if batch is None else info.build(batch=batch)).SerializeToString()
    fd, tmp = tempfile.mkstemp(prefix=f".{info.name}-", suffix=".onnx.tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.errno and not err.filename:  # say which file could not be written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    """Tensor name -> static shape (None where unknown or symbolic)."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            shapes.setdefault(vi.name, None)
            continue
        dims = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            else:
                dims = None
                break
        shapes[vi.name] = tuple(dims) if dims is not None else None
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def count_macs(model: onnx.ModelProto) -> int:
    """Multiply-adds of Conv (incl. grouped/depthwise), ConvTranspose, Gemm and MatMul nodes.

    Shapes come from ``onnx.shape_inference`` (independent of TVM). Only the
    top-level graph is counted; every counted node needs static shapes, else
    ValueError. Conv: |Y| * (Cin/group) * prod(kernel). ConvTranspose:
    |X| * (Cout/group) * prod(kernel). Gemm: |Y| * K. MatMul (with
    broadcasting): |Y| * K, K the contracted dimension. Bias adds are not counted.
    """
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    shapes = _static_shapes(inferred)

    def shape(name: str, node: onnx.NodeProto) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None:
            raise ValueError(f"count_macs: no static shape for {name!r} (input/output of {node.op_type} {node.name!r})")
        return s

    total = 0
    for node in inferred.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        op = node.op_type
        if op == "Conv":
            w = shape(node.input[1], node)
            y = shape(node.output[0], node)
            total += math.prod(y) * math.prod(w[1:])  # w = [Cout, Cin/group, *kernel]
        elif op == "ConvTranspose":
            x = shape(node.input[0], node)
            w = shape(node.input[1], node)
            total += math.prod(x) * math.prod(w[1:])  # w = [Cin, Cout/group, *kernel]
        elif op == "Gemm":
            a = shape(node.input[0], node)
            y = shape(node.output[0], node)
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            total += math.prod(y) * (a[0] if trans_a else a[1])
        elif op == "MatMul":
            a = shape(node.input[0], node)
            y = shape(node.output[0], node)
            total += math.prod(y) * a[-1]
    return int(total)
