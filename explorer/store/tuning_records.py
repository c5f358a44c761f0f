"""Where MetaSchedule's records for a CPU live, and a digest of what they hold (no TVM here).

Records live in a MetaSchedule JSON database per CPU (``cache_dir()/tuning/llvm-<mcpu>-<tag>``
unless a directory is given): a candidate measured once is never measured again, by any later
sweep or build. Beside the database, ``budgets.json`` says which budget each kernel was tuned to and
``candidates.jsonl`` caches every candidate's analysed workload (see :mod:`explorer.tvm.tuning`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from explorer.store.cache import cache_dir, file_digest

#: MetaSchedule's JSONDatabase files in a records directory.
DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


def records_dir(target: dict, override: str | os.PathLike | None = None) -> Path:
    """The tuning-records directory for ``target`` (an LLVM target dict), created if missing."""
    if override is not None:
        path = Path(override)
    else:
        tag = hashlib.sha256(str(sorted(target.items())).encode()).hexdigest()[:8]
        path = cache_dir() / "tuning" / f"{target.get('kind')}-{target.get('mcpu', 'generic')}-{tag}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def records_digest(directory: Path) -> str:
    """A hash of the measured records in ``directory``: a tuned variant built from other records
    is another variant."""
    return file_digest(*(Path(directory) / f for f in DATABASE_FILES))
