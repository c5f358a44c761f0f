"""The onnxruntime reference: its outputs on the check input, and its latency on this CPU (cached).

Each variant that runs here is checked against onnxruntime's outputs on the same seeded input and
timed beside it. Both are measurements, so they are cached per model content, onnxruntime version,
CPU and timing settings (``cache_dir()/reference/<key>``), and a rerun measures nothing again.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from .cache import cache_dir, make_key, staged_dir
from .host import cpu_fingerprint
from .loading import PreparedModel


@dataclasses.dataclass
class Reference:
    """onnxruntime on one model: the check inputs (in graph order), its outputs on them, its latency."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    latency_s: float


def ort_session(prepared: PreparedModel):
    """An onnxruntime CPU session for ``prepared``, quiet."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(prepared.path), opts, providers=["CPUExecutionProvider"])


def reference_outputs(prepared: PreparedModel, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs from onnxruntime (the numerical reference) on ``inputs``."""
    return ort_session(prepared).run(None, inputs)


def onnxruntime_latency(prepared: PreparedModel, inputs: dict[str, np.ndarray], repeat: int = 5,
                        min_repeat_s: float = 0.2, session=None) -> float:
    """Median seconds per inference of the model in onnxruntime on this CPU, the build a user would
    otherwise deploy, timed like :func:`explorer.tvm.runtime.time_executable`: after a warm-up,
    ``repeat`` repeats, each the mean of as many inferences as last ``min_repeat_s``."""
    sess = session or ort_session(prepared)
    start = time.perf_counter()
    sess.run(None, inputs)
    number = max(1, int(np.ceil(min_repeat_s / max(time.perf_counter() - start, 1e-6))))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            sess.run(None, inputs)
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def reference(prepared: PreparedModel, seed: int = 0, repeat: int = 5) -> Reference:
    """onnxruntime's outputs on ``prepared.sample_inputs(seed)`` and its latency, measured once per
    model, onnxruntime version, CPU and ``repeat``."""
    import onnxruntime as ort

    feed = prepared.sample_inputs(seed)
    inputs = [feed[i.name] for i in prepared.inputs]
    entry = cache_dir() / "reference" / make_key("reference", prepared.sha256, seed, repeat, ort.__version__,
                                                 cpu_fingerprint())
    try:
        latency = json.loads((entry / "latency.json").read_text())["latency_s"]
        with np.load(entry / "outputs.npz") as npz:
            return Reference(inputs, [npz[f"out{i}"] for i in range(len(npz.files))], latency)
    except (OSError, KeyError, ValueError):
        pass
    sess = ort_session(prepared)
    outputs = sess.run(None, feed)
    latency = onnxruntime_latency(prepared, feed, repeat, session=sess)
    with staged_dir(entry) as tmp:
        np.savez(tmp / "outputs.npz", **{f"out{i}": o for i, o in enumerate(outputs)})
        (tmp / "latency.json").write_text(json.dumps({"latency_s": latency}))
    return Reference(inputs, outputs, latency)
