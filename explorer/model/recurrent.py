"""RNN, GRU and LSTM nodes unrolled into MatMul/Add/activation nodes (pure ONNX; TVM's importer
has none of the three).

With a static sequence length the recurrences unroll exactly, step by step, in both directions, with
the ONNX definitions' gate orders (LSTM ``iofc``, GRU ``zrh``), biases, initial states, peepholes,
``clip``, ``input_forget``, ``linear_before_reset``, ``layout`` and the activations Sigmoid, Tanh and
Relu. Weights must be constants. What is not expanded is refused by name: other activations (and
their alpha/beta), and ``sequence_lens`` unless it is a constant equal to the sequence length.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from explorer.core.errors import ExplorerError

RECURRENT_OPS = ("RNN", "GRU", "LSTM")
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_ACTIVATIONS = ("Sigmoid", "Tanh", "Relu")


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Builder:
    """Appends nodes and constants with unique names, in the graph's opset."""

    def __init__(self, prefix: str, opset: int):
        self.prefix, self.nodes, self.inits, self.n, self.opset = prefix, [], [], 0, opset

    def squeeze(self, v: str, axis: int) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", [v, self.const(np.array([axis]))], "sq")
        return self.op("Squeeze", [v], "sq", axes=[axis])

    def unsqueeze(self, v: str, axis: int) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [v, self.const(np.array([axis]))], "usq")
        return self.op("Unsqueeze", [v], "usq", axes=[axis])

    def take(self, v: str, k: int) -> str:
        """``v[k]`` along axis 0."""
        return self.squeeze(self.op("Slice", [v, self.const(np.array([k])), self.const(np.array([k + 1])),
                                              self.const(np.array([0]))], "sl"), 0)

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{self.prefix}{hint}{self.n}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "t", **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _expand(node, consts: dict[str, np.ndarray], shapes: dict[str, list[int]], index: int, opset: int
            ) -> tuple[list, list]:
    op = node.op_type
    where = f"{op} node {node.name or index}"
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x, w_name, r_name, b_name, lens_name, h0_name = inputs[:6]
    c0_name, p_name = (inputs[6], inputs[7]) if op == "LSTM" else ("", "")
    for needed, what in ((w_name, "W"), (r_name, "R")):
        if needed not in consts:
            raise ExplorerError(f"{where}: its {what} weights must be constants to unroll it")
    if _attr(node, "activation_alpha") or _attr(node, "activation_beta"):
        raise ExplorerError(f"{where}: activation_alpha/activation_beta are not expanded")
    direction = _attr(node, "direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    layout = int(_attr(node, "layout", 0))
    x_shape = shapes.get(x)
    if not x_shape or any(d <= 0 for d in x_shape):
        raise ExplorerError(f"{where}: its input's shape must be static to unroll it (give --input-shape)")
    seq, batch = (x_shape[1], x_shape[0]) if layout else (x_shape[0], x_shape[1])
    if lens_name:
        lens = consts.get(lens_name)
        if lens is None or not np.all(lens == seq):
            raise ExplorerError(f"{where}: sequence_lens other than the full length is not expanded")
    gates = _GATES[op]
    hidden = int(_attr(node, "hidden_size", consts[r_name].shape[-1]))
    acts = [a.decode() if isinstance(a, bytes) else a for a in (_attr(node, "activations") or [])]
    per_dir = len(_DEFAULT_ACTIVATIONS[op])
    acts = acts or _DEFAULT_ACTIVATIONS[op] * len(dirs)
    bad = sorted({a for a in acts if a not in _ACTIVATIONS})
    if bad:
        raise ExplorerError(f"{where}: activation {', '.join(bad)} is not expanded (Sigmoid, Tanh and Relu are)")
    clip = _attr(node, "clip")
    b = _Builder(f"{node.output[0] if node.output and node.output[0] else f'rnn{index}'}_unrolled_", opset)
    xs = b.op("Transpose", [x], "xt", perm=[1, 0, 2]) if layout else x  # [seq, batch, input]
    steps = [b.take(xs, t) for t in range(seq)]
    w, r = consts[w_name], consts[r_name]
    bias = consts.get(b_name) if b_name else None
    peep = consts.get(p_name) if p_name else None
    states = [b.op("Transpose", [s], "st", perm=[1, 0, 2]) if s and layout else s or None for s in (h0_name, c0_name)]
    h0, c0 = states  # [num_directions, batch, hidden]
    ys, y_h, y_c = [], [], []
    linear_before_reset = int(_attr(node, "linear_before_reset", 0))
    input_forget = int(_attr(node, "input_forget", 0))
    for d, reverse in enumerate(dirs):
        f = acts[d * per_dir: (d + 1) * per_dir]
        wd, rd = w[d].astype(np.float32), r[d].astype(np.float32)  # [gates*H, in], [gates*H, H]
        wb = bias[d][: gates * hidden] if bias is not None else np.zeros(gates * hidden, np.float32)
        rb = bias[d][gates * hidden:] if bias is not None else np.zeros(gates * hidden, np.float32)

        def init_state(src, k):
            if src is None:
                return b.const(np.zeros((batch, hidden), np.float32), "zero")
            return b.take(src, k)

        h = init_state(h0, d)
        c = init_state(c0, d) if op == "LSTM" else None
        wx = [b.const(wd[g * hidden:(g + 1) * hidden].T.copy(), "W") for g in range(gates)]
        rh = [b.const(rd[g * hidden:(g + 1) * hidden].T.copy(), "R") for g in range(gates)]
        wbias = [b.const(wb[g * hidden:(g + 1) * hidden].astype(np.float32), "Wb") for g in range(gates)]
        rbias = [b.const(rb[g * hidden:(g + 1) * hidden].astype(np.float32), "Rb") for g in range(gates)]

        def act(name, v):
            return b.op(name, [v], name.lower())

        def clipped(v):
            return b.op("Clip", [v, b.const(np.array(-clip, np.float32)), b.const(np.array(clip, np.float32))],
                        "clip") if clip is not None else v

        def pre(g, xt, hs, with_r=True):  # Xt W_g^T + Wb_g (+ H R_g^T + Rb_g)
            v = b.op("Add", [b.op("MatMul", [xt, wx[g]], "xw"), wbias[g]], "xwb")
            if with_r:
                v = b.op("Add", [v, b.op("Add", [b.op("MatMul", [hs, rh[g]], "hr"), rbias[g]], "hrb")], "g")
            return v

        outs = [None] * seq
        for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
            xt = steps[t]
            if op == "RNN":
                h = act(f[0], clipped(pre(0, xt, h)))
            elif op == "GRU":
                z = act(f[0], clipped(pre(0, xt, h)))
                rr = act(f[0], clipped(pre(1, xt, h)))
                if linear_before_reset:
                    hr = b.op("Add", [b.op("MatMul", [h, rh[2]], "hr"), rbias[2]], "hrb")
                    cand = b.op("Add", [pre(2, xt, h, with_r=False), b.op("Mul", [rr, hr], "rh")], "cand")
                else:
                    rh_prev = b.op("Mul", [rr, h], "rh")
                    cand = b.op("Add", [pre(2, xt, h, with_r=False),
                                        b.op("Add", [b.op("MatMul", [rh_prev, rh[2]], "hr"), rbias[2]], "hrb")], "cand")
                hh = act(f[1], clipped(cand))
                one_minus_z = b.op("Sub", [b.const(np.array(1.0, np.float32)), z], "1mz")
                h = b.op("Add", [b.op("Mul", [one_minus_z, hh], "a"), b.op("Mul", [z, h], "b")], "h")
            else:  # LSTM: gates i, o, f, c
                def peephole(v, k, state):
                    if peep is None:
                        return v
                    p = b.const(peep[d][k * hidden:(k + 1) * hidden].astype(np.float32), "P")
                    return b.op("Add", [v, b.op("Mul", [p, state], "pc")], "pv")

                i_g = act(f[0], clipped(peephole(pre(0, xt, h), 0, c)))
                if input_forget:
                    f_g = b.op("Sub", [b.const(np.array(1.0, np.float32)), i_g], "f")
                else:
                    f_g = act(f[0], clipped(peephole(pre(2, xt, h), 2, c)))
                c_cand = act(f[1], clipped(pre(3, xt, h)))
                c = b.op("Add", [b.op("Mul", [f_g, c], "fc"), b.op("Mul", [i_g, c_cand], "ic")], "c")
                o_g = act(f[0], clipped(peephole(pre(1, xt, h), 1, c)))
                h = b.op("Mul", [o_g, act(f[2], c)], "h")
            outs[t] = h
        ys.append(b.op("Concat", [b.unsqueeze(o, 0) for o in outs], "yd", axis=0))
        y_h.append(b.unsqueeze(h, 0))
        if op == "LSTM":
            y_c.append(b.unsqueeze(c, 0))
    # Y: [seq, num_directions, batch, hidden] (layout 0) or [batch, seq, num_directions, hidden]
    y = b.op("Concat", [b.unsqueeze(yd, 1) for yd in ys], "y", axis=1)
    results = [y, b.op("Concat", y_h, "Y_h", axis=0)]
    if op == "LSTM":
        results.append(b.op("Concat", y_c, "Y_c", axis=0))
    if layout:
        results = [b.op("Transpose", [results[0]], "yl", perm=[2, 0, 1, 3])] + [
            b.op("Transpose", [s], "sl", perm=[1, 0, 2]) for s in results[1:]]
    for produced, want in zip(results, node.output):
        if want:
            b.nodes.append(helper.make_node("Identity", [produced], [want]))
    return b.nodes, b.inits


def expand_recurrent(model: onnx.ModelProto, shapes: dict[str, list[int]], strict: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` with every RNN, GRU and LSTM node unrolled; ``shapes`` gives the static shape
    of each recurrent node's input (from shape inference at the chosen input shapes). ``strict=False``
    leaves a node whose input shape is not known yet (it may be, once more is folded)."""
    if not any(n.op_type in RECURRENT_OPS for n in model.graph.node):
        return model
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:  # weights an exporter wrote as Constant nodes
        value = next((a.t for a in n.attribute if a.name == "value"), None) if n.op_type == "Constant" else None
        if value is not None:
            consts[n.output[0]] = numpy_helper.to_array(value)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, inits = [], []
    for i, node in enumerate(model.graph.node):
        x_shape = shapes.get(node.input[0]) if node.input else None
        if node.op_type in RECURRENT_OPS and (strict or (x_shape and all(d > 0 for d in x_shape))):
            new_nodes, new_inits = _expand(node, consts, shapes, i, opset)
            nodes += new_nodes
            inits += new_inits
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(inits)
    return out
