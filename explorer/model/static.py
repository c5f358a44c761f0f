"""Making a model static: every input shape fixed, the shape computations folded, recurrent layers
unrolled, and the result checked against onnxruntime on a sample input.

Real exported models carry symbolic dimensions and shape sub-graphs (Shape -> Gather -> Concat ->
Reshape) that TVM's ONNX importer rejects. We fix every input shape (from ``--input-shape`` or, for
a symbolic leading batch dimension, 1), then fold the shape computations with onnx-simplifier
(:func:`make_static` says what it falls back to where that breaks the model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from explorer.core.errors import ExplorerError
from explorer.core.prepared import PreparedModel, input_specs
from explorer.model.control_flow import fold_constant_if
from explorer.model.recurrent import RECURRENT_OPS, expand_recurrent
from explorer.model.shape_folding import fold_shape_computations


def static_shapes(model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]],
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


def with_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
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


def make_static(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                runnable: bool = True) -> tuple[onnx.ModelProto, str]:
    """The model made static, by the first preparation whose result onnxruntime runs and that gives the
    exported model's outputs on a sample input (where onnxruntime runs the exported model: it refuses
    a batch-first LSTM that preparation unrolls):

    - ``simplified``: shape computations folded by onnx-simplifier (with Ifs a frozen input decides
      folded and recurrent layers unrolled);
    - ``shapes folded by onnxruntime``: the shape computations evaluated by onnxruntime instead
      (:mod:`explorer.model.shape_folding`), where onnx-simplifier's shape inference broke the model;
    - ``shapes only``: input shapes fixed and inferred, nothing folded.

    A model that is not ``runnable`` (its weights are inputs, of any size: nothing may draw them) is
    simplified without running it (``simplified, not run``).
    """
    fixed = with_shapes(model, shapes)
    if not runnable:
        return _simplify(fixed, shapes), "simplified, not run"
    feed = PreparedModel("", Path(), "", input_specs(fixed)).sample_inputs(0)
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
