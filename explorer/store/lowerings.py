"""Stored results of a sweep: compiled variants (lowerings) and their measurements on this machine.

A lowering is everything a score is made from (the workload table, call sites, planned storage,
build outcome, tuning candidates); a measurement is a CPU build run here (outputs, timings, threads).
Both are stored under keys that cover every input deciding their content (:func:`lowering_key`,
:func:`measurement_key`), never with scores, so an entry stays right whatever the target files or the
cost model say, and an edit of either recompiles nothing.

Entries live in the cache (:class:`DirectoryStore`, ``cache_dir()/lowerings`` and
``cache_dir()/measurements``, one directory an entry, published by a rename) and, for a sweep with
``--out``, also in its results store (:mod:`explorer.store`). :class:`Stores` reads the first that has
an entry and writes to all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.core.variant import KernelCall, Lowering, LoweringRequest, Measurement, TuningOutcome
from explorer.host.cpu import cpu_fingerprint
from explorer.store.cache import COMPILE_CODE, cache_dir, code_fingerprint, make_key, staged_dir, touch

#: Bump when the layout of an entry changes.
FORMAT = "3"

#: The code whose output a lowering is: the TVM side (but for running builds, which measurements
#: cover), the workload table and the records' format.
LOWERING_CODE = COMPILE_CODE + ("explorer/tvm/tir/*.py", "explorer/tvm/tuning/*.py", "explorer/tvm/worker.py",
                                "explorer/workload/*.py", "explorer/core/variant.py")

#: What the energy and EDP picks of a tuned strategy also depend on: they choose schedules by score.
SCORING_CODE = ("cost_models/*.py", "explorer/scoring/picks.py")


def target_digest(target) -> str:
    """A hash of a target's figures (not the path it was read from)."""
    return hashlib.sha256(repr(dataclasses.replace(target, path="")).encode()).hexdigest()[:12]


def lowering_key(req: LoweringRequest, calibration: str = "", records_digest: str = "") -> str:
    """The key of ``req``'s lowering: the model's content, the strategy's choices, the calibration of
    an int8 strategy, what it was lowered for, whether it was built, the TVM and explorer versions and
    the code that made it; for a tuned strategy also the records it was tuned from, and for an energy
    or EDP pick the figures and code that scored its candidates."""
    s = req.strategy
    parts = [FORMAT, req.model_sha256, s.key, calibration, req.lowering_id, f"build={req.build}",
             code_fingerprint(*LOWERING_CODE)]
    if s.tuned and req.lowering == "generic":
        parts += [str(Path(req.tuning_records).resolve()) if req.tuning_records else "default-records", records_digest]
        if s.pick != "latency":
            parts += [target_digest(req.scoring), code_fingerprint(*SCORING_CODE)]
    return make_key("lowering", *parts)


def measurement_key(lowering: str, threads: int, timed_runs: int, inputs: str = "seeded:0") -> str:
    """The key of a lowering's measurement on this CPU with ``threads`` threads on the check input
    ``inputs`` (:attr:`explorer.sweep.reference.Reference.source`)."""
    return make_key("measurement", FORMAT, lowering, cpu_fingerprint(), f"threads={threads}", f"runs={timed_runs}",
                    inputs, code_fingerprint("explorer/tvm/runtime.py"))


def _frame(df: pd.DataFrame) -> dict:
    if not len(df.columns):
        return {}
    split = df.to_dict(orient="split", index=False)
    return {"columns": split["columns"], "data": split["data"]}


def _unframe(d: dict) -> pd.DataFrame:
    return pd.DataFrame(d["data"], columns=d["columns"]) if d else pd.DataFrame()


def dump_lowering(lowering: Lowering) -> str:
    """``lowering`` as JSON."""
    tuning = None
    if lowering.tuning is not None:
        tuning = {**dataclasses.asdict(dataclasses.replace(lowering.tuning, candidates=pd.DataFrame())),
                  "candidates": _frame(lowering.tuning.candidates)}
    return json.dumps({**{f.name: getattr(lowering, f.name) for f in dataclasses.fields(lowering)
                          if f.name not in ("workload", "calls", "tuning")},
                       "workload": _frame(lowering.workload), "calls": [dataclasses.asdict(c) for c in lowering.calls],
                       "tuning": tuning})


