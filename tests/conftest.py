"""Shared fixtures of every tier: an isolated cache directory, the ``explorer`` command in a fresh process,
tiny hand-checkable ONNX models, and target files that tests may assert figures of."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# Every test session gets its own cache, so tests never depend on (or pollute) the user's, even
# where the user's shell sets EXPLORER_CACHE.
USER_CACHE = os.environ.get("EXPLORER_CACHE")
SESSION_CACHE = os.environ["EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="explorer-test-cache-")
# ...without a cap: its default is a share of the disk, and evicting between tests would make their
# results depend on the machine's disk (the tests of the cap set their own)
os.environ["EXPLORER_CACHE_MAX"] = "0"


def pytest_unconfigure(config):
    """The session's cache goes with the session: it holds about 2 GB (gpt2's prepared phases), and
    a full disk after a few local runs fails every later command."""
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


#: The repository's root: the code a fresh ``explorer`` process runs.
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TOY_TARGET = str(DATA / "toy.toml")


def run_cli(*args, env: dict | None = None, cwd: str | None = None, code: str | os.PathLike = ROOT,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m explorer.cli ARGS`` in a fresh process, running the explorer of ``code`` (the repository
    by default; a copy of it where a test edits the code), in ``cwd``, with the session's cache unless
    ``env`` says otherwise."""
    return subprocess.run([sys.executable, "-m", "explorer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or str(code), env={**os.environ, "PYTHONPATH": str(code), **(env or {})})


def pytest_collection_finish(session):
    """``tests/`` on ``sys.path`` makes ``tests/tvm`` the ``tvm`` that every worker a sweep spawns imports:
    refuse it here, in one line, rather than as crashed workers in unrelated tests."""
    if any(Path(p or ".").resolve() == ROOT / "tests" for p in sys.path):
        raise pytest.UsageError("tests/ is on sys.path (put the repository's root there, not tests/): "
                                "tests/tvm would shadow the tvm package")


@pytest.fixture(scope="session")
def cli():
    """The ``explorer`` command in a fresh process (:func:`run_cli`)."""
    return run_cli


def sweep_stopped_midway(model, tmp_path: Path, stored: int = 2, **popen):
    """A sweep of ``model`` on the toy target into ``tmp_path/out``, with a cache of its own, started in a
    process of its own (``popen``: how) and returned once ``stored`` of its lowerings are in the cache,
    to be stopped: ``(process, command, environment, the cache's lowerings folder)``."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "explorer.cli", "sweep", str(model), "--targets", TOY_TARGET, "--quiet",
           "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, env=env, **popen)
    entries = cache / "lowerings"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len([p for p in entries.glob("*") if not p.name.startswith(".")]) < stored:
        time.sleep(0.05)
    return proc, cmd, env, entries


def data_target(name: str):
    """A frozen copy of a shipped target (``tests/data/targets/NAME.toml``): tests of the model's behaviour
    assert figures of these, so re-measuring a host and editing its shipped file breaks no test."""
    from cost_models.targets import load_target

    return load_target(DATA / "targets" / f"{name}.toml")

_CORES = os.sched_getaffinity(0)


@pytest.fixture(autouse=True)
def _all_cores():
    """TVM's runtime pins the threads of a process that runs a build, its main thread included; tests
    that build in this process would leave every later test (and the processes it starts) on one core."""
    yield
    os.sched_setaffinity(0, _CORES)


def make_model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    """An ONNX model from parts, with an IR version onnxruntime accepts."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _w(rng, shape, name):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _save(model: onnx.ModelProto, path):
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def matmul_onnx(model_dir):
    """y[1,32] = x[1,64] @ W[64,32]: 2048 MACs, reads 256 + 8192 B, writes 128 B."""
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], [_w(rng, (64, 32), "W")])
    return _save(m, model_dir / "matmul.onnx")


@pytest.fixture(scope="session")
def conv_add_relu_onnx(model_dir):
    """relu(conv3x3(x[1,4,6,6], W[8,4,3,3], pad 1) + B[1,8,6,6]): 10368 MACs."""
    rng = np.random.default_rng(0)
    m = make_model(
        [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "B"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        [_w(rng, (8, 4, 3, 3), "W"), _w(rng, (1, 8, 6, 6), "B")])
    return _save(m, model_dir / "conv_add_relu.onnx")


@pytest.fixture(scope="session")
def conv16_onnx(model_dir):
    """relu(conv3x3(x[1,8,6,6], W[16,8,3,3], pad 1)): 16 * 8 * 9 * 36 = 41472 MACs."""
    rng = np.random.default_rng(1)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["c"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 6, 6])], [_w(rng, (16, 8, 3, 3), "W")])
    return _save(m, model_dir / "conv16.onnx")


