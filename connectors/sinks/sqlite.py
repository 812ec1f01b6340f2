"""The SQLite target: SqliteSaver's file, written by one connection in WAL mode.

Rows come from ``sqlite_layout`` (pure); this module does the I/O. Tables are created by
``SqliteSaver.setup()`` itself when missing (it also switches the file to WAL, so the app's
saver and verify read while the replicator writes), the blob table beside them. Each batch is
one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front (one writer, no lock
upgrade half way), and the batch is durable and visible atomically. Errors are classified by
SQLite's result code into ``ReplicatorError`` kinds naming the target.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps, WholeCheckpoint
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import Blob, BlobRef, CheckpointRef, Form, WriteRef
from connectors.sinks.layout import LayeredSink
from connectors.sinks.sqlite_layout import BLOB_TABLE, CREATE_BLOB_TABLE, rows, stored_metadata
from replicator.errors import ErrorKind, ReplicatorError, translated

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_log = structlog.get_logger(__name__)

_BLOBS_PER_QUERY = 200  # 4 parameters each: under SQLite's oldest limit of 999 variables

# Primary result codes (the low byte of an extended code).
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED: another writer holds the file
_SETUP = {3, 8, 14, 23, 26}  # PERM, READONLY, CANTOPEN, AUTH, NOTADB
_UNREACHABLE = {10, 13, 15}  # IOERR, FULL, PROTOCOL
_DATA = {18, 19, 20}  # TOOBIG, CONSTRAINT, MISMATCH


def error_kind(code: int | None) -> ErrorKind:
    """What a failed statement means, by its SQLite result code."""
    primary = None if code is None else code & 0xFF
    if primary in _BUSY:
        return ErrorKind.TARGET_THROTTLED
    if primary in _SETUP:
        return ErrorKind.TARGET_SETUP
    if primary in _UNREACHABLE:
        return ErrorKind.TARGET_UNREACHABLE
    if primary in _DATA:
        return ErrorKind.MALFORMED_EVENT
    return ErrorKind.INTERNAL


_HINTS = {
    ErrorKind.TARGET_SETUP: "check that the directory exists and the file is a writable SQLite database",
    ErrorKind.TARGET_THROTTLED: "another process holds the write lock; retried after a backoff",
    ErrorKind.TARGET_UNREACHABLE: "the disk failed or is full",
}


class SqliteLayout:
    """SqliteSaver's file at ``path`` (whole form), blobs in its ``lgrepl_blobs`` table."""

    form = Form.WHOLE
    busy_timeout_s = 30.0

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._reader: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ Layout

    def check(self) -> None:
        with self._lock, self._errors("opening the database"):
            self._connection()

    def blob_store(self) -> BlobStore:
        return self

    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        found: dict[BlobRef, Blob] = {}
        with self._cursor(f"reading {len(refs)} blobs") as cur:
            for start in range(0, len(refs), _BLOBS_PER_QUERY):
                chunk = refs[start : start + _BLOBS_PER_QUERY]
                values = ", ".join("(?, ?, ?, ?)" for _ in chunk)
                cur.execute(
                    f"SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM {BLOB_TABLE} "
                    f"WHERE (thread_id, checkpoint_ns, channel, version) IN (VALUES {values})",
                    [part for ref in chunk for part in ref],
                )
                for t, ns, channel, version, type_, blob in cur.fetchall():
                    found[(t, ns, channel, version)] = (type_, blob)
        return found

    def stored_checkpoint(self, ref: CheckpointRef) -> WholeCheckpoint | None:
        t, _, cid = ref
        with self._cursor(f"reading checkpoint {cid} of thread {t!r}") as cur:
            row = cur.execute(
                "SELECT parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                ref,
            ).fetchone()
        if row is None:
            return None
        return WholeCheckpoint(row[0], row[1], row[2], stored_metadata(row[3]))

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        with self._cursor(f"reading a write of thread {ref[0]!r}") as cur:
            row = cur.execute(
                "SELECT type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = ? "
                "AND checkpoint_id = ? AND task_id = ? AND idx = ?",
                ref,
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def write(self, ops: DurableOps) -> None:
        """The batch in one transaction, holding the write lock from its start."""
        statements = rows(ops, self.name).statements()
        with self._cursor(f"writing a batch ({sum(len(p) for _, p in statements)} rows)") as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cur.executemany(sql, params)
                cur.execute("COMMIT")
            except BaseException:
                if cur.connection.in_transaction:
                    cur.execute("ROLLBACK")
                raise

    def saver(self) -> BaseCheckpointSaver[str]:
        from langgraph.checkpoint.sqlite import SqliteSaver

        if self._reader is None:
            with self._errors("opening SqliteSaver"):
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.busy_timeout_s)
            self._reader = SqliteSaver(conn)
        saver: BaseCheckpointSaver[str] = self._reader
        return saver

    def thread_ids(self) -> Iterable[str]:
        with self._cursor("listing threads") as cur:
            sql = "SELECT thread_id FROM checkpoints UNION SELECT thread_id FROM writes ORDER BY 1"
            return [r[0] for r in cur.execute(sql).fetchall()]

    def drop_own_state(self) -> list[str]:
        """The blob table in the target file; SqliteSaver's tables stay."""
        with self._cursor("dropping the replicator's blob table") as cur:
            exists = cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (BLOB_TABLE,)
            ).fetchone()
            count = cur.execute(f"SELECT count(*) FROM {BLOB_TABLE}").fetchone()[0] if exists else 0
            cur.execute(f"DROP TABLE IF EXISTS {BLOB_TABLE}")
        return [f"{count:,} blobs (table {BLOB_TABLE}) from {self.path}"]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._reader is not None:
                self._reader.conn.close()
                self._reader = None

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        """The one writer connection; on first use, SqliteSaver's tables and the blob table."""
        if self._conn is not None:
            return self._conn
        from langgraph.checkpoint.sqlite import SqliteSaver

        directory = Path(self.path).expanduser().resolve().parent
        if not directory.is_dir():
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"target {self.name!r}: directory {directory} of SQLite file {self.path!r} does not exist",
            )
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_s
        )
        try:
            SqliteSaver(conn).setup()  # PRAGMA journal_mode=WAL and its tables, if missing
            conn.execute(CREATE_BLOB_TABLE)
            conn.execute("PRAGMA synchronous=FULL")  # durable at COMMIT, also in WAL mode
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if str(mode).lower() != "wal":
            conn.close()
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"target {self.name!r}: SQLite file {self.path!r} stays in journal mode {mode!r}, not WAL "
                "(a file on a network filesystem cannot use WAL; put it on a local disk)",
            )
        self._conn = conn
        return conn

    @contextmanager
    def _cursor(self, what: str) -> Iterator[sqlite3.Cursor]:
        with self._lock, self._errors(what):
            cur = self._connection().cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return translated(sqlite3.Error, lambda exc: self._error(exc, what))

    def _error(self, exc: sqlite3.Error, what: str) -> ReplicatorError:
        code = getattr(exc, "sqlite_errorcode", None)
        name = getattr(exc, "sqlite_errorname", None)
        kind = error_kind(code)
        hint = _HINTS.get(kind)
        return ReplicatorError(
            kind,
            f"target {self.name!r} (SQLite {self.path}): {what}: {name + ': ' if name else ''}{exc}"
            + (f" ({hint})" if hint else ""),
        )


class SqliteSink(LayeredSink):
    """``LayeredSink`` over ``SqliteLayout``: what ``[[targets]] kind = "sqlite"`` builds."""

    def __init__(self, name: str, path: str, blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES) -> None:
        self.sqlite = SqliteLayout(name, path)
        super().__init__(self.sqlite, blob_cache_bytes)


__all__ = ["SqliteLayout", "SqliteSink", "error_kind"]
