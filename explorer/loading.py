"""Loading a model: a zoo name or any ONNX file, made static so TVM's importer accepts it.

Real exported models carry symbolic dimensions and shape sub-graphs (Shape -> Gather -> Concat ->
Reshape) that TVM's ONNX importer rejects. We fix every input shape (from ``--input-shape`` or, for
a symbolic leading batch dimension, 1), then fold the shape computations with onnx-simplifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx

from .cache import atomic_path, cache_dir, write_atomic
from .batchnorm import fold_batchnorm
from .control_flow import fold_constant_if
from .errors import ExplorerError
from . import phases
from .phases import Phase
from .qlinear import expand_integer_ops
from .recurrent import RECURRENT_OPS, expand_recurrent
from .shape_folding import fold_shape_computations

_ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input with its static shape, and what sample values suit it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    high: int = 2              # integer samples lie in [0, high): a table's rows for ids a Gather indexes
    fill: int | None = None    # every sample element this value (masks: 1, booleans: True)


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A static, simplified ONNX model on disk, identified by the hash of its bytes."""

    name: str
    path: Path
    sha256: str
    inputs: tuple[InputSpec, ...]
    preparation: str = "simplified"  # "shapes folded by onnxruntime" or "shapes only": see _prepared
    phase: str = ""  # a decoder's phase (explorer.phases.Phase.label: "prefill:128", "decode:128"); "" otherwise
    batch: int = 1  # the first input's first dimension
    tokens: int = 0  # tokens one inference of a decoder's phase produces, over the batch (0: not a decoder)
    kv_cache_bytes: int = 0  # bytes of KV cache a decode step reads (the past inputs)
    kv_cache_dtype: str = ""  # the dtype the cache is kept in between steps ("" when not a decoder's phase)

    @property
    def key(self) -> str:
        """Short content hash: the model part of every cache key."""
        return self.sha256[:16]

    def load(self) -> onnx.ModelProto:
        """The prepared ONNX model."""
        return onnx.load(str(self.path))

    def sample_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded inputs: standard normal floats; integers in ``[0, high)`` (token ids within the
        table they index); masks and booleans all set."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            if spec.fill is not None:
                out[spec.name] = np.full(spec.shape, spec.fill).astype(spec.dtype)
            elif spec.dtype.startswith("float"):
                out[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            else:
                out[spec.name] = rng.integers(0, spec.high, spec.shape).astype(spec.dtype)
        return out


def _input_specs(model: onnx.ModelProto) -> tuple[InputSpec, ...]:
    inits = {i.name: i for i in model.graph.initializer}
    tables: dict[str, int] = {}  # input -> rows of the table a Gather indexes with it
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[0] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = list(inits[node.input[0]].dims)
            if dims:
                rows = dims[axis % len(dims)]
                tables[node.input[1]] = min(tables.get(node.input[1], rows), rows)
    specs = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        dtype = _ONNX_TO_NUMPY.get(i.type.tensor_type.elem_type, "float32")
        shape = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        fill = 1 if dtype == "bool" or (not dtype.startswith("float") and "mask" in i.name.lower()) else None
        specs.append(InputSpec(i.name, shape, dtype, high=max(tables.get(i.name, 2), 1), fill=fill))
    return tuple(specs)


#: Bump whenever preparation changes what it produces, so cached prepared models are not reused.
PREPARE_VERSION = "6"

_SHAPE_ARG = re.compile(r"^(?P<name>[^:]+):(?P<dims>\d+(,\d+)*)$")


def parse_input_shapes(args: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:D1,D2,...`` strings into a name -> shape map."""
    shapes: dict[str, tuple[int, ...]] = {}
    for arg in args or []:
        m = _SHAPE_ARG.match(arg.strip())
        if not m:
            raise ExplorerError(f"bad --input-shape {arg!r}: expected NAME:D1,D2,... (e.g. images:1,3,320,320)")
        shapes[m["name"]] = tuple(int(d) for d in m["dims"].split(","))
    return shapes


_VALUE_ARG = re.compile(r"^(?P<name>[^=]+)=(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)$")


def parse_input_values(args: list[str] | None) -> dict[str, float]:
    """Parse ``NAME=VALUE`` strings (``--input-value``) into a name -> value map."""
    values: dict[str, float] = {}
    for arg in args or []:
        m = _VALUE_ARG.match(arg.strip())
        if not m:
            raise ExplorerError(f"bad --input-value {arg!r}: expected NAME=NUMBER (e.g. sr=16000)")
        values[m["name"]] = float(m["value"])
    return values


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
        dtype = _ONNX_TO_NUMPY.get(inp.type.tensor_type.elem_type, "float32")
        model.graph.initializer.append(numpy_helper.from_array(
            np.full([d.dim_value for d in dims], value).astype(dtype), name))
        model.graph.input.remove(inp)


def instance_name(name: str, phase: Phase | None = None, batch: int | None = None,
                  kv_cache_dtype: str = "auto") -> str:
    """The name tables give a model prepared for ``phase`` at ``batch`` with its cache in
    ``kv_cache_dtype``: ``gpt2@decode128@b8``, ``gpt2@decode128@kv-float16``."""
    kv = f"@kv-{kv_cache_dtype}" if phase and kv_cache_dtype != "auto" else ""
    return name + (phase.suffix if phase else "") + kv + (f"@b{batch}" if batch is not None else "")


def model_name(model: str) -> str:
    """The name a model goes by in tables: a file's stem, or the zoo name."""
    path = Path(model)
    return path.stem if path.suffix == ".onnx" or path.exists() else model


def _resolve_source(model: str, batch: int | None = None) -> tuple[str, Path]:
    path = Path(model)
    if path.suffix == ".onnx" or path.exists():
        if not path.exists():
            raise ExplorerError(f"model file {model!r} does not exist")
        return path.stem, path
    import models as zoo

    try:
        zoo.get_model(model)
    except KeyError:
        known = ", ".join(m.name for m in zoo.list_models())
        raise ExplorerError(f"{model!r} is neither an ONNX file nor a zoo model; zoo models: {known}") from None
    return model, zoo.onnx_path(model, cache_dir() / "models", batch=batch)


def _static_shapes(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]],
                   batch: int = 1) -> dict[str, tuple[int, ...]]:
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    names = {i.name for i in graph_inputs}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ExplorerError(f"--input-shape names {unknown}, but the model's inputs are {sorted(names)}")
    shapes = {}
    for inp in graph_inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in overrides:
            shape = overrides[inp.name]
            if len(shape) != len(dims):
                raise ExplorerError(f"--input-shape {inp.name} has {len(shape)} dimensions, the model's input has {len(dims)}")
            for d, given in zip(dims, shape):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != given:
                    raise ExplorerError(f"--input-shape {inp.name}:{','.join(map(str, shape))} contradicts the "
                                        f"model's static shape {[x.dim_value if x.dim_value > 0 else x.dim_param or '?' for x in dims]}")
            shapes[inp.name] = shape
            continue
        shape = []
        for pos, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value >= 0:  # some exporters write -1 for a symbolic one
                shape.append(d.dim_value)
            elif pos == 0:
                shape.append(batch)  # symbolic batch dimension
            else:
                label = d.dim_param or "?"
                raise ExplorerError(f"input {inp.name!r} has symbolic dimension {label!r} at position {pos}: "
                                    f"give its shape with --input-shape {inp.name}:D1,D2,...")
        shapes[inp.name] = tuple(shape)
    return shapes


