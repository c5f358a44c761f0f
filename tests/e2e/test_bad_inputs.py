"""A corpus of broken and hostile inputs, built in code: each gets exit 2, one line on stderr saying
what is wrong (and what to do), and no traceback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import TOY_TARGET


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _relu(shape=(1, 4)):
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", list(shape))], [_vi("y", list(shape))])


def _save(tmp_path, name, model) -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _short_tensor(name, dims, values) -> onnx.TensorProto:
    """A float initializer of shape ``dims`` whose raw data holds only ``values`` floats."""
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = np.zeros(values, np.float32).tobytes()
    return t


def _bytes(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _external_outside(tmp_path) -> str:
    (tmp_path / "secret").write_bytes(np.zeros(16, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret"), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])], [w])
    path = folder / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


def _bad_target(tmp_path) -> str:
    text = open(TOY_TARGET).read().replace('[static_power_w]\nvalue = 1.0\nlow = 1.0\nhigh = 1.0\nsource = "test fixture"',
                                           '[static_power_w]\nvalue = 1.0\nlow = 1.0\nhigh = 1.0')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


def _nested_if(tmp_path, depth: int = 100) -> str:
    """A model whose ``If`` nests ``depth`` deep in its then-branches, written as protobuf bytes by hand
    (onnx's own helpers cannot build one past protobuf's nesting limit)."""
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(num, payload):
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    def number(num, n):
        return varint(num << 3) + varint(n)

    def graph(nodes, name, out):  # GraphProto: node 1, name 2, output 12 (a ValueInfoProto: name 1)
        return field(1, nodes) + field(2, name.encode()) + field(12, field(1, out.encode()))

    node = field(1, b"x") + field(2, b"y0") + field(4, b"Relu")  # NodeProto: input 1, output 2, op_type 4
    for d in range(1, depth + 1):
        leaf = graph(field(1, b"x") + field(2, b"y0") + field(4, b"Relu"), f"e{d}", "y0")
        branches = (field(5, field(1, b"then_branch") + field(6, graph(node, f"g{d}", f"y{d - 1}")) + number(20, 5))
                    + field(5, field(1, b"else_branch") + field(6, leaf) + number(20, 5)))  # AttributeProto: g 6, GRAPH 5
        node = field(1, b"cond") + field(2, f"y{d}".encode()) + field(4, b"If") + branches
    main = graph(node, "main", f"y{depth}") + field(11, field(1, b"cond")) + field(11, field(1, b"x"))
    opset = field(1, b"") + number(2, 17)
    return _bytes(tmp_path, "nested-if.onnx", number(1, 8) + field(8, opset) + field(7, main))


CASES = {
    "If nested 100 deep": (lambda p: [_nested_if(p)], "is not a valid ONNX model"),
    "not an onnx file": (lambda p: [_bytes(p, "notes.onnx", b"this is not a model\n")], "is not a valid ONNX model"),
    "truncated file": (lambda p: [_bytes(p, "cut.onnx", _relu().SerializeToString()[:40])], "is not a valid ONNX model"),
    "empty graph": (lambda p: [_save(p, "empty.onnx", _model([], [_vi("x", [1])], [_vi("x", [1])]))], "empty graph"),
    "initializer data shorter than its shape": (lambda p: [_save(p, "short-w.onnx", _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 3])],
        [_short_tensor("w", [4, 3], 8)]))],
        "initializer 'w' holds 8 values but its shape [4, 3] declares 12"),
    "operator name not utf-8": (lambda p: [_bytes(p, "bytes-op.onnx", _relu().SerializeToString().replace(
        b"Relu", b"R\xffl\n"))], "a name in its graph is not UTF-8 text"),
    "graph without outputs": (lambda p: [_save(p, "no-out.onnx", _model(
        [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1])], []))], "graph has no outputs"),
    "unsupported operator": (lambda p: [_save(p, "det.onnx", _model(
        [helper.make_node("Det", ["x"], ["y"])], [_vi("x", [2, 3, 3])], [_vi("y", [2])]))],
        "does not support: Det (1 node)"),
    "loop control flow": (lambda p: [_save(p, "loop.onnx", _model(
        [helper.make_node("Loop", ["n", "c"], ["y"], body=helper.make_graph(
            [helper.make_node("Identity", ["ci"], ["co"])], "body",
            [_vi("i", [], TensorProto.INT64), _vi("ci", [], TensorProto.BOOL)], [_vi("co", [], TensorProto.BOOL)]))],
        [_vi("n", [], TensorProto.INT64), _vi("c", [], TensorProto.BOOL)], [_vi("y", [], TensorProto.BOOL)]))],
        "uses Loop control flow"),
    "symbolic dimension without a shape": (lambda p: [_save(p, "sym.onnx", _relu(("batch", "width")))],
                                           "give its shape with --input-shape x:D1,D2"),
    "shape mismatch between nodes": (lambda p: [_save(p, "mismatch.onnx", _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])],
        [numpy_helper.from_array(np.zeros((7, 4), np.float32), "W")]))], "the model is not valid ONNX"),
    "huge declared tensor": (lambda p: [_save(p, "huge.onnx", _relu((1000000, 1000000)))],
                             "would take 4.00 TB (1000000 x 1000000), over the limit"),
    "external data outside the model's folder": (lambda p: [_external_outside(p)],
                                                  "keeps its data in a file outside the model's folder"),
    "cyclic graph": (lambda p: [_save(p, "cycle.onnx", _model(
        [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        [_vi("x", [1, 4])], [_vi("a", [1, 4])]))], "the model is not valid ONNX"),
    "zero-size tensor": (lambda p: [_save(p, "zero.onnx", _relu((1, 0)))], "has a zero-size dimension"),
    "duplicate tensor names": (lambda p: [_save(p, "dup.onnx", _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["y"])],
        [_vi("x", [1, 4])], [_vi("y", [1, 4])]))], "the model is not valid ONNX"),
    "unknown target": (lambda p: ["mlp", "--targets", "abacus"], "known targets: b200, cpu"),
    "unknown strategy": (lambda p: ["mlp", "--strategies", "turbo"], "known strategies: baseline"),
    "malformed target file": (lambda p: ["mlp", "--targets", _bad_target(p)], "static_power_w.source"),
    "malformed --input-shape": (lambda p: ["mlp", "--input-shape", "x:1,a"], "expected NAME:D1,D2"),
    "unwritable output folder": (lambda p: ["mlp", "--out", _bytes(p, "a-file", b"") + "/out"], "cannot write to --out"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_exit_2_and_one_line(cli, case, tmp_path):
    make, message = CASES[case]
    args = make(tmp_path)
    proc = cli("sweep", *args, "--quiet")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("explorer: error: "), proc.stderr
    assert message in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_graph_of_100000_nodes_is_handled_within_5_minutes_and_2_gb(cli, tmp_path):
    import resource
    import time

    nodes = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i < 99_999 else "y"])
             for i in range(100_000)]
    path = _save(tmp_path, "chain.onnx", _model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]))
    start = time.monotonic()
    done = cli("sweep", path, "--targets", "cpu", "--strategies", "fused", "--no-build", "--quiet",
               "--out", tmp_path / "out", timeout=600)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 300  # 85 s on the 2-core Zen 4 (2026-12-07)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2 * 2**20  # KiB: 0.63 GB there


def test_the_path_of_outside_external_data_is_never_echoed(cli, tmp_path):
    proc = cli("sweep", _external_outside(tmp_path), "--quiet")
    assert proc.returncode == 2 and "secret" not in proc.stderr
