"""What a records directory remembers beside MetaSchedule's database: the budget each kernel was tuned
to (``budgets.json``), the default schedule each was seeded with (``seeds.json``) and how many of that
schedule's neighbours were measured (``neighbors.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from explorer.store.cache import locked, write_atomic
from explorer.tvm.tuning.candidates import kernel_key


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


class Budgets:
    """``budgets.json`` in a records directory: per kernel (structural hash), the per-kernel trial
    budget already tuned to. A kernel whose search space ran out before its budget still counts as
    done, so it is not tuned again for nothing."""

    def __init__(self, work_dir: Path):
        self.path = work_dir / "budgets.json"
        self.done = _read_json(self.path)

    @staticmethod
    def key(task) -> str:
        """A task's kernel, by its structural hash."""
        return kernel_key(task.dispatched[0])

    def get(self, task) -> int:
        """The per-kernel budget ``task``'s kernel was tuned to (0: never)."""
        return int(self.done.get(self.key(task), 0))

    def mark(self, tasks, budget: int) -> None:
        """Record that ``tasks`` were tuned to ``budget``."""
        with locked(self.path):  # another process may have marked other kernels meanwhile
            on_disk = _read_json(self.path)
            self.done = {k: max(int(v), int(on_disk.get(k, 0))) for k, v in {**on_disk, **self.done}.items()}
            for t in tasks:
                self.done[self.key(t)] = max(budget, self.get(t))
            write_atomic(self.path, json.dumps(self.done, indent=0, sort_keys=True))


class Seeds:
    """``seeds.json`` in a records directory: per kernel (structural hash), the digest of the default
    schedule whose measurement its database holds (a change to the default schedules seeds again)."""

    def __init__(self, work_dir: Path):
        self.path = work_dir / "seeds.json"
        self.done = _read_json(self.path)

    def add(self, seeded: dict[str, str]) -> None:
        """Record the default schedules just measured (kernel -> digest)."""
        with locked(self.path):
            self.done = {**_read_json(self.path), **self.done, **seeded}
            write_atomic(self.path, json.dumps(self.done, indent=0, sort_keys=True))


class Neighbors:
    """``neighbors.json`` in a records directory: per kernel (structural hash), the digest of the
    default schedule whose neighbours were measured and how many of them (they are measured in a fixed
    order, so a larger budget measures only the next ones)."""

    def __init__(self, work_dir: Path):
        self.path = work_dir / "neighbors.json"
        self.done = _read_json(self.path)

    def measured(self, key: str, digest: str) -> int:
        """Neighbours of the default schedule with ``digest`` already measured for kernel ``key``."""
        entry = self.done.get(key, {})
        return int(entry.get("measured", 0)) if entry.get("seed") == digest else 0

    def add(self, measured: dict[str, tuple[str, int]]) -> None:
        """Record, per kernel, the default schedule's digest and the neighbours now measured of it."""
        with locked(self.path):
            self.done = {**_read_json(self.path), **self.done,
                         **{key: {"seed": digest, "measured": n} for key, (digest, n) in measured.items()}}
            write_atomic(self.path, json.dumps(self.done, indent=0, sort_keys=True))
