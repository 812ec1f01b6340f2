"""The Postgres target: PostgresSaver's own tables in another database, written with psycopg 3.

Rows come from ``postgres_layout`` (pure); this module does the I/O. Tables are created by
``PostgresSaver.setup()`` itself when missing, so the app's saver finds exactly its schema. Each
batch is one transaction (durable and visible atomically, so a reader never sees a checkpoint
without its blobs), its statements sent with ``executemany`` (pipelined, one round trip per
group). ``bytea`` values are sent as binary parameters and read back as ``bytes``: no text form
in between. Errors are classified by SQLSTATE into ``ReplicatorError`` kinds naming the target.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import JsonbDumper

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import Blob, BlobRef, CheckpointRef, Form, WriteRef
from connectors.sinks.layout import LayeredSink
from connectors.sinks.postgres_layout import TABLES, rows
from replicator.errors import ErrorKind, ReplicatorError, translated
from replicator.events import CheckpointChange, CheckpointKey, Op, SourceMeta

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_log = structlog.get_logger(__name__)

# SQLSTATEs (and classes, by their first two characters) and what they mean for the replicator.
_SETUP = {"3D000", "3F000", "42501", "42P01", "42703", "25006", "0A000"}
_SETUP_CLASSES = {"28"}  # invalid authorization
_UNREACHABLE = {"57P01", "57P02", "57P03"}  # shutdown, crash, cannot connect now
_UNREACHABLE_CLASSES = {"08"}  # connection exceptions
_BUSY = {"55P03", "57014"}  # lock not available, statement timeout
_BUSY_CLASSES = {"40", "53"}  # serialization failure / deadlock, insufficient resources
_DATA_CLASSES = {"22", "23"}  # data exception (\u0000 in jsonb, ...), integrity violation


def error_kind(sqlstate: str | None) -> ErrorKind:
    """What a failed statement means, by its SQLSTATE (None: the connection itself failed)."""
    if sqlstate is None:
        return ErrorKind.TARGET_UNREACHABLE
    cls = sqlstate[:2]
    if sqlstate in _UNREACHABLE or cls in _UNREACHABLE_CLASSES:
        return ErrorKind.TARGET_UNREACHABLE
    if sqlstate in _SETUP or cls in _SETUP_CLASSES:
        return ErrorKind.TARGET_SETUP
    if sqlstate in _BUSY or cls in _BUSY_CLASSES:
        return ErrorKind.TARGET_THROTTLED
    if cls in _DATA_CLASSES:
        return ErrorKind.MALFORMED_EVENT
    return ErrorKind.INTERNAL


_HINTS = {
    ErrorKind.TARGET_SETUP: "check the dsn, the schema and the user's privileges on PostgresSaver's tables",
    ErrorKind.TARGET_THROTTLED: "the database is busy or out of resources; retried after a backoff",
    ErrorKind.MALFORMED_EVENT: "PostgresSaver's tables refuse this row, as they would the app's own put",
}


class PostgresLayout:
    """PostgresSaver's tables (split form) at ``dsn``, in ``schema`` when given."""

    form = Form.SPLIT

    def __init__(self, name: str, dsn: str, schema: str | None = None) -> None:
        self.name = name
        self._dsn = dsn
        self.schema = schema
        self._conn: psycopg.Connection[Any] | None = None
        self._reader: Any = None  # the saver for verify, on its own connection
        self._ready = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ Layout

    def check(self) -> None:
        with self._errors("checking the database"):
            self._ensure_tables()

    def blob_store(self) -> BlobStore:
        return self

    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        """Blobs from ``checkpoint_blobs`` itself (only a whole-form batch planner asks)."""
        if not refs:
            return {}
        columns = list(zip(*refs, strict=True))
        sql = """
            SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob
            FROM checkpoint_blobs b
            JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS r(t, ns, ch, v)
              ON b.thread_id = r.t AND b.checkpoint_ns = r.ns AND b.channel = r.ch AND b.version = r.v
        """
        with self._cursor("reading blobs") as cur:
            cur.execute(sql, [list(c) for c in columns])
            return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in cur.fetchall()}

    def stored_checkpoint(self, ref: CheckpointRef) -> CheckpointChange | None:
        t, ns, cid = ref
        sql = (
            "SELECT parent_checkpoint_id, checkpoint, metadata FROM checkpoints "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
        )
        with self._cursor(f"reading checkpoint {cid} of thread {t!r}") as cur:
            row = cur.execute(sql, ref).fetchone()
        if row is None:
            return None
        return CheckpointChange(
            Op.UPSERT, CheckpointKey(t, ns, cid), SourceMeta(0), row[0], checkpoint=row[1], metadata=row[2]
        )

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        sql = (
            "SELECT type, blob FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
            "AND checkpoint_id = %s AND task_id = %s AND idx = %s"
        )
        with self._cursor(f"reading a write of thread {ref[0]!r}") as cur:
            row = cur.execute(sql, ref).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def write(self, ops: DurableOps) -> None:
        """The batch's rows in one transaction: all of it is durable, or none of it."""
        statements = rows(ops, self.name).statements()
        with self._lock, self._errors(f"writing a batch ({sum(len(p) for _, p in statements)} rows)"):
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                for sql, params in statements:
                    cur.executemany(sql, params)

    def saver(self) -> BaseCheckpointSaver[str]:
        from langgraph.checkpoint.postgres import PostgresSaver

        if self._reader is None:
            with self._errors("opening PostgresSaver"):
                conn = psycopg.connect(
                    self._dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row, **self._options()
                )
            self._reader = PostgresSaver(conn)
        saver: BaseCheckpointSaver[str] = self._reader
        return saver

    def drop_own_state(self) -> list[str]:
        """Nothing: PostgresSaver's own blob table is the blob store, the replicator adds nothing."""
        return []

    def thread_ids(self) -> Iterable[str]:
        sql = "SELECT thread_id FROM checkpoints UNION SELECT thread_id FROM checkpoint_writes ORDER BY 1"
        with self._cursor("listing threads") as cur:
            return [r[0] for r in cur.execute(sql).fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._reader is not None:
                self._reader.conn.close()
                self._reader = None

    # ------------------------------------------------------------------ plumbing

    def _options(self) -> dict[str, Any]:
        return {"options": f"-c search_path={self.schema}"} if self.schema else {}

    def _connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened (again, after a failure) when needed; tables ensured."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10, **self._options())
            self._conn.adapters.register_dumper(dict, JsonbDumper)  # skeleton and metadata: jsonb
        if not self._ready:
            self._ensure_tables()
        return self._conn

    def _ensure_tables(self) -> None:
        """PostgresSaver's tables, created by its own ``setup()`` when missing or not migrated."""
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.base import MIGRATIONS

        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10, **self._options()) as conn:
            if self.schema is not None:
                found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
                if found.fetchone() is None:
                    raise ReplicatorError(
                        ErrorKind.TARGET_SETUP,
                        f"target {self.name!r}: schema {self.schema!r} does not exist in {self._where()}; "
                        f"create it (CREATE SCHEMA {self.schema}) or remove `schema` from the target",
                    )
            present = conn.execute("SELECT to_regclass('checkpoint_migrations')").fetchone()
            done = -1
            if present is not None and present[0] is not None:
                got = conn.execute("SELECT max(v) FROM checkpoint_migrations").fetchone()
                done = -1 if got is None or got[0] is None else int(got[0])
            if done < len(MIGRATIONS) - 1:
                _log.info("creating PostgresSaver's tables", sink=self.name, where=self._where())
                PostgresSaver(conn).setup()
        self._ready = True

    @contextmanager
    def _cursor(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock, self._errors(what):
            conn = self._connection()
            with conn.cursor() as cur:
                yield cur

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return translated(psycopg.Error, lambda exc: self._error(exc, what))

    def _where(self) -> str:
        info = conninfo_to_dict(self._dsn)
        host = info.get("host") or "localhost"
        at = f"Postgres {host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"
        return at + (f" schema {self.schema}" if self.schema else "")

    def _error(self, exc: psycopg.Error, what: str) -> ReplicatorError:
        sqlstate = exc.sqlstate
        kind = error_kind(sqlstate)
        if sqlstate is None and not isinstance(exc, psycopg.OperationalError):
            kind = ErrorKind.INTERNAL  # a driver misuse, not the network
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        code = f"SQLSTATE {sqlstate}: " if sqlstate else ""
        hint = _HINTS.get(kind)
        return ReplicatorError(
            kind,
            f"target {self.name!r} ({self._where()}): {what}: {code}{message}"
            + (f" ({hint})" if hint else ""),
        )


class PostgresSink(LayeredSink):
    """``LayeredSink`` over ``PostgresLayout``: what ``[[targets]] kind = "postgres"`` builds."""

    def __init__(
        self, name: str, dsn: str, schema: str | None = None, blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES
    ) -> None:
        self.postgres = PostgresLayout(name, dsn, schema)
        super().__init__(self.postgres, blob_cache_bytes)


__all__ = ["TABLES", "PostgresLayout", "PostgresSink", "error_kind"]
