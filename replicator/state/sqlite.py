"""The state store in a SQLite file: for a source that is not Postgres, or a copy without Kafka.

One daemon writes the file (``status`` may read it meanwhile: WAL mode); writes run in ``BEGIN
IMMEDIATE`` transactions, so the forward-only check and the write are one step. Opened with
``create=False`` (status, reset), a file that does not exist yet reads as empty and is not
created. ``synchronous=FULL``: a confirmed position survives a power
loss.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from replicator.errors import ErrorKind, ReplicatorError
from replicator.state.base import SCHEMA_VERSION, check_forward, check_version


class SqliteStateStore:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self._path = str(path)
        self._create = create
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self, *, write: bool = False) -> sqlite3.Connection | None:
        """The open file; None when reading with ``create=False`` and nothing was written yet."""
        if self._conn is None:
            if not (write or self._create) and not Path(self._path).exists():
                return None
            try:
                conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
                    "updated_at REAL NOT NULL)"
                )
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                check_version(int(row[0]) if row else None, self._path)
                if row is None:
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            except sqlite3.Error as exc:
                raise ReplicatorError(ErrorKind.CONFIG, f"state store {self._path}: {exc}") from None
            self._conn = conn
        return self._conn

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            conn = self._connection()
            return conn.execute(sql, params).fetchall() if conn is not None else []

    def get(self, name: str) -> dict[str, Any] | None:
        rows = self._execute("SELECT value FROM state WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self.put_many({name: value})

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        if not values:
            return
        with self._lock:
            conn = self._connection(write=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                for name, value in values.items():
                    row = conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
                    check_forward(name, json.loads(row[0]) if row else None, value)
                now = time.time()
                conn.executemany(
                    "INSERT INTO state (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    [(name, json.dumps(value), now) for name, value in values.items()],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def delete(self, name: str) -> None:
        self._execute("DELETE FROM state WHERE name = ?", (name,))

    def clear(self) -> None:
        self._execute("DELETE FROM state")

    def all(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(value) for name, value in self._execute("SELECT name, value FROM state")}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
