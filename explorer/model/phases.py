"""Phases of a decoder's inference (``--phase prefill:P,decode:L``), each prepared as its own static model.

A decoder is a model whose inputs are named as exporters name them: ``input_ids`` ``[batch, sequence]``,
``attention_mask`` ``[batch, past + sequence]`` and ``past_key_values.N.key`` / ``.value`` ``[batch,
kv_heads, past, head_dim]`` (outputs ``present.N.*``). A phase fixes those shapes:

- ``prefill:P`` runs a prompt of P tokens with no cache: the past inputs are removed from the graph
  (each ``Concat`` that appended to one keeps only the new part; each ``Shape`` of one becomes the
  constant shape of an empty cache), so the prepared model has no zero-length tensors;
- ``decode:L`` runs one new token against a cache of L tokens.

The cache is kept between steps in the dtype the model gives it, or in ``float16`` with
``--kv-cache-dtype float16`` (:func:`with_kv_cache_dtype`, as vLLM's ``kv_cache_dtype`` and MLC-LLM's
half-precision caches keep it): the past inputs are then half precision, cast to the model's dtype where
they enter, and the presents are cast to half precision where they leave.

Each phase then goes through preparation like any model (:func:`explorer.model.prepare.prepare`); its name in
tables is the model's with ``@prefill128`` or ``@decode128`` appended.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from explorer.core.errors import ExplorerError
from models.decoders import PAST_INPUT, layer_repeats, weight_inputs

PAST = PAST_INPUT
PRESENT = re.compile(r"^present\.(\d+)\.(key|value)$")
#: ``--kv-cache-dtype`` values: ``auto`` keeps the model's own dtype (vLLM's default of the same name).
KV_CACHE_DTYPES = {"auto": None, "float16": onnx.TensorProto.FLOAT16, "float32": onnx.TensorProto.FLOAT}
_PHASE = re.compile(r"^(?P<kind>prefill|decode):(?P<tokens>\d+)$")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase: ``prefill`` of a ``tokens``-long prompt, or ``decode`` against a ``tokens``-long cache."""

    kind: str
    tokens: int

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.tokens}"

    @property
    def suffix(self) -> str:
        """What the phase adds to a model's name in tables."""
        return f"@{self.kind}{self.tokens}"

    def new_tokens(self, batch: int) -> int:
        """Tokens one inference of this phase produces, over the batch."""
        return batch * (self.tokens if self.kind == "prefill" else 1)

    def past_tokens(self) -> int:
        return 0 if self.kind == "prefill" else self.tokens


def parse_phases(text: str | None) -> list[Phase]:
    """``prefill:128,decode:128`` as phases; :class:`ExplorerError` on anything else."""
    phases = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = _PHASE.match(part.strip())
        if not m or int(m["tokens"]) < 1:
            raise ExplorerError(f"bad --phase {part.strip()!r}: expected prefill:P or decode:L with P, L at least 1 "
                                "(e.g. prefill:128,decode:128)")
        phases.append(Phase(m["kind"], int(m["tokens"])))
    return list(dict.fromkeys(phases))