@pytest.fixture(scope="session")
def symbolic_batch_onnx(model_dir):
    """A Gemm whose batch dimension is symbolic and whose Reshape target comes from a Shape sub-graph."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             _w(rng, (12, 5), "W"), _w(rng, (5,), "b")]
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])], inits)
    return _save(m, model_dir / "symbolic_batch.onnx")


@pytest.fixture(scope="session")
def unsupported_onnx(model_dir):
    """Two Det nodes, which onnxruntime runs and TVM's importer has no converter for."""
    m = make_model([helper.make_node("Det", ["x"], ["d"]), helper.make_node("Det", ["z"], ["e"]),
                    helper.make_node("Add", ["d", "e"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3]),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return _save(m, model_dir / "unsupported.onnx")


@pytest.fixture(scope="session")
def qdq_conv_onnx(model_dir):
    """A pre-quantized conv: x[1,4,6,6] -> Quantize/Dequantize (scale 0.05, zero point 3) ->
    Conv with DequantizeLinear(int8 W[8,4,3,3], per-channel scales): 10368 int8 MACs."""
    rng = np.random.default_rng(2)
    wq = rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "sx"),
             numpy_helper.from_array(np.array(3, np.int8), "zx"),
             numpy_helper.from_array(wq, "Wq"),
             numpy_helper.from_array((rng.uniform(1, 2, 8) / 100).astype(np.float32), "sw"),
             numpy_helper.from_array(np.zeros(8, np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["Wq", "sw", "zw"], ["W"], axis=0),
             helper.make_node("Conv", ["xd", "W"], ["y"], pads=[1, 1, 1, 1])]
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits)
    return _save(m, model_dir / "qdq_conv.onnx")


@pytest.fixture(scope="session")
def qlinear_conv_onnx(model_dir):
    """QLinearConv: uint8 x[1,4,6,6] (zero point 128), int8 W[8,4,3,3] per channel, int32 bias,
    uint8 output: 10368 integer MACs, which TVM's importer has no converter for."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
             numpy_helper.from_array(np.array(128, np.uint8), "xz"),
             numpy_helper.from_array(rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8), "W"),
             numpy_helper.from_array((rng.uniform(1, 2, 8) / 100).astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.5, np.float32), "ys"),
             numpy_helper.from_array(np.array(100, np.uint8), "yz"),
             numpy_helper.from_array(rng.integers(-500, 500, 8).astype(np.int32), "B")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "W", "ws", "wz", "ys", "yz", "B"], ["y"], pads=[1, 1, 1, 1])
    m = make_model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 8, 6, 6])], inits)
    return _save(m, model_dir / "qlinear_conv.onnx")


@pytest.fixture(scope="session")
def matmul_integer_onnx(model_dir):
    """MatMulInteger: int8 a[2,16] (zero point 3) x int8 B[16,8] -> int32: 256 integer MACs."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (16, 8)).astype(np.int8), "B"),
             numpy_helper.from_array(np.array(3, np.int8), "az")]
    node = helper.make_node("MatMulInteger", ["a", "B", "az"], ["y"])
    m = make_model([node], [helper.make_tensor_value_info("a", TensorProto.INT8, [2, 16])],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 8])], inits)
    return _save(m, model_dir / "matmul_integer.onnx")


@pytest.fixture
def toy():
    """The round-number toy target (tests/data/toy.toml)."""
    from cost_models.targets import load_target

    return load_target(TOY_TARGET)


@pytest.fixture(scope="session")
def tiny_gpt2(model_dir):
    """A GPT-2 of 2 layers, as an exporter writes it (symbolic batch and lengths, past_key_values.N.*)."""
    from models.decoders import DecoderConfig, build_gpt2

    tiny = DecoderConfig(layers=2, d_model=64, heads=4, kv_heads=4, ffn=256, vocab=500, n_ctx=64)
    return _save(build_gpt2(seed=1, cfg=tiny), model_dir / "tiny-gpt2.onnx")


#: A model name that would be markup, a script end and an event handler if it were not escaped.
EVIL = "</script><b>bold</b><img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="session")
def marked_up_sweep():
    """A resnet18 sweep's variants and kernels (``tests/data/sweep``: four strategies on the cpu, gpu and npu
    targets), with its model and three kernels renamed to :data:`EVIL`."""
    import pandas as pd

    v = pd.read_csv(DATA / "sweep" / "variants.csv")
    k = pd.read_csv(DATA / "sweep" / "kernels.csv")
    v["model"], k["model"] = EVIL, EVIL
    k.loc[k.index[:3], "kernel"] = EVIL
    return v, k
