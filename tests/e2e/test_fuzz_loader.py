"""Fuzzing the loader with mutated models: every input ends in a prepared model or one clear error.

Each example is a small model mutated at the byte level (flips, cuts, insertions) or the graph level
(dimensions, operator types, inputs, initializer data), prepared in a forked child process under a
time limit, so a crash or a hang inside onnx, onnx-simplifier or onnxruntime is caught as a failure
instead of taking pytest down. Marked ``fuzz``: not in the default run; ``.ci/run`` runs it as a step
of its own for ``FUZZ_EXAMPLES`` inputs (default 300), and then ``tests/e2e/fuzz_atheris.py``
(coverage-guided, libFuzzer) for ``ATHERIS_SECONDS`` (default 60) where atheris is installed."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
#: Seconds one preparation may take before it counts as a hang.
LIMIT_S = 60


def _seed_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "Wd", "bd"], ["y"])]
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("W", (4, 3, 3, 3)), ("g", (4,)), ("b", (4,)), ("m", (4,)), ("Wd", (64, 5)), ("bd", (5,)))]
    inits.append(numpy_helper.from_array(np.abs(rng.standard_normal(4)).astype(np.float32) + 0.5, "v"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


SEED = _seed_model().SerializeToString()
OPS = ["Relu", "Add", "MatMul", "Conv", "Det", "Loop", "Reshape", "Gather", "Softmax", "NoSuchOp", ""]


def _graph_mutation(data: st.DataObject) -> bytes:
    m = onnx.load_from_string(SEED)
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from(["dim", "op", "input", "init", "drop", "output"]))
        if what == "dim":
            dim = m.graph.input[0].type.tensor_type.shape.dim[data.draw(st.integers(0, 3))]
            dim.Clear()
            dim.dim_value = data.draw(st.sampled_from([-1, 0, 1, 7, 10 ** 7]))
        elif what == "op" and len(m.graph.node):
            m.graph.node[data.draw(st.integers(0, len(m.graph.node) - 1))].op_type = data.draw(st.sampled_from(OPS))
        elif what == "input" and len(m.graph.node):
            node = m.graph.node[data.draw(st.integers(0, len(m.graph.node) - 1))]
            if node.input:
                node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(
                    st.sampled_from(["x", "c", "missing", "y", "W", ""]))
        elif what == "init" and len(m.graph.initializer):
            init = m.graph.initializer[data.draw(st.integers(0, len(m.graph.initializer) - 1))]
            if data.draw(st.booleans()):
                init.raw_data = init.raw_data[: data.draw(st.integers(0, len(init.raw_data)))]
            else:
                init.dims[0] = data.draw(st.sampled_from([0, 1, 3, 10 ** 6]))
        elif what == "drop" and len(m.graph.node):
            del m.graph.node[data.draw(st.integers(0, len(m.graph.node) - 1))]
        elif what == "output":
            m.graph.output[0].name = data.draw(st.sampled_from(["x", "c", "nothing"]))
    return m.SerializeToString()


def _byte_mutation(data: st.DataObject) -> bytes:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del raw[at: at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        if not raw:
            break
    return bytes(raw)


def _prepare_in_child(path: str, cache: str, conn) -> None:
    os.environ["EXPLORER_CACHE"] = cache
    from explorer.core.errors import ExplorerError
    from explorer.model.prepare import prepare

    try:
        prepare(path, max_tensor_bytes=1 << 30)
        conn.send(("ok", ""))
    except ExplorerError as err:
        conn.send(("error", str(err)))
    except BaseException as err:  # what the fuzzer hunts: anything but a clear error
        conn.send(("exception", f"{type(err).__name__}: {err}"[:500]))


def _outcome(blob: bytes, tmp_path) -> tuple[str, str]:
    path = tmp_path / "fuzzed.onnx"
    path.write_bytes(blob)
    ctx = multiprocessing.get_context("fork")  # the parent has not imported TVM: forking is safe here
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_prepare_in_child, args=(str(path), str(tmp_path / "cache"), child))
    proc.start()
    child.close()
    got = parent.recv() if parent.poll(LIMIT_S) else ("hang", f"no result in {LIMIT_S} s")
    proc.join(5)
    if proc.is_alive():
        proc.kill()
    if got[0] == "hang" and proc.exitcode not in (None, 0):
        got = ("crash", f"the loader's process died with exit code {proc.exitcode}")
    return got


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_fuzz_every_mutated_model_is_prepared_or_refused_in_one_line(data, tmp_path_factory):
    blob = _graph_mutation(data) if data.draw(st.booleans()) else _byte_mutation(data)
    kind, detail = _outcome(blob, tmp_path_factory.mktemp("fuzz"))
    assert kind in ("ok", "error"), detail
    if kind == "error":
        assert "\n" not in detail and "Traceback" not in detail and detail


def test_fuzz_atheris_finds_nothing_in_its_budget(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    seconds = int(os.environ.get("ATHERIS_SECONDS", "60"))
    harness = Path(__file__).with_name("fuzz_atheris.py")
    proc = subprocess.run(
        [sys.executable, str(harness), str(tmp_path / "corpus"), f"-max_total_time={seconds}", f"-timeout={LIMIT_S}",
         "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=seconds + 600,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    runs = re.findall(r"Done (\d+) runs", proc.stderr)
    print(f"atheris: {runs[-1] if runs else '?'} inputs in {seconds} s")
    assert proc.returncode == 0 and runs, proc.stderr[-4000:]
