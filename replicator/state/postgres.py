"""The state store in a schema of a Postgres database (by default the source's own).

Durable exactly where the slot is when it shares the source database, survives pod restarts,
and lets ``replicator status`` answer when no daemon runs. The forward-only rule is enforced
by the upsert itself (a conditional ``DO UPDATE``), so it costs no extra round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.sources.postgres.ddl import ENSURE_BLOBS, ENSURE_META, ENSURE_SCHEMA, ENSURE_STATE
from connectors.sources.postgres.ddl import STATE_SCHEMA as STATE_SCHEMA
from replicator.errors import ErrorKind, ReplicatorError
from replicator.state.base import SCHEMA_VERSION, check_forward, check_version, migrate_v1
from replicator.state.blobs import Blob, BlobRef

_UPSERT = f"""INSERT INTO {STATE_SCHEMA}.state AS s (name, value)
    SELECT * FROM unnest(%s::text[], %s::jsonb[])
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
    WHERE NOT COALESCE((EXCLUDED.value->>'position')::numeric < (s.value->>'position')::numeric, false)
    RETURNING name"""


class PostgresStateStore:
    """One row per stage in ``langgraph_replicator.state``, the layout version in ``.meta``."""

    def __init__(self, dsn: str, *, create: bool = True) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._create = create

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise ReplicatorError(
                    ErrorKind.SOURCE_UNREACHABLE, f"cannot connect to the state database: {exc}"
                ) from None
            try:
                if self._create:
                    self._set_up(conn)
                else:
                    check_version(self._version(conn), f"{STATE_SCHEMA}.meta")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int | None:
        try:
            row = conn.execute(
                f"SELECT value FROM {STATE_SCHEMA}.meta WHERE key = 'schema_version'"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return int(row[0]) if row else None

    def _set_up(self, conn: psycopg.Connection[Any]) -> None:
        """Create the schema, or migrate an older layout; refuse a newer one."""
        conn.execute(ENSURE_SCHEMA)
        conn.execute(ENSURE_STATE)
        conn.execute(ENSURE_META)
        conn.execute(ENSURE_BLOBS)
        with conn.transaction():
            conn.execute(f"LOCK TABLE {STATE_SCHEMA}.meta IN EXCLUSIVE MODE")
            version = self._version(conn)
            check_version(version, f"{STATE_SCHEMA}.meta")
            if version == SCHEMA_VERSION:
                return
            for name, value in conn.execute(f"SELECT name, value FROM {STATE_SCHEMA}.state").fetchall():
                moved = migrate_v1(name, value)
                if moved is not None:
                    conn.execute(
                        f"UPDATE {STATE_SCHEMA}.state SET value = %s WHERE name = %s", (Jsonb(moved), name)
                    )
            conn.execute(
                f"""INSERT INTO {STATE_SCHEMA}.meta (key, value) VALUES ('schema_version', %s)
                    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
                (str(SCHEMA_VERSION),),
            )

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self._connection().execute(sql, params)
                return cur.fetchall() if cur.description else []
            except psycopg.errors.UndefinedTable:
                return []
            except psycopg.OperationalError as exc:
                self._conn = None
                raise ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, f"state database error: {exc}") from None

    def get(self, name: str) -> dict[str, Any] | None:
        rows = self._run(f"SELECT value FROM {STATE_SCHEMA}.state WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self.put_many({name: value})

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        """One statement for many rows: one round trip and one WAL record per batch."""
        if not values:
            return
        names = list(values)
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    written = {
                        row[0]
                        for row in conn.execute(
                            _UPSERT, (names, [Jsonb(values[n]) for n in names])
                        ).fetchall()
                    }
                    for name in names:
                        if name not in written:  # refused by the forward-only condition
                            row = conn.execute(
                                f"SELECT value FROM {STATE_SCHEMA}.state WHERE name = %s", (name,)
                            ).fetchone()
                            check_forward(name, row[0] if row else None, values[name])  # raises: rollback
            except psycopg.errors.UndefinedTable:
                return
            except psycopg.OperationalError as exc:
                self._conn = None
                raise ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, f"state database error: {exc}") from None

    def delete(self, name: str) -> None:
        self._run(f"DELETE FROM {STATE_SCHEMA}.state WHERE name = %s", (name,))

    def clear(self) -> None:
        self._run(f"DELETE FROM {STATE_SCHEMA}.state")
        self._run(f"DELETE FROM {STATE_SCHEMA}.blobs")

    def blob_get_many(self, target: str, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        if not refs:
            return {}
        t, ns, ch, v = (list(part) for part in zip(*refs, strict=True))
        rows = self._run(
            f"""SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.data
                FROM {STATE_SCHEMA}.blobs b
                JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(t, ns, ch, v)
                  ON (b.thread_id, b.checkpoint_ns, b.channel, b.version) = (k.t, k.ns, k.ch, k.v)
                WHERE b.target = %s""",
            (t, ns, ch, v, target),
        )
        return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}

    def blob_apply(
        self,
        target: str,
        put: Sequence[tuple[BlobRef, Blob]] = (),
        delete: Sequence[BlobRef] = (),
        delete_threads: Sequence[str] = (),
    ) -> None:
        if not (put or delete or delete_threads):
            return
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    if delete_threads:
                        cur.execute(
                            f"DELETE FROM {STATE_SCHEMA}.blobs WHERE target = %s AND thread_id = ANY(%s)",
                            (target, list(delete_threads)),
                        )
                    cur.executemany(
                        f"""DELETE FROM {STATE_SCHEMA}.blobs WHERE target = %s AND thread_id = %s
                            AND checkpoint_ns = %s AND channel = %s AND version = %s""",
                        [(target, *ref) for ref in delete],
                    )
                    cur.executemany(
                        f"""INSERT INTO {STATE_SCHEMA}.blobs
                            (target, thread_id, checkpoint_ns, channel, version, type, data)
                            VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                        [(target, *ref, *blob) for ref, blob in put],
                    )
            except psycopg.OperationalError as exc:
                self._conn = None
                raise ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, f"state database error: {exc}") from None

    def all(self) -> dict[str, dict[str, Any]]:
        return {name: value for name, value in self._run(f"SELECT name, value FROM {STATE_SCHEMA}.state")}

    def prefixed(self, prefix: str) -> dict[str, dict[str, Any]]:
        rows = self._run(
            f"SELECT name, value FROM {STATE_SCHEMA}.state WHERE starts_with(name, %s)", (prefix,)
        )
        return {name: value for name, value in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