def _with_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for inp in out.graph.input:
        if inp.name in shapes:
            for d, value in zip(inp.type.tensor_type.shape.dim, shapes[inp.name]):
                d.Clear()
                d.dim_value = value
    for vi in [*out.graph.output, *out.graph.value_info]:  # a -1 an exporter wrote means "unknown"
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value < 0:
                d.Clear()
    return out


def _simplify(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    import onnxsim

    try:
        # Constant folding only: onnxsim's optimizer rewrites graphs (e.g. into a fused Attention op that
        # TVM cannot import, or folds BatchNorm into Conv); graph rewrites are the strategies' job.
        simplified, ok = onnxsim.simplify(model, overwrite_input_shapes={k: list(v) for k, v in shapes.items()},
                                          perform_optimization=False)
    except Exception as err:  # onnxsim raises plain RuntimeErrors from C++
        raise ExplorerError(f"could not make the model static: onnx-simplifier failed: {str(err).splitlines()[0]}") from None
    if not ok:
        raise ExplorerError("could not make the model static: onnx-simplifier's check of the simplified model failed")
    return simplified


def _unrolled(model: onnx.ModelProto, strict: bool = False) -> onnx.ModelProto:
    """``model`` with its RNN/GRU/LSTM nodes unrolled at the shapes inference gives their inputs (those
    whose input shape is not known yet stay, unless ``strict``)."""
    if not any(n.op_type in RECURRENT_OPS for n in model.graph.node):
        return model
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    known = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
             for vi in [*inferred.graph.input, *inferred.graph.value_info]}
    return expand_recurrent(model, known, strict)


def _breaks(candidate: onnx.ModelProto, feed: dict[str, np.ndarray], expected: list[np.ndarray] | None) -> str:
    """'' where onnxruntime runs ``candidate`` on ``feed`` and gives ``expected`` (where known), else
    what went wrong."""
    got, reason = _ort_run(candidate, feed)
    if reason or expected is None:
        return reason
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.shape != e.shape or not np.allclose(g, e, rtol=1e-3, atol=1e-4, equal_nan=True):
            return f"output {i} differs from the exported model's"
    return ""


def _ort_outputs(blob: bytes, feed: dict[str, np.ndarray], conn) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        conn.send((sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()}), ""))
    except Exception as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
        conn.send((None, lines[0][:300]))