def load_lowering(text: str) -> Lowering:
    """The :class:`Lowering` that :func:`dump_lowering` wrote."""
    d = json.loads(text)
    tuning = None
    if d["tuning"] is not None:
        tuning = TuningOutcome(**{**d["tuning"], "candidates": _unframe(d["tuning"]["candidates"])})
    calls = [KernelCall(c["index"], c["kernel"], tuple(c["members"]), tuple(c["eliminated"])) for c in d["calls"]]
    return Lowering(**{**d, "workload": _unframe(d["workload"]), "calls": calls, "tuning": tuning})


def dump_measurement(m: Measurement) -> tuple[str, bytes]:
    """``m`` as JSON and its outputs as ``.npz`` bytes."""
    buf = io.BytesIO()
    np.savez(buf, **{f"out{i}": o for i, o in enumerate(m.outputs)})
    return json.dumps({"check_run_s": m.check_run_s, "latency_runs_s": m.latency_runs_s, "threads": m.threads,
                       "node": m.node, "kernel_calls_s": m.kernel_calls_s}), buf.getvalue()


def load_measurement(text: str, outputs: bytes) -> Measurement:
    """The :class:`Measurement` that :func:`dump_measurement` wrote."""
    d = json.loads(text)
    with np.load(io.BytesIO(outputs)) as npz:
        arrays = [npz[f"out{i}"] for i in range(len(npz.files))]
    return Measurement(arrays, d["check_run_s"], list(d["latency_runs_s"]), d["threads"], d["node"],
                       [(str(k), float(s)) for k, s in d["kernel_calls_s"]])


class DirectoryStore:
    """Entries as directories under ``root`` (by default the cache): ``lowerings/<key>/lowering.json``
    and ``measurements/<key>/{measurement.json,outputs.npz}``."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else None

    @property
    def base(self) -> Path:
        return self.root if self.root is not None else cache_dir()

    def get_lowering(self, key: str) -> Lowering | None:
        entry = self.base / "lowerings" / key
        try:
            lowering = load_lowering((entry / "lowering.json").read_text())
        except OSError:
            return None
        touch(entry)
        return lowering

    def put_lowering(self, key: str, lowering: Lowering) -> None:
        with staged_dir(self.base / "lowerings" / key) as tmp:
            (tmp / "lowering.json").write_text(dump_lowering(lowering))

    def get_measurement(self, key: str) -> Measurement | None:
        entry = self.base / "measurements" / key
        try:
            measurement = load_measurement((entry / "measurement.json").read_text(), (entry / "outputs.npz").read_bytes())
        except OSError:
            return None
        touch(entry)
        return measurement

    def put_measurement(self, key: str, m: Measurement) -> None:
        text, outputs = dump_measurement(m)
        with staged_dir(self.base / "measurements" / key) as tmp:
            (tmp / "outputs.npz").write_bytes(outputs)
            (tmp / "measurement.json").write_text(text)


class Stores:
    """Several stores as one: a read takes the first that has the entry (and copies it into those
    before it that lack it), a write goes to all."""

    def __init__(self, *stores):
        self.stores = [s for s in stores if s is not None]

    def _get(self, kind: str, key: str):
        for i, store in enumerate(self.stores):
            found = getattr(store, f"get_{kind}")(key)
            if found is not None:
                for earlier in self.stores[:i]:
                    getattr(earlier, f"put_{kind}")(key, found)
                return found
        return None

    def get_lowering(self, key: str) -> Lowering | None:
        return self._get("lowering", key)

    def put_lowering(self, key: str, lowering: Lowering) -> None:
        for store in self.stores:
            store.put_lowering(key, lowering)

    def get_measurement(self, key: str) -> Measurement | None:
        return self._get("measurement", key)

    def put_measurement(self, key: str, m: Measurement) -> None:
        for store in self.stores:
            store.put_measurement(key, m)


def lowerings_dir() -> Path:
    """Where compiled variants are cached: ``cache_dir()/lowerings``."""
    return cache_dir() / "lowerings"


#: The cache as a store (module-level helpers for callers that need only the cache).
CACHE = DirectoryStore()


def get(key: str) -> Lowering | None:
    """The cached lowering of ``key``, or None."""
    return CACHE.get_lowering(key)


def put(key: str, lowering: Lowering) -> None:
    """Cache ``lowering`` under ``key`` (atomically: readers see all of it or nothing)."""
    CACHE.put_lowering(key, lowering)
