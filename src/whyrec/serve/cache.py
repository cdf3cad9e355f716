"""Explanations cached per (user, item, model revision) in SQLite, so a restart keeps them.

Generating one explanation costs seconds of CPU; looking one up costs microseconds. The
revision (`whyrec.methods.catalog.revision`: a hash of the run folder's trained weights, config and
catalog files plus the decoding settings) is part of the key and of every lookup, so a
retrained run or other `--generation.*` settings never serve stale text, and several models
can share one file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from whyrec.utils import WhyrecError

SCHEMA = """CREATE TABLE IF NOT EXISTS explanations (
    user TEXT NOT NULL, item TEXT NOT NULL, revision TEXT NOT NULL, text TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (user, item, revision))"""


class ExplanationCache:
    """A thread-safe key-value store of explanations; `path=None` keeps it in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection shared by the worker thread and request threads, guarded by a lock:
            # SQLite serialises writers anyway and the rows are tiny.
            self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            self._db.execute(SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise WhyrecError(f"explanation cache {self.path}: {e}; delete the file or pass another --cache") from None
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_many(self, keys: list[tuple[str, str]], revision: str) -> dict[tuple[str, str], str]:
        found = {}
        with self._lock:
            for user, item in keys:
                row = self._db.execute("SELECT text FROM explanations WHERE user=? AND item=? AND revision=?",
                                       (user, item, revision)).fetchone()
                if row is not None:
                    found[(user, item)] = row[0]
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def put_many(self, rows: dict[tuple[str, str], str], revision: str) -> None:
        now = time.time()
        with self._lock, self._db:  # one transaction: a crash leaves all rows or none
            self._db.executemany("INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?)",
                                 [(u, i, revision, t, now) for (u, i), t in rows.items()])

    def count(self, revision: str | None = None) -> int:
        with self._lock:
            if revision is None:
                return self._db.execute("SELECT COUNT(*) FROM explanations").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM explanations WHERE revision=?", (revision,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
