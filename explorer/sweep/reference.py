"""The onnxruntime reference: its outputs on the check input, and its latency on this CPU (cached).

Each variant that runs here is checked against onnxruntime's outputs on the same seeded input and
timed beside it with the same number of threads. Both are measurements, so they are cached per model
content, onnxruntime version and, for the latency, CPU, threads and repeats
(``cache_dir()/reference/<key>``): a rerun measures nothing again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from explorer.core.prepared import PreparedModel
from explorer.core.variant import MIN_REPEAT_S
from explorer.host.cpu import cpu_fingerprint
from explorer.store.cache import cache_dir, make_key, staged_dir, touch


@dataclasses.dataclass
class Reference:
    """onnxruntime on one model: the check inputs (in graph order) and its outputs on them."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    source: str = "seeded"   # "seeded:<seed>", or a digest of the --inputs files

    def feed(self, prepared: PreparedModel) -> dict[str, np.ndarray]:
        """The check inputs by name."""
        return {spec.name: x for spec, x in zip(prepared.inputs, self.inputs)}


def ort_session(prepared: PreparedModel | str, threads: int = 0):
    """An onnxruntime CPU session for ``prepared`` (or an ONNX file's path), quiet; ``threads``
    intra-op threads (0: its default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    path = prepared if isinstance(prepared, str) else str(prepared.path)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def reference_outputs(prepared: PreparedModel, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs from onnxruntime (the numerical reference) on ``inputs``."""
    return ort_session(prepared).run(None, inputs)


def onnxruntime_latency(prepared: PreparedModel | str, inputs: dict[str, np.ndarray], repeat: int = 5,
                        min_repeat_s: float = MIN_REPEAT_S, threads: int = 0) -> float:
    """Median seconds per inference of the model (or the ONNX file at a path) in onnxruntime on this
    CPU with ``threads`` threads, the build a user would otherwise deploy, timed like
    :func:`explorer.tvm.runtime.measure`: after a warm-up, ``repeat`` repeats, each the mean of as
    many inferences as the fastest of three warm ones says last ``min_repeat_s``."""
    sess = ort_session(prepared, threads)
    sess.run(None, inputs)
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        sess.run(None, inputs)
        warm.append(time.perf_counter() - start)
    number = max(1, int(np.ceil(min_repeat_s / max(min(warm), 1e-6))))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            sess.run(None, inputs)
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def onnxruntime_version() -> str:
    """The installed onnxruntime's version (part of every onnxruntime cache key)."""
    import onnxruntime as ort

    return ort.__version__


def reference(prepared: PreparedModel, seed: int = 0, inputs_dir: str | Path | None = None) -> Reference:
    """onnxruntime's outputs on the check input, computed once per model, input and onnxruntime
    version. The check input is the first sample of ``inputs_dir`` (``.npy`` files, laid out as for
    calibration: see :func:`explorer.model.samples.load_samples`), else ``prepared.sample_inputs(seed)``."""
    if inputs_dir is not None:
        from explorer.model.samples import load_samples

        feed = load_samples(prepared, inputs_dir)[0]
        digest = hashlib.sha256(b"".join(feed[i.name].tobytes() for i in prepared.inputs)).hexdigest()[:16]
        source = f"files:{digest}"
    else:
        feed, source = prepared.sample_inputs(seed), f"seeded:{seed}"
    inputs = [feed[i.name] for i in prepared.inputs]
    entry = cache_dir() / "reference" / make_key("reference", prepared.sha256, source, onnxruntime_version())
    if (entry / "outputs.npz").exists():
        touch(entry)
        with np.load(entry / "outputs.npz") as npz:
            return Reference(inputs, [npz[f"out{i}"] for i in range(len(npz.files))], source)
    outputs = reference_outputs(prepared, feed)
    with staged_dir(entry) as tmp:
        np.savez(tmp / "outputs.npz", **{f"out{i}": o for i, o in enumerate(outputs)})
    return Reference(inputs, outputs, source)


def timed_onnxruntime(prepared: PreparedModel, ref: Reference, threads: int, repeat: int = 5) -> float:
    """:func:`onnxruntime_latency` on ``ref``'s check input, measured once per model, input,
    onnxruntime version, CPU, thread count and ``repeat`` (cached: it is a measurement)."""
    entry = cache_dir() / "reference" / make_key("onnxruntime-latency", prepared.sha256, ref.source, repeat, threads,
                                                 onnxruntime_version(), cpu_fingerprint())
    if (entry / "latency.json").exists():
        touch(entry)
        return float(json.loads((entry / "latency.json").read_text())["latency_s"])
    latency = onnxruntime_latency(prepared, ref.feed(prepared), repeat, threads=threads)
    with staged_dir(entry) as tmp:
        (tmp / "latency.json").write_text(json.dumps({"latency_s": latency, "threads": threads}))
    return latency
