"""Preparing a model: a zoo name or any ONNX file, checked, set to its phase and batch, and made static
(:mod:`explorer.model.static`) so TVM's importer accepts it; cached on disk by content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from explorer.core.errors import ExplorerError
from explorer.core.prepared import ONNX_TO_NUMPY, PreparedModel, input_specs
from explorer.model import phases, validation
from explorer.model.arguments import instance_name
from explorer.model.batchnorm import fold_batchnorm
from explorer.model.integer_ops import expand_integer_ops
from explorer.model.phases import Phase
from explorer.model.static import make_static, static_shapes, with_shapes
from explorer.store.cache import atomic_path, cache_dir, touch, write_atomic

#: Bump whenever preparation changes what it produces, so cached prepared models are not reused.
PREPARE_VERSION = "6"

def _freeze_inputs(model: onnx.ModelProto, values: dict[str, float]) -> None:
    """Turn each input named in ``values`` into a constant of that value (in place), so shape folding
    can evaluate what depends on it (an ``If`` on a sample rate keeps one branch)."""
    from onnx import numpy_helper

    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    unknown = sorted(set(values) - set(inputs))
    if unknown:
        raise ExplorerError(f"--input-value names {unknown}, but the model's inputs are {sorted(inputs)}")
    for name, value in values.items():
        inp = inputs[name]
        dims = inp.type.tensor_type.shape.dim
        if any(not (d.HasField("dim_value") and d.dim_value > 0) for d in dims):
            raise ExplorerError(f"--input-value {name}: the input's shape must be static to freeze it")
        dtype = ONNX_TO_NUMPY.get(inp.type.tensor_type.elem_type, "float32")
        model.graph.initializer.append(numpy_helper.from_array(
            np.full([d.dim_value for d in dims], value).astype(dtype), name))
        model.graph.input.remove(inp)


def _resolve_source(model: str, batch: int | None = None) -> tuple[str, Path]:
    import models as zoo

    base, devices = zoo.split_tensor_parallel(model)
    path = Path(base)
    if path.suffix == ".json":
        from models.hf_configs import ConfigError, load_config

        try:
            return zoo.tensor_parallel_name(load_config(path).name, devices), zoo.onnx_path(model, cache_dir() / "models")
        except (ConfigError, ValueError) as err:
            raise ExplorerError(str(err)) from None
    if devices > 1 and (path.suffix == ".onnx" or path.exists()):
        raise ExplorerError(f"{model}: tensor parallelism (@tp{devices}, --devices) splits zoo decoders and "
                            "Hugging Face configs, not ONNX files")
    if path.suffix == ".onnx" or path.exists():
        if not path.exists():
            raise ExplorerError(f"model file {model!r} does not exist")
        return path.stem, path
    try:
        zoo.get_model(model)
    except KeyError:
        known = ", ".join(m.name for m in zoo.list_models())
        raise ExplorerError(f"{model!r} is neither an ONNX file nor a zoo model; zoo models: {known}") from None
    except ValueError as err:
        raise ExplorerError(str(err)) from None
    return model, zoo.onnx_path(model, cache_dir() / "models", batch=batch)


def _names_are_text(graph: onnx.GraphProto) -> bool:
    """Whether every operator, node and tensor name of ``graph`` decoded as text (protobuf hands back
    bytes for a string field that is not UTF-8)."""
    names = [*(v.name for v in [*graph.input, *graph.output, *graph.initializer, *graph.value_info])]
    for n in graph.node:
        names += [n.op_type, n.domain, n.name, *n.input, *n.output, *(a.name for a in n.attribute)]
    return all(isinstance(s, str) for s in names)


def prepare(model: str, input_shapes: dict[str, tuple[int, ...]] | None = None,
            max_tensor_bytes: int | None = None, input_values: dict[str, float] | None = None,
            phase: Phase | None = None, batch: int | None = None, kv_cache_dtype: str = "auto") -> PreparedModel:
    """Load a zoo model or ONNX file, check it (:mod:`explorer.model.validation`) and return it static and
    simplified, cached on disk by content. ``max_tensor_bytes`` limits every tensor's size (default: a
    quarter of this machine's memory); ``input_values`` freezes inputs to constants (``--input-value``).
    A decoder is prepared for one ``phase`` (:mod:`explorer.model.phases`; its name gets the phase's suffix);
    ``batch`` sets every input's symbolic first dimension (default 1; its name gets ``@bN``);
    ``kv_cache_dtype`` keeps a phase's cache in that dtype (:func:`explorer.model.phases.with_kv_cache_dtype`).

    Raises :class:`ExplorerError` with a one-line message for anything a user can fix.
    """
    limit = max_tensor_bytes or validation.default_max_tensor_bytes()
    name, src = _resolve_source(model, batch)
    raw = src.read_bytes()
    try:
        proto = onnx.load_from_string(raw)
    except Exception as err:
        raise ExplorerError(f"{src.name} is not a valid ONNX model: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                            "; give an .onnx file as an exporter wrote it") from None
    if not _names_are_text(proto.graph):
        raise ExplorerError(f"{src.name} is not a valid ONNX model: a name in its graph is not UTF-8 text; "
                            "give an .onnx file as an exporter wrote it")
    if not proto.graph.node:
        raise ExplorerError(f"{src.name} has an empty graph: there is nothing to compile")
    if not proto.graph.output:
        raise ExplorerError(f"{src.name}'s graph has no outputs: it computes nothing to compile")
    validation.load_external_data(proto, src.parent)
    if input_values:
        _freeze_inputs(proto, input_values)
    overrides, kv_bytes, kv_dtype = dict(input_shapes or {}), 0, ""
    if phase is not None:
        at_phase = phases.phase_shapes(proto, phase, batch or 1)
        cached = phases.with_kv_cache_dtype(proto, kv_cache_dtype)
        kv_bytes, kv_dtype = phases.kv_cache_bytes(cached, at_phase), phases.kv_cache_dtype(cached)
        if phase.kind == "prefill":  # the past inputs go first: their casts would feed neither a Concat nor a Shape
            proto = phases.with_kv_cache_dtype(phases.drop_past(proto, at_phase), kv_cache_dtype)
            at_phase = {k: v for k, v in at_phase.items() if not phases.PAST.match(k)}
        else:
            proto = cached
        overrides = {**at_phase, **overrides}
    elif _is_decoder_without_shapes(proto, overrides):
        raise ExplorerError(f"{name} is a decoder (KV cache inputs): sweep it with --phase prefill:P,decode:L, "
                            "or give every input's shape with --input-shape")
    if batch is not None:
        _check_batch(proto, batch, src.name, overrides)
    name = instance_name(name, phase, batch, kv_cache_dtype)
    shapes = static_shapes(proto, overrides, batch or 1)
    validation.check_declared_sizes(proto, shapes, limit, frozenset(phases.weight_inputs(proto)))
    content = proto.SerializeToString() if input_values or phase is not None or any(
        i.data_location == onnx.TensorProto.EXTERNAL or i.external_data for i in proto.graph.initializer) else raw
    frozen = sorted((input_values or {}).items())
    key = hashlib.sha256(content + repr((sorted(shapes.items()), frozen, PREPARE_VERSION)).encode()).hexdigest()[:20]
    out = cache_dir() / "prepared" / f"{name}-{key}.onnx"
    preparation = "simplified"
    if not out.exists():
        expanded = expand_integer_ops(proto)
        validation.check_operators(expanded)
        validation.check_graph(with_shapes(proto, shapes))
        expanded = fold_batchnorm(expanded)
        simplified, preparation = make_static(expanded, shapes, runnable=not phases.weight_inputs(proto))
        validation.check_no_if_left(simplified)
        validation.check_inferred_sizes(simplified, limit)
        with atomic_path(out) as tmp:
            onnx.save(simplified, str(tmp))
        write_atomic(out.with_suffix(".json"), json.dumps({"preparation": preparation}))
    else:
        touch(out, out.with_suffix(".json"))
        if out.with_suffix(".json").exists():
            preparation = json.loads(out.with_suffix(".json").read_text())["preparation"]
    data = out.read_bytes()
    prepared = onnx.load_from_string(data)
    specs = input_specs(prepared)
    first = specs[0].shape if specs and specs[0].shape else (1,)
    return PreparedModel(name=name, path=out, sha256=hashlib.sha256(data).hexdigest(), inputs=specs,
                         preparation=preparation, phase=phase.label if phase else "", batch=int(first[0]),
                         tokens=phase.new_tokens(int(first[0])) if phase else 0, kv_cache_bytes=kv_bytes,
                         kv_cache_dtype=kv_dtype)


def _check_batch(model: onnx.ModelProto, batch: int, where: str, overrides: dict) -> None:
    """``--batch`` sets a symbolic first dimension; one a file fixes to another value is refused."""
    inits = {i.name for i in model.graph.initializer} | phases.weight_inputs(model)
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in inits or inp.name in overrides or not dims:
            continue
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0 and dims[0].dim_value != batch:
            raise ExplorerError(f"--batch {batch}: input {inp.name!r} of {where} has a static batch of "
                                f"{dims[0].dim_value}; only a symbolic first dimension can be set (export the model "
                                "with a dynamic batch axis)")


def _is_decoder_without_shapes(model: onnx.ModelProto, overrides: dict) -> bool:
    return phases.is_decoder(model) and not {i.name for i in model.graph.input} <= set(overrides) | {
        i.name for i in model.graph.initializer}