def is_decoder(model: onnx.ModelProto) -> bool:
    """Whether the model's inputs are a decoder's: ``input_ids`` and at least one past key/value."""
    names = {i.name for i in model.graph.input}
    return "input_ids" in names and any(PAST.match(n) for n in names)


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def phase_shapes(model: onnx.ModelProto, phase: Phase, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Static shapes of a decoder's inputs in ``phase`` at ``batch`` (past inputs included: for prefill
    with a past length of 0, which :func:`drop_past` then removes)."""
    if not is_decoder(model):
        raise ExplorerError(f"--phase needs a decoder (inputs input_ids and past_key_values.N.key|value); "
                            f"this model's inputs are {', '.join(i.name for i in model.graph.input)}")
    new = phase.tokens if phase.kind == "prefill" else 1
    past = phase.past_tokens()
    inits = {i.name for i in model.graph.initializer} | weight_inputs(model)
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = _dims(inp)
        if inp.name in ("input_ids", "position_ids"):
            shapes[inp.name] = (batch, new)
        elif inp.name == "attention_mask":
            shapes[inp.name] = (batch, past + new)
        elif PAST.match(inp.name):
            if len(dims) != 4 or dims[1] is None or dims[3] is None:
                raise ExplorerError(f"{inp.name} must be [batch, kv_heads, past, head_dim] with kv_heads and head_dim "
                                    f"static; it is {[d or '?' for d in dims]}")
            shapes[inp.name] = (batch, dims[1], past, dims[3])
        else:
            raise ExplorerError(f"--phase does not know how to shape the decoder's input {inp.name!r} "
                                "(known: input_ids, attention_mask, position_ids, past_key_values.N.key|value)")
    return shapes


def drop_past(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The prefill graph: every past input removed (its ``Concat`` keeps the other inputs, its ``Shape``
    becomes a constant of ``shapes[name]``); :class:`ExplorerError` if a past input feeds anything else."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    past = {i.name for i in g.input if PAST.match(i.name)}
    nodes = []
    for node in g.node:
        used = [x for x in node.input if x in past]
        if not used:
            nodes.append(node)
        elif node.op_type == "Concat":
            rest = [x for x in node.input if x not in past]
            if not rest:
                raise ExplorerError(f"prefill: {node.name or node.op_type} concatenates past inputs only")
            nodes.append(helper.make_node("Identity", rest, list(node.output), name=node.name) if len(rest) == 1 else
                         helper.make_node("Concat", rest, list(node.output), name=node.name,
                                          axis=next(a.i for a in node.attribute if a.name == "axis")))
        elif node.op_type == "Shape":
            attrs = {a.name: a.i for a in node.attribute}
            shape = np.array(shapes[used[0]], np.int64)[attrs.get("start", 0):attrs.get("end", None)]
            nodes.append(helper.make_node("Constant", [], list(node.output), name=node.name,
                                          value=numpy_helper.from_array(shape, f"{node.output[0]}.value")))
        else:
            raise ExplorerError(f"prefill cannot drop the past inputs: {used[0]} feeds a {node.op_type} "
                                f"({node.name or 'unnamed'}), not a Concat or Shape")
    del g.node[:]
    g.node.extend(nodes)
    kept = [i for i in g.input if i.name not in past]
    del g.input[:]
    g.input.extend(kept)
    return model


def with_kv_cache_dtype(model: onnx.ModelProto, dtype: str) -> onnx.ModelProto:
    """The decoder with its KV cache kept in ``dtype`` between steps (a key of :data:`KV_CACHE_DTYPES`).

    Each floating-point past input becomes ``dtype``. Where it is appended to (a ``Concat`` with the
    step's new keys or values), the new part is cast to ``dtype`` instead, so the cache is extended in
    ``dtype`` and a present that is that ``Concat`` (directly or through an ``Identity``) leaves as it is;
    the model's layers read the extended cache through a ``Cast`` back to their own dtype. Any other
    use of a past input reads it through such a ``Cast``, and any other present is cast to ``dtype``
    where it leaves. ``auto``, or a cache already in ``dtype``, gives the model unchanged."""
    if dtype not in KV_CACHE_DTYPES:
        raise ExplorerError(f"bad --kv-cache-dtype {dtype!r}: expected one of {', '.join(KV_CACHE_DTYPES)}")
    want = KV_CACHE_DTYPES[dtype]
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    if want is None:
        return model
    own = {i.name: i.type.tensor_type.elem_type for i in g.input
           if PAST.match(i.name) and i.type.tensor_type.elem_type in floats and i.type.tensor_type.elem_type != want}
    nodes, in_cache = [], {}  # in_cache: a tensor of the model's dtype -> the same values kept in ``dtype``
    for node in g.node:
        pasts = [x for x in node.input if x in own]
        if node.op_type == "Concat" and pasts:
            kind = own[pasts[0]]
            parts = []
            for x in node.input:
                if x in own:
                    parts.append(x)
                else:
                    parts.append(f"{x}.{dtype}")
                    nodes.append(helper.make_node("Cast", [x], [parts[-1]], to=want, name=f"{x}.kv_cache_cast"))
            kept = f"{node.output[0]}.{dtype}"
            nodes.append(helper.make_node("Concat", parts, [kept], name=node.name, axis=next(a.i for a in node.attribute if a.name == "axis")))
            nodes.append(helper.make_node("Cast", [kept], [node.output[0]], to=kind, name=f"{kept}.read"))
            in_cache[node.output[0]] = kept
            continue
        if node.op_type == "Identity" and node.input[0] in in_cache:
            in_cache[node.output[0]] = in_cache[node.input[0]]
        for x in pasts:
            if node.op_type != "Shape":
                read = f"{x}.read"
                if all(n.output[0] != read for n in nodes):
                    nodes.append(helper.make_node("Cast", [x], [read], to=own[x], name=f"{x}.kv_cache_cast"))
                node.input[:] = [read if i == x else i for i in node.input]
        nodes.append(node)
    for out in g.output:
        if not PRESENT.match(out.name) or out.type.tensor_type.elem_type not in floats \
                or out.type.tensor_type.elem_type == want:
            continue
        inner = f"{out.name}.model_dtype"
        for node in nodes:
            node.output[:] = [inner if x == out.name else x for x in node.output]
        source = next((n.input[0] for n in nodes if n.output[0] == inner and n.op_type == "Identity"), inner)
        if source in in_cache:
            nodes.append(helper.make_node("Identity", [in_cache[source]], [out.name], name=f"{out.name}.kv_cache"))
        else:
            nodes.append(helper.make_node("Cast", [inner], [out.name], to=want, name=f"{out.name}.kv_cache_cast"))
        out.type.tensor_type.elem_type = want
    for inp in g.input:
        if inp.name in own:
            inp.type.tensor_type.elem_type = want
    del g.node[:]
    g.node.extend(nodes)
    return model


def kv_cache_dtype(model: onnx.ModelProto) -> str:
    """The dtype of a decoder's cache: its first past input's, else its first present output's."""
    for value in (*model.graph.input, *model.graph.output):
        if PAST.match(value.name) or PRESENT.match(value.name):
            return str(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    return ""


def kv_cache_bytes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Bytes of the KV cache one inference reads: the past inputs at ``shapes`` (0 for prefill), each
    layer's counted for every layer it stands for (:func:`layer_repeats`)."""
    elem = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    repeated = layer_repeats(model)
    total = 0
    for name, shape in shapes.items():
        m = PAST.match(name)
        if m:
            count = repeated[1] if repeated and int(m[1]) in repeated[0] else 1
            total += count * int(np.prod(shape)) * helper.tensor_dtype_to_np_dtype(elem[name]).itemsize
    return total
