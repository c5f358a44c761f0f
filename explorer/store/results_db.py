"""A sweep's results store: one SQLite file under ``--out`` that keeps every finished variant.

``DIR/results.sqlite`` holds each lowering and measurement the sweep finished, written in one
transaction as it finishes (WAL journal, so a reader never waits for a writer and a killed sweep
loses nothing it committed). A rerun with the same ``--out`` reads them back and compiles only what
is missing, even after the cache was cleared. Like the cache it holds no scores. A disk that fills
while a transaction is written rolls it back (SQLite keeps the file whole) and is a
:class:`~explorer.core.errors.WriteError` naming the file: what was committed stays, and a rerun with
room resumes from it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from explorer.core.errors import WriteError
from explorer.core.variant import Lowering, Measurement
from explorer.store.lowerings import dump_lowering, dump_measurement, load_lowering, load_measurement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lowerings (key TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (key TEXT PRIMARY KEY, record TEXT NOT NULL, outputs BLOB NOT NULL);
"""


#: What SQLite says when the disk, not the data, stops a write.
_DISK_MESSAGES = ("database or disk is full", "disk I/O error", "attempt to write a readonly database",
                  "unable to open database file")


class SQLiteStore:
    """Lowerings and measurements in ``path`` (created if missing)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._disk():
            self.conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _disk(self):
        """A write the disk refused, as a :class:`WriteError` naming the store."""
        try:
            yield
        except sqlite3.OperationalError as err:
            if not any(m in str(err) for m in _DISK_MESSAGES):
                raise
            raise WriteError(f"cannot write {self.path}: {err}") from None

    def _one(self, sql: str, key: str):
        return self.conn.execute(sql, (key,)).fetchone()

    def get_lowering(self, key: str) -> Lowering | None:
        row = self._one("SELECT record FROM lowerings WHERE key = ?", key)
        return load_lowering(row[0]) if row else None

    def put_lowering(self, key: str, lowering: Lowering) -> None:
        with self._disk(), self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("INSERT OR REPLACE INTO lowerings VALUES (?, ?)", (key, dump_lowering(lowering)))

    def get_measurement(self, key: str) -> Measurement | None:
        row = self._one("SELECT record, outputs FROM measurements WHERE key = ?", key)
        return load_measurement(row[0], row[1]) if row else None

    def put_measurement(self, key: str, m: Measurement) -> None:
        text, outputs = dump_measurement(m)
        with self._disk(), self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?)", (key, text, outputs))

    def counts(self) -> tuple[int, int]:
        """How many lowerings and measurements the store holds."""
        return tuple(self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("lowerings", "measurements"))

    def close(self) -> None:
        self.conn.close()
