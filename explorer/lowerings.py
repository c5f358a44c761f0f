"""The cache of compiled variants: one entry per lowering, everything a score is made from.

An entry is a directory ``cache_dir()/lowerings/<key>/`` holding ``lowering.json`` (the workload
table, call sites, planned storage, build outcome, tuning candidates and timings) and, for a variant
that ran here, ``outputs.npz``. Its key (:func:`lowering_key`) covers every input that decides its
content; scores are never stored, so an entry stays right whatever the target files or the cost
model say, and an edit of either recompiles nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import cache_dir, code_fingerprint, make_key, staged_dir
from .records import KernelCall, Lowering, LoweringRequest, Measurement, TuningOutcome

#: Bump when the layout of an entry changes.
FORMAT = "1"

#: The code whose output an entry is: the TVM side, the workload table and the records' format.
LOWERING_CODE = ("explorer/tvm/*.py", "explorer/workload_table.py", "explorer/reuse.py", "explorer/records.py")

#: What the energy and EDP picks of a tuned strategy also depend on: they choose schedules by score.
SCORING_CODE = ("cost_models/*.py", "explorer/schedules.py")


def target_digest(target) -> str:
    """A hash of a target's figures (not the path it was read from)."""
    import hashlib

    return hashlib.sha256(repr(dataclasses.replace(target, path="")).encode()).hexdigest()[:12]


def lowering_key(req: LoweringRequest, calibration: str = "", records_digest: str = "") -> str:
    """The cache key of ``req``'s lowering: the model's content, the strategy's choices, the
    calibration of an int8 strategy, what it was lowered for, whether it was built and run, the
    TVM and explorer versions and the code that made it; for a tuned strategy also the records it
    was tuned from, and for an energy or EDP pick the figures and code that scored its candidates."""
    s = req.strategy
    parts = [FORMAT, req.model_sha256, s.key, calibration, req.lowering_id, f"build={req.build}",
             f"run={req.inputs is not None}:{req.timed_runs}", code_fingerprint(*LOWERING_CODE)]
    if s.tuned and req.lowering == "generic":
        parts += [str(Path(req.tuning_records).resolve()) if req.tuning_records else "default-records", records_digest]
        if s.pick != "latency":
            parts += [target_digest(req.scoring), code_fingerprint(*SCORING_CODE)]
    return make_key("lowering", *parts)


def lowerings_dir() -> Path:
    """Where compiled variants are cached: ``cache_dir()/lowerings``."""
    return cache_dir() / "lowerings"


def _frame(df: pd.DataFrame) -> dict:
    if not len(df.columns):
        return {}
    split = df.to_dict(orient="split", index=False)
    return {"columns": split["columns"], "data": split["data"]}


def _unframe(d: dict) -> pd.DataFrame:
    return pd.DataFrame(d["data"], columns=d["columns"]) if d else pd.DataFrame()


def to_json(lowering: Lowering) -> str:
    """``lowering`` as JSON (the outputs of a run go to ``outputs.npz`` beside it)."""
    tuning = None
    if lowering.tuning is not None:
        tuning = {**dataclasses.asdict(dataclasses.replace(lowering.tuning, candidates=pd.DataFrame())),
                  "candidates": _frame(lowering.tuning.candidates)}
    run = None
    if lowering.run is not None:
        run = {"check_run_s": lowering.run.check_run_s, "latency_runs_s": lowering.run.latency_runs_s,
               "outputs": len(lowering.run.outputs)}
    return json.dumps({
        "lowering": lowering.lowering, "workload": _frame(lowering.workload),
        "calls": [dataclasses.asdict(c) for c in lowering.calls], "planned_bytes": lowering.planned_bytes,
        "compile_s": lowering.compile_s, "built": lowering.built, "build_error": lowering.build_error,
        "nvcc_error": lowering.nvcc_error, "tuning": tuning, "run": run,
    })


def from_json(text: str, outputs: list[np.ndarray] | None = None) -> Lowering:
    """The :class:`Lowering` that :func:`to_json` wrote."""
    d = json.loads(text)
    tuning = None
    if d["tuning"] is not None:
        t = d["tuning"]
        tuning = TuningOutcome(**{**t, "candidates": _unframe(t["candidates"])})
    run = None
    if d["run"] is not None:
        run = Measurement(list(outputs or []), d["run"]["check_run_s"], list(d["run"]["latency_runs_s"]))
    calls = [KernelCall(c["index"], c["kernel"], tuple(c["members"]), tuple(c["eliminated"])) for c in d["calls"]]
    return Lowering(d["lowering"], _unframe(d["workload"]), calls, d["planned_bytes"], d["compile_s"], d["built"],
                    d["build_error"], d["nvcc_error"], tuning, run)


def get(key: str) -> Lowering | None:
    """The cached lowering of ``key``, or None."""
    entry = lowerings_dir() / key
    try:
        text = (entry / "lowering.json").read_text()
    except OSError:
        return None
    outputs = None
    if (entry / "outputs.npz").exists():
        with np.load(entry / "outputs.npz") as npz:
            outputs = [npz[f"out{i}"] for i in range(len(npz.files))]
    return from_json(text, outputs)


def put(key: str, lowering: Lowering) -> None:
    """Cache ``lowering`` under ``key`` (atomically: readers see all of it or nothing)."""
    with staged_dir(lowerings_dir() / key) as tmp:
        if lowering.run is not None:
            np.savez(tmp / "outputs.npz", **{f"out{i}": o for i, o in enumerate(lowering.run.outputs)})
        (tmp / "lowering.json").write_text(to_json(lowering))
