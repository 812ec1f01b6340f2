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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from replicator.errors import ErrorKind, ReplicatorError
from replicator.state.base import SCHEMA_VERSION, check_forward, check_version
from replicator.state.blobs import Blob, BlobRef

_BLOBS_PER_QUERY = 150  # 5 parameters each: under SQLite's oldest limit of 999 variables


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
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS blobs (target TEXT NOT NULL, thread_id TEXT NOT NULL, "
                    "checkpoint_ns TEXT NOT NULL, channel TEXT NOT NULL, version TEXT NOT NULL, "
                    "type TEXT NOT NULL, data BLOB, "
                    "PRIMARY KEY (target, thread_id, checkpoint_ns, channel, version)) WITHOUT ROWID"
                )
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
        with self._write() as conn:
            for name, value in values.items():
                row = conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
                check_forward(name, json.loads(row[0]) if row else None, value)
            now = time.time()
            conn.executemany(
                "INSERT INTO state (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(name, json.dumps(value), now) for name, value in values.items()],
            )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, else rolled back."""
        with self._lock:
            conn = self._connection(write=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def delete(self, name: str) -> None:
        self._execute("DELETE FROM state WHERE name = ?", (name,))

    def clear(self) -> None:
        self._execute("DELETE FROM state")
        self._execute("DELETE FROM blobs")

    def blob_get_many(self, target: str, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        found: dict[BlobRef, Blob] = {}
        for start in range(0, len(refs), _BLOBS_PER_QUERY):
            chunk = refs[start : start + _BLOBS_PER_QUERY]
            keys = ", ".join("(?, ?, ?, ?, ?)" for _ in chunk)
            rows = self._execute(
                "SELECT thread_id, checkpoint_ns, channel, version, type, data FROM blobs "
                f"WHERE (target, thread_id, checkpoint_ns, channel, version) IN (VALUES {keys})",
                tuple(part for ref in chunk for part in (target, *ref)),
            )
            for t, ns, channel, version, type_, data in rows:
                found[(t, ns, channel, version)] = (type_, data)
        return found

    def blob_apply(
        self,
        target: str,
        put: Sequence[tuple[BlobRef, Blob]] = (),
        delete: Sequence[BlobRef] = (),
        delete_threads: Sequence[str] = (),
    ) -> None:
        if not (put or delete or delete_threads):
            return
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM blobs WHERE target = ? AND thread_id = ?", [(target, t) for t in delete_threads]
            )
            conn.executemany(
                "DELETE FROM blobs WHERE target = ? AND thread_id = ? AND checkpoint_ns = ? "
                "AND channel = ? AND version = ?",
                [(target, *ref) for ref in delete],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO blobs (target, thread_id, checkpoint_ns, channel, version, type, "
                "data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(target, *ref, *blob) for ref, blob in put],
            )

    def all(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(value) for name, value in self._execute("SELECT name, value FROM state")}

    def prefixed(self, prefix: str) -> dict[str, dict[str, Any]]:
        rows = self._execute(
            "SELECT name, value FROM state WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
        )
        return {name: json.loads(value) for name, value in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
