"""Loading a model: a zoo name or any ONNX file, made static so TVM's importer accepts it.

Real exported models carry symbolic dimensions and shape sub-graphs (Shape -> Gather -> Concat ->
Reshape) that TVM's ONNX importer rejects. We fix every input shape (from ``--input-shape`` or, for
a symbolic leading batch dimension, 1), then fold the shape computations with onnx-simplifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import onnx

from .cache import atomic_path, cache_dir
from .batchnorm import fold_batchnorm
from .errors import ExplorerError
from .qlinear import expand_integer_ops

_ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One graph input with its static shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A static, simplified ONNX model on disk, identified by the hash of its bytes."""

    name: str
    path: Path
    sha256: str
    inputs: tuple[InputSpec, ...]

    @property
    def key(self) -> str:
        """Short content hash: the model part of every cache key."""
        return self.sha256[:16]

    def load(self) -> onnx.ModelProto:
        """The prepared ONNX model."""
        return onnx.load(str(self.path))

    def sample_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded random inputs (standard normal for floats, small non-negative integers otherwise)."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            if spec.dtype.startswith("float"):
                out[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            elif spec.dtype == "bool":
                out[spec.name] = rng.integers(0, 2, spec.shape).astype(bool)
            else:
                out[spec.name] = rng.integers(0, 2, spec.shape).astype(spec.dtype)
        return out


#: Bump whenever preparation changes what it produces, so cached prepared models are not reused.
PREPARE_VERSION = "4"

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


def _resolve_source(model: str) -> tuple[str, Path]:
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
    return model, zoo.onnx_path(model, cache_dir() / "models")


def _static_shapes(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
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
                if d.HasField("dim_value") and d.dim_value != given:
                    raise ExplorerError(f"--input-shape {inp.name}:{','.join(map(str, shape))} contradicts the "
                                        f"model's static shape {[x.dim_value or x.dim_param for x in dims]}")
            shapes[inp.name] = shape
            continue
        shape = []
        for pos, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            elif pos == 0:
                shape.append(1)  # symbolic batch dimension
            else:
                label = d.dim_param or "?"
                raise ExplorerError(f"input {inp.name!r} has symbolic dimension {label!r} at position {pos}: "
                                    f"give its shape with --input-shape {inp.name}:D1,D2,...")
        shapes[inp.name] = tuple(shape)
    return shapes


def _simplify(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    import onnxsim

    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, value in zip(dims, shapes[inp.name]):
                d.Clear()
                d.dim_value = value
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


def prepare(model: str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> PreparedModel:
    """Load a zoo model or ONNX file and return it static and simplified, cached on disk by content.

    Raises :class:`ExplorerError` with a one-line message for anything a user can fix.
    """
    name, src = _resolve_source(model)
    raw = src.read_bytes()
    try:
        proto = onnx.load_from_string(raw)
    except Exception as err:
        raise ExplorerError(f"{src} is not a valid ONNX model: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    shapes = _static_shapes(proto, input_shapes or {})
    key = hashlib.sha256(raw + repr((sorted(shapes.items()), PREPARE_VERSION)).encode()).hexdigest()[:20]
    out = cache_dir() / "prepared" / f"{name}-{key}.onnx"
    if not out.exists():
        simplified = _simplify(fold_batchnorm(expand_integer_ops(proto)), shapes)
        with atomic_path(out) as tmp:
            onnx.save(simplified, str(tmp))
    data = out.read_bytes()
    prepared = onnx.load_from_string(data)
    inits = {i.name for i in prepared.graph.initializer}
    inputs = tuple(
        InputSpec(i.name, tuple(d.dim_value for d in i.type.tensor_type.shape.dim),
                  _ONNX_TO_NUMPY.get(i.type.tensor_type.elem_type, "float32"))
        for i in prepared.graph.input if i.name not in inits
    )
    return PreparedModel(name=name, path=out, sha256=hashlib.sha256(data).hexdigest(), inputs=inputs)