def _ort_run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> tuple[list[np.ndarray] | None, str]:
    """onnxruntime's outputs of ``model`` on ``feed`` and '', or None and why it could not run.

    It runs in a forked child: onnxruntime crashes outright on some valid models (silero-vad before
    its frozen Ifs are folded), and a crash must cost this check, not the process."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_ort_outputs, args=(model.SerializeToString(), feed, child), daemon=True)
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = (None, "onnxruntime crashed on it")
    proc.join()
    return result


def _prepared(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> tuple[onnx.ModelProto, str]:
    """The model made static, by the first preparation whose result onnxruntime runs and that gives the
    exported model's outputs on a sample input (where onnxruntime runs the exported model: it refuses
    a batch-first LSTM that preparation unrolls):

    - ``simplified``: shape computations folded by onnx-simplifier (with Ifs a frozen input decides
      folded and recurrent layers unrolled);
    - ``shapes folded by onnxruntime``: the shape computations evaluated by onnxruntime instead
      (:mod:`explorer.shape_folding`), where onnx-simplifier's shape inference broke the model;
    - ``shapes only``: input shapes fixed and inferred, nothing folded.
    """
    fixed = _with_shapes(model, shapes)
    feed = PreparedModel("", Path(), "", _input_specs(fixed)).sample_inputs(0)
    expected, refused = _ort_run(fixed, feed)

    def folded_and_unrolled(m):  # weights computed from constants are constants once folded
        m = _simplify(m, shapes)
        unrolled = _unrolled(m)
        return m if unrolled is m else _simplify(unrolled, shapes)

    simplified = folded_and_unrolled(fixed)
    for _ in range(8):  # a frozen input decided an If: fold (and unroll) what the taken branch holds too
        inlined, folded = fold_constant_if(simplified)
        if not folded:
            break
        simplified = folded_and_unrolled(inlined)
    simplified = _unrolled(simplified, strict=True)  # any left: refused, saying why
    if not _breaks(simplified, feed, expected):
        return simplified, "simplified"
    try:
        folded = _unrolled(onnx.shape_inference.infer_shapes(fold_shape_computations(fixed, feed)), strict=True)
    except ExplorerError:
        folded = None
    if folded is not None and not _breaks(folded, feed, expected):
        return folded, "shapes folded by onnxruntime"
    if refused:
        raise ExplorerError(f"onnxruntime cannot run the model at the chosen input shapes: {refused}")
    return onnx.shape_inference.infer_shapes(fixed), "shapes only"


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
    """Load a zoo model or ONNX file, check it (:mod:`explorer.validation`) and return it static and
    simplified, cached on disk by content. ``max_tensor_bytes`` limits every tensor's size (default: a
    quarter of this machine's memory); ``input_values`` freezes inputs to constants (``--input-value``).
    A decoder is prepared for one ``phase`` (:mod:`explorer.phases`; its name gets the phase's suffix);
    ``batch`` sets every input's symbolic first dimension (default 1; its name gets ``@bN``);
    ``kv_cache_dtype`` keeps a phase's cache in that dtype (:func:`explorer.phases.with_kv_cache_dtype`).

    Raises :class:`ExplorerError` with a one-line message for anything a user can fix.
    """
    from . import validation

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
    shapes = _static_shapes(proto, overrides, batch or 1)
    validation.check_declared_sizes(proto, shapes, limit)
    content = proto.SerializeToString() if input_values or phase is not None or any(
        i.data_location == onnx.TensorProto.EXTERNAL or i.external_data for i in proto.graph.initializer) else raw
    frozen = sorted((input_values or {}).items())
    key = hashlib.sha256(content + repr((sorted(shapes.items()), frozen, PREPARE_VERSION)).encode()).hexdigest()[:20]
    out = cache_dir() / "prepared" / f"{name}-{key}.onnx"
    preparation = "simplified"
    if not out.exists():
        expanded = expand_integer_ops(proto)
        validation.check_operators(expanded)
        validation.check_graph(_with_shapes(proto, shapes))
        expanded = fold_batchnorm(expanded)
        simplified, preparation = _prepared(expanded, shapes)
        validation.check_no_if_left(simplified)
        validation.check_inferred_sizes(simplified, limit)
        with atomic_path(out) as tmp:
            onnx.save(simplified, str(tmp))
        write_atomic(out.with_suffix(".json"), json.dumps({"preparation": preparation}))
    elif out.with_suffix(".json").exists():
        preparation = json.loads(out.with_suffix(".json").read_text())["preparation"]
    data = out.read_bytes()
    prepared = onnx.load_from_string(data)
    specs = _input_specs(prepared)
    first = specs[0].shape if specs and specs[0].shape else (1,)
    return PreparedModel(name=name, path=out, sha256=hashlib.sha256(data).hexdigest(), inputs=specs,
                         preparation=preparation, phase=phase.label if phase else "", batch=int(first[0]),
                         tokens=phase.new_tokens(int(first[0])) if phase else 0, kv_cache_bytes=kv_bytes,
                         kv_cache_dtype=kv_dtype)


def _check_batch(model: onnx.ModelProto, batch: int, where: str, overrides: dict) -> None:
    """``--batch`` sets a symbolic first dimension; one a file fixes to another value is refused."""
    inits = {i.name for i in model.graph.initializer}
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
