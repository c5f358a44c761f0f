"""onnxruntime's own int8 build of a model: the yardstick for the explorer's int8 builds.

``onnxruntime.quantization.quantize_static`` makes a QDQ model (per-channel int8 weights, uint8
activations, as onnxruntime runs fastest on x86) calibrated on the same inputs as the explorer's
int8 pass (:func:`explorer.model.int8_calibration.calibration_feeds`). The quantized file is cached by the
prepared model, the calibration and onnxruntime's version; its latency is a measurement, cached
like :func:`explorer.sweep.reference.timed_onnxruntime`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from explorer.core.prepared import PreparedModel
from explorer.host.cpu import cpu_fingerprint
from explorer.store.cache import atomic_path, cache_dir, make_key, staged_dir
from explorer.sweep.reference import Reference, onnxruntime_latency, onnxruntime_version


def quantized_path(prepared: PreparedModel, feeds: list[dict[str, np.ndarray]], calibration_key: str) -> Path:
    """onnxruntime's static QDQ int8 model of ``prepared``, calibrated on ``feeds`` (made once)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    out = cache_dir() / "onnxruntime-int8" / f"{make_key('ort-int8', prepared.sha256, calibration_key, onnxruntime_version())}.onnx"
    if out.exists():
        return out

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = iter(feeds)

        def get_next(self):
            return next(self.left, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.WARNING)  # its advice to pre-process the model goes to the root logger
    try:
        with atomic_path(out) as tmp:
            quantize_static(str(prepared.path), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    return out


def int8_latency(prepared: PreparedModel, feeds: list[dict[str, np.ndarray]], calibration_key: str,
                 ref: Reference, threads: int, repeat: int = 5) -> float:
    """Median seconds per inference of onnxruntime's int8 build on ``ref``'s check input with
    ``threads`` threads (timed as :func:`explorer.sweep.reference.onnxruntime_latency` times fp32; cached
    per CPU, like it)."""
    path = quantized_path(prepared, feeds, calibration_key)
    entry = cache_dir() / "reference" / make_key("onnxruntime-int8-latency", path.name, ref.source, repeat, threads,
                                                 cpu_fingerprint())
    if (entry / "latency.json").exists():
        return float(json.loads((entry / "latency.json").read_text())["latency_s"])
    latency = onnxruntime_latency(str(path), ref.feed(prepared), repeat, threads=threads)
    with staged_dir(entry) as tmp:
        (tmp / "latency.json").write_text(json.dumps({"latency_s": latency, "threads": threads}))
    return latency
