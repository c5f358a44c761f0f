"""Builders for the zoo's architectures, written node by node with ``onnx.helper``.

Each ``build_*`` function returns a fresh ``onnx.ModelProto`` (opset 17, IR 8).
Weights are drawn from ``np.random.default_rng(seed)`` in graph order, so
calling a builder twice gives byte-identical models.

Initialisation keeps activations O(1) through the whole network so outputs can
be compared between onnxruntime and TVM at float tolerance:

* convolutions: He-normal, std = sqrt(gain / fan_in) (gain 2 for ReLU/ReLU6,
  a tuned gain for SiLU, see SILU_GAIN);
* BatchNormalization: gamma ~ U(0.9, 1.1), beta and running mean ~ N(0, 0.05),
  running var ~ U(0.8, 1.2); the last BN of every residual branch has gamma
  scaled down (0.2) so residual sums do not blow up with depth;
* Linear/Gemm/MatMul: std = sqrt(gain / fan_in), small biases.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ._graph import GraphBuilder

# Gain for SiLU-activated convs. E[silu(z)^2] / E[z^2] rises from 0.25 (small z) to
# 0.5 (large z), so no single gain is a stable fixed point; 2.3 keeps every activation
# of the YOLO block between ~0.1 and ~2.3 rms on a N(0, 1) input (2.0 decays to ~0.03,
# 2.8 grows to ~50).
SILU_GAIN = 2.3
# Gamma of the last BatchNormalization of every residual branch.
RESIDUAL_GAMMA = 0.2


# --------------------------------------------------------------------------- MLP
def build_mlp(seed: int = 0, batch: int = 8) -> onnx.ModelProto:
    """784 -> 512 -> 256 -> 10 MLP with Gemm+ReLU, batch 8."""
    g = GraphBuilder(seed)
    x = g.add_input("input", (batch, 784))
    x = g.linear(x, "fc1", 784, 512, gain=2.0)
    x = g.node("Relu", [x], "relu1")
    x = g.linear(x, "fc2", 512, 256, gain=2.0)
    x = g.node("Relu", [x], "relu2")
    x = g.linear(x, "fc3", 256, 10, gain=1.0)
    g.add_output(x, (batch, 10))
    return g.build("mlp", f"MLP 784-512-256-10 (Gemm+ReLU), batch {batch}")


# ------------------------------------------------------------------------ ResNet
def _conv_bn(g: GraphBuilder, x, name, cin, cout, k, stride=1, pad=None, bn_name=None, gamma=1.0):
    y = g.conv(x, name, cin, cout, k, stride=stride, pad=pad)
    return g.batchnorm(y, bn_name, cout, gamma=gamma)


def _basic_block(g: GraphBuilder, x, p, cin, planes, stride):
    out = _conv_bn(g, x, f"{p}.conv1", cin, planes, 3, stride, bn_name=f"{p}.bn1")
    out = g.node("Relu", [out], f"{p}.relu1")
    out = _conv_bn(g, out, f"{p}.conv2", planes, planes, 3, 1, bn_name=f"{p}.bn2", gamma=RESIDUAL_GAMMA)
    identity = x
    if stride != 1 or cin != planes:
        identity = _conv_bn(g, x, f"{p}.downsample.0", cin, planes, 1, stride, pad=0, bn_name=f"{p}.downsample.1")
    out = g.node("Add", [out, identity], f"{p}.add")
    return g.node("Relu", [out], f"{p}.relu2"), planes


def _bottleneck(g: GraphBuilder, x, p, cin, planes, stride):
    # torchvision ResNet v1.5: the stride sits in the 3x3 conv (conv2).
    width, cout = planes, planes * 4
    out = _conv_bn(g, x, f"{p}.conv1", cin, width, 1, 1, pad=0, bn_name=f"{p}.bn1")
    out = g.node("Relu", [out], f"{p}.relu1")
    out = _conv_bn(g, out, f"{p}.conv2", width, width, 3, stride, bn_name=f"{p}.bn2")
    out = g.node("Relu", [out], f"{p}.relu2")
    out = _conv_bn(g, out, f"{p}.conv3", width, cout, 1, 1, pad=0, bn_name=f"{p}.bn3", gamma=RESIDUAL_GAMMA)
    identity = x
    if stride != 1 or cin != cout:
        identity = _conv_bn(g, x, f"{p}.downsample.0", cin, cout, 1, stride, pad=0, bn_name=f"{p}.downsample.1")
    out = g.node("Add", [out, identity], f"{p}.add")
    return g.node("Relu", [out], f"{p}.relu3"), cout


def _resnet(name: str, block, layers: list[int], seed: int, batch: int = 1) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    x = g.add_input("input", (batch, 3, 224, 224))
    x = _conv_bn(g, x, "conv1", 3, 64, 7, 2, pad=3, bn_name="bn1")
    x = g.node("Relu", [x], "relu")
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for bi in range(n):
            stride = 2 if (bi == 0 and li > 1) else 1
            x, cin = block(g, x, f"layer{li}.{bi}", cin, planes, stride)
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.linear(x, "fc", cin, 1000, gain=1.0)
    out = g.node("Identity", [x], "logits")
    g.add_output(out, (batch, 1000))
    return g.build(name, f"torchvision {name} (v1.5), {batch}x3x224x224, inference BatchNormalization")


def build_resnet18(seed: int = 18, batch: int = 1) -> onnx.ModelProto:
    return _resnet("resnet18", _basic_block, [2, 2, 2, 2], seed, batch)


def build_resnet50(seed: int = 50, batch: int = 1) -> onnx.ModelProto:
    return _resnet("resnet50", _bottleneck, [3, 4, 6, 3], seed, batch)


# ------------------------------------------------------------------- MobileNetV2
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(g: GraphBuilder, x, p, cin, cout, k, stride=1, groups=1):
    """torchvision Conv2dNormActivation: p.0 conv, p.1 bn, p.2 ReLU6 (Clip 0..6)."""
    y = g.conv(x, f"{p}.0", cin, cout, k, stride=stride, groups=groups)
    y = g.batchnorm(y, f"{p}.1", cout)
    lo, hi = g.const("relu6.min", 0.0), g.const("relu6.max", 6.0)
    return g.node("Clip", [y, lo, hi], f"{p}.2")


def build_mobilenetv2(seed: int = 2, batch: int = 1) -> onnx.ModelProto:
    """torchvision mobilenet_v2(width_mult=1.0) at 1x3x224x224."""
    g = GraphBuilder(seed)
    x = g.add_input("input", (batch, 3, 224, 224))
    settings = [  # t, c, n, s  (Sandler et al. 2018, Table 2)
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    cin = _make_divisible(32)
    last = _make_divisible(1280)
    x = _conv_bn_relu6(g, x, "features.0", 3, cin, 3, stride=2)
    idx = 1
    for t, c, n, s in settings:
        cout = _make_divisible(c)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = int(round(cin * t))
            residual = stride == 1 and cin == cout
            y = x
            j = 0
            if t != 1:
                y = _conv_bn_relu6(g, y, f"{p}.{j}", cin, hidden, 1)
                j += 1
            y = _conv_bn_relu6(g, y, f"{p}.{j}", hidden, hidden, 3, stride=stride, groups=hidden)  # depthwise
            # linear projection (no activation)
            y = g.conv(y, f"{p}.{j + 1}", hidden, cout, 1)
            y = g.batchnorm(y, f"{p}.{j + 2}", cout, gamma=RESIDUAL_GAMMA if residual else 1.0)
            if residual:
                y = g.node("Add", [x, y], f"features.{idx}.add")
            x, cin = y, cout
            idx += 1
    x = _conv_bn_relu6(g, x, f"features.{idx}", cin, last, 1)
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.linear(x, "classifier.1", last, 1000, gain=1.0)
    out = g.node("Identity", [x], "logits")
    g.add_output(out, (batch, 1000))
    return g.build("mobilenetv2", f"torchvision MobileNetV2 (width 1.0), {batch}x3x224x224, ReLU6 as Clip(0, 6)")


# ---------------------------------------------------------------------- BERT-mini
def build_bert_mini(
    seed: int = 4,
    layers: int = 4,
    hidden: int = 256,
    heads: int = 4,
    intermediate: int = 1024,
    seq: int = 128,
    batch: int = 1,
) -> onnx.ModelProto:
    """BERT encoder stack (post-LN, GELU via Erf) on precomputed embeddings."""
    g = GraphBuilder(seed)
    hd = hidden // heads
    x = g.add_input("embeddings", (batch, seq, hidden))
    shape_heads = g.const("shape.heads", [batch, seq, heads, hd], np.int64)
    shape_hidden = g.const("shape.hidden", [batch, seq, hidden], np.int64)
    scale = g.const("attention.scale", math.sqrt(hd))
    half, one, sqrt2 = g.const("gelu.half", 0.5), g.const("gelu.one", 1.0), g.const("gelu.sqrt2", math.sqrt(2.0))

    def dense(inp, name, fin, fout):
        w = g.init(f"{name}.weight", g.normal((fin, fout), math.sqrt(1.0 / fin)))  # [in, out] for MatMul
        b = g.init(f"{name}.bias", g.normal((fout,), 0.02))
        y = g.node("MatMul", [inp, w], f"{name}.matmul")
        return g.node("Add", [y, b], f"{name}.add")

    def layernorm(inp, name):
        gamma = g.init(f"{name}.weight", g.uniform((hidden,), 0.9, 1.1))
        beta = g.init(f"{name}.bias", g.normal((hidden,), 0.05))
        return g.node("LayerNormalization", [inp, gamma, beta], name, axis=-1, epsilon=1e-12)

    for li in range(layers):
        p = f"encoder.layer.{li}"
        a = f"{p}.attention"
        q = dense(x, f"{a}.self.query", hidden, hidden)
        k = dense(x, f"{a}.self.key", hidden, hidden)
        v = dense(x, f"{a}.self.value", hidden, hidden)
        q = g.node("Reshape", [q, shape_heads], f"{a}.self.query.reshape")
        q = g.node("Transpose", [q], f"{a}.self.query.transpose", perm=[0, 2, 1, 3])  # B,H,S,D
        k = g.node("Reshape", [k, shape_heads], f"{a}.self.key.reshape")
        k = g.node("Transpose", [k], f"{a}.self.key.transpose", perm=[0, 2, 3, 1])  # B,H,D,S
        v = g.node("Reshape", [v, shape_heads], f"{a}.self.value.reshape")
        v = g.node("Transpose", [v], f"{a}.self.value.transpose", perm=[0, 2, 1, 3])  # B,H,S,D
        s = g.node("MatMul", [q, k], f"{a}.self.scores")  # B,H,S,S
        s = g.node("Div", [s, scale], f"{a}.self.scale")
        s = g.node("Softmax", [s], f"{a}.self.softmax", axis=-1)
        c = g.node("MatMul", [s, v], f"{a}.self.context")  # B,H,S,D
        c = g.node("Transpose", [c], f"{a}.self.context.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, shape_hidden], f"{a}.self.context.reshape")
        o = dense(c, f"{a}.output.dense", hidden, hidden)
        o = g.node("Add", [o, x], f"{a}.output.residual")
        x = layernorm(o, f"{a}.output.LayerNorm")
        h = dense(x, f"{p}.intermediate.dense", hidden, intermediate)
        # GELU(h) = 0.5 * h * (1 + erf(h / sqrt(2)))
        e = g.node("Div", [h, sqrt2], f"{p}.intermediate.gelu.div")
        e = g.node("Erf", [e], f"{p}.intermediate.gelu.erf")
        e = g.node("Add", [e, one], f"{p}.intermediate.gelu.add")
        e = g.node("Mul", [h, e], f"{p}.intermediate.gelu.mul")
        h = g.node("Mul", [e, half], f"{p}.intermediate.gelu.half")
        o = dense(h, f"{p}.output.dense", intermediate, hidden)
        o = g.node("Add", [o, x], f"{p}.output.residual")
        x = layernorm(o, f"{p}.output.LayerNorm")
    out = g.node("Identity", [x], "last_hidden_state")
    g.add_output(out, (batch, seq, hidden))
    return g.build(
        "bert-mini",
        f"BERT encoder L={layers} H={hidden} A={heads} I={intermediate}, seq {seq}, batch {batch}, on embeddings",
    )


# ------------------------------------------------------------------ YOLOv5 block
def _yconv(g: GraphBuilder, x, p, cin, cout, k, stride=1, pad=None, gamma=1.0):
    """Ultralytics Conv: conv (no bias) + BN(eps 1e-3) + SiLU written as x * Sigmoid(x)."""
    y = g.conv(x, f"{p}.conv", cin, cout, k, stride=stride, pad=pad, gain=SILU_GAIN)
    y = g.batchnorm(y, f"{p}.bn", cout, eps=1e-3, gamma=gamma)
    s = g.node("Sigmoid", [y], f"{p}.act.sigmoid")
    return g.node("Mul", [y, s], f"{p}.act")


def _c3(g: GraphBuilder, x, p, cin, cout, n, shortcut=True):
    """Ultralytics C3 (CSP bottleneck with 3 convs)."""
    c_ = cout // 2
    a = _yconv(g, x, f"{p}.cv1", cin, c_, 1)
    for i in range(n):
        b = _yconv(g, a, f"{p}.m.{i}.cv1", c_, c_, 1)
        b = _yconv(g, b, f"{p}.m.{i}.cv2", c_, c_, 3, gamma=RESIDUAL_GAMMA if shortcut else 1.0)
        a = g.node("Add", [a, b], f"{p}.m.{i}.add") if shortcut else b
    b = _yconv(g, x, f"{p}.cv2", cin, c_, 1)
    cat = g.node("Concat", [a, b], f"{p}.cat", axis=1)
    return _yconv(g, cat, f"{p}.cv3", 2 * c_, cout, 1)


def _sppf(g: GraphBuilder, x, p, cin, cout, k=5):
    c_ = cin // 2
    y = _yconv(g, x, f"{p}.cv1", cin, c_, 1)
    pools = [y]
    for i in range(3):
        pools.append(
            g.node("MaxPool", [pools[-1]], f"{p}.m.{i}", kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4)
        )
    cat = g.node("Concat", pools, f"{p}.cat", axis=1)
    return _yconv(g, cat, f"{p}.cv2", 4 * c_, cout, 1)


def build_yolo_block(seed: int = 5, batch: int = 1) -> onnx.ModelProto:
    """YOLOv5n (v6.0 yolov5n.yaml: depth 0.33, width 0.25) layers 0-13 + a 1x1 detect conv, at 320x320.

    Backbone: stem Conv 6x6/2, Conv 3x3/2, C3x1, Conv/2, C3x2 (P3), Conv/2, C3x3 (P4),
    Conv/2, C3x1, SPPF. Neck: Conv 1x1, Resize nearest x2, Concat with P4, C3x1 (no
    shortcut). Head: 1x1 conv to 3 * (5 + 80) = 255 channels at stride 16.
    """
    g = GraphBuilder(seed)
    x = g.add_input("images", (batch, 3, 320, 320))
    x = _yconv(g, x, "model.0", 3, 16, 6, stride=2, pad=2)  # 160
    x = _yconv(g, x, "model.1", 16, 32, 3, stride=2)  # 80
    x = _c3(g, x, "model.2", 32, 32, 1)
    x = _yconv(g, x, "model.3", 32, 64, 3, stride=2)  # 40
    x = _c3(g, x, "model.4", 64, 64, 2)
    x = _yconv(g, x, "model.5", 64, 128, 3, stride=2)  # 20
    p4 = _c3(g, x, "model.6", 128, 128, 3)
    x = _yconv(g, p4, "model.7", 128, 256, 3, stride=2)  # 10
    x = _c3(g, x, "model.8", 256, 256, 1)
    x = _sppf(g, x, "model.9", 256, 256)
    x = _yconv(g, x, "model.10", 256, 128, 1)
    scales = g.const("model.11.scales", [1.0, 1.0, 2.0, 2.0])
    x = g.node(
        "Resize",
        [x, "", scales],  # no roi
        "model.11",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )  # 20, like torch nn.Upsample(scale_factor=2, mode="nearest")
    x = g.node("Concat", [x, p4], "model.12", axis=1)
    x = _c3(g, x, "model.13", 256, 128, 1, shortcut=False)
    x = g.conv(x, "head", 128, 3 * (5 + 80), 1, bias=True, gain=1.0)
    g.add_output(x, (batch, 255, 20, 20))
    return g.build("yolo-block", f"YOLOv5n backbone + upsample/concat neck block + 1x1 head, {batch}x3x320x320, SiLU")
