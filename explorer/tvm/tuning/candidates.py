"""Every measured tuning candidate, replayed, lowered and analysed once (cached in its records).

A candidate's workload row is what the explorer reads from any build: its trace replayed on the
kernel, lowered to the point every build is analysed at, walked and tabulated. Rows are cached in
``candidates.jsonl`` beside the records, keyed by kernel, trace, target and the analysis code, so a
later sweep scores every candidate without lowering anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from explorer.scoring import picks as schedules
from explorer.store.cache import code_fingerprint, locked
from explorer.workload.table import CallSite, Tensor, workload_table


def database(work_dir: Path) -> ms.database.JSONDatabase:
    """The MetaSchedule JSON database of a records directory."""
    return ms.database.JSONDatabase(work_dir=str(work_dir))


def kernel_key(mod: tvm.IRModule) -> str:
    """The identity of a kernel across tasks and records: its structural hash."""
    return str(tvm_ffi.structural_hash(mod))


def records_by_kernel(db) -> dict[str, list]:
    """Every record in ``db`` (failed builds and runs included) grouped by kernel (:func:`kernel_key`)."""
    groups: dict[str, list] = {}
    for rec in db.get_all_tuning_records():
        groups.setdefault(kernel_key(rec.workload.mod), []).append(rec)
    return groups


def _kernel_name(workload) -> str:
    func = next(iter(workload.mod.functions.values()))
    return str(func.attrs["global_symbol"]) if func.attrs and "global_symbol" in func.attrs else "kernel"


def _candidate_workload(record, target: dict) -> dict:
    """Workload row of a measured candidate: its trace replayed, lowered to the point the explorer
    analyses every build at, and analysed."""
    from explorer.tvm.compile import lower_tir
    from explorer.tvm.tir.walker import analyse_primfunc

    sch = tvm.s_tir.Schedule(record.workload.mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    name = _kernel_name(record.workload)
    func = sch.mod["main"].with_attr("global_symbol", name)
    tir, _ = lower_tir(tvm.IRModule({name: func}), tvm.target.Target(target), build=True)
    kernel = analyse_primfunc(tir[name], name)
    n = len(func.params)
    args = [Tensor(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype), "input" if i < n - 1 else "kernel",
                   storage=i) for i, p in enumerate(func.params)]
    call = CallSite(0, name, args, len(args) - 1, [name], [])
    return workload_table([call], {name: kernel}).iloc[0].to_dict()


class _CandidateCache:
    """``candidates.jsonl`` in a records directory: the workload row of every candidate analysed so
    far, keyed by kernel, trace, target and the analysis code, so each candidate is lowered once."""

    def __init__(self, work_dir: Path, target: dict):
        self.path = work_dir / "candidates.jsonl"
        analysis = code_fingerprint("explorer/tvm/tir/*.py", "explorer/tvm/compile.py", "explorer/workload/*.py")
        self.salt = f"{sorted(target.items())}|{analysis}"
        self.rows: dict[str, dict | None] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run
                self.rows[entry["key"]] = entry["row"]

    def key(self, kernel_hash: str, record) -> str:
        trace = json.dumps(record.trace.as_json(remove_postproc=False), default=str)
        return hashlib.sha256(f"{kernel_hash}|{trace}|{self.salt}".encode()).hexdigest()[:24]

    def get(self, key: str, compute) -> dict | None:
        """The cached row, or ``compute()``'s (None where the candidate cannot be lowered again)."""
        if key in self.rows:
            return self.rows[key]
        try:
            row = compute()
        except Exception:  # a candidate TVM cannot lower again is simply not a choice
            row = None
        self.rows[key] = row
        with locked(self.path), self.path.open("a") as f:
            f.write(json.dumps({"key": key, "row": row}, default=_plain) + "\n")
        return row


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def measured_candidates(work_dir: Path, target: dict, tasks: list | None = None, progress: bool = False
                        ) -> tuple[pd.DataFrame, dict]:
    """Every candidate that built and ran in ``work_dir``'s database for the kernels of ``tasks``
    (:func:`kernel_tasks`; all kernels, if None), with its analysed workload (cached in
    ``candidates.jsonl``). Returns the candidates table (see :func:`explorer.scoring.picks.choose`) and
    ``{(kernel, candidate): TuningRecord}``."""
    from tqdm.auto import tqdm

    names = {kernel_key(t.dispatched[0]): t.task_name for t in tasks or []}
    groups: dict[str, list] = {}
    for key, recs in records_by_kernel(database(work_dir)).items():
        valid = [r for r in recs if r.run_secs and all(float(x) < 1e9 for x in r.run_secs)]  # built and ran
        if tasks is None and valid:
            names[key] = _kernel_name(valid[0].workload)
        if key in names and valid:
            groups[key] = valid
    cache = _CandidateCache(work_dir, target)
    rows, records = [], {}
    total = sum(len(r) for r in groups.values())
    with tqdm(total=total, disable=not progress or not total, unit="candidate", desc="analysing candidates") as bar:
        for key, recs in groups.items():
            for i, rec in enumerate(recs):
                workload = cache.get(cache.key(key, rec), lambda rec=rec: _candidate_workload(rec, target))
                bar.update(1)
                latency = sum(float(x) for x in rec.run_secs) / len(rec.run_secs)
                rows.append({**(workload or {}), "kernel": names[key], "candidate": i, "measured_latency_s": latency,
                             "analysed": workload is not None})
                records[(names[key], i)] = rec
    return pd.DataFrame(rows, columns=None if rows else list(schedules.CANDIDATE_COLUMNS)), records
