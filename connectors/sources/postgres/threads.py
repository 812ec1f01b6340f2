"""PostgresSaver's tables read one thread at a time: ``replicator copy`` and the back-fill of a
thread at cutover (``switchboard.thread_copy``) share this one query."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from connectors import json_values
from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.rows import CHECKPOINTS, COLUMNS, PRIMARY_KEYS, TABLES, WRITES, row_to_event
from connectors.sources.postgres.setup import connect
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import DataChange, Op, SourceMeta, ThreadDeletion


def read_thread(conn: psycopg.Connection[Any], schema: str, thread_id: str) -> list[DataChange]:
    """The thread as events, ``ThreadDeletion`` first, blobs before the checkpoints using them.
    The caller holds the transaction that makes the three reads one snapshot."""
    meta = SourceMeta(position=0, snapshot=True)
    events: list[DataChange] = [ThreadDeletion(thread_id, meta)]
    for table in TABLES:
        query = sql.SQL("SELECT {} FROM {} WHERE thread_id = %s ORDER BY {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS[table]),
            sql.Identifier(schema, table),
            sql.SQL(", ").join(sql.Identifier(c) for c in PRIMARY_KEYS[table]),
        )
        for seq, row in enumerate(conn.execute(query, (thread_id,)).fetchall(), len(events)):
            table_meta = SourceMeta(position=0, seq=seq, table=table, snapshot=True)
            events.append(row_to_event(table, Op.UPSERT, row, table_meta))
    return events


def list_threads(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Every thread with a checkpoint or a pending write."""
    query = sql.SQL("SELECT thread_id FROM {} UNION SELECT thread_id FROM {} ORDER BY 1").format(
        sql.Identifier(schema, CHECKPOINTS), sql.Identifier(schema, WRITES)
    )
    return [row["thread_id"] for row in conn.execute(query).fetchall()]


class PostgresThreads:
    """A ``ThreadSource`` over a PostgresSaver database: each thread in one repeatable-read
    transaction, so a thread the app writes meanwhile is copied as it was at one instant."""

    def __init__(self, config: PostgresSourceConfig) -> None:
        self.config = config
        self.conn: psycopg.Connection[Any] = connect(
            config.dsn.get_secret_value(), autocommit=True, row_factory=dict_row
        )
        # checkpoint and metadata are jsonb: decoded as the stream decodes them (msgspec, same values)
        set_json_loads(json_values.loads, self.conn)
        self._check_tables()
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def _check_tables(self) -> None:
        """A copy needs only the three tables (no wal_level, no replication right)."""
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = ANY(%s)",
            (self.config.schema_name, list(TABLES)),
        ).fetchall()
        missing = sorted(set(TABLES) - {row["table_name"] for row in rows})
        if missing:
            raise ReplicatorError(
                ErrorKind.SOURCE_SETUP,
                f"the source has no PostgresSaver table(s) {', '.join(missing)} in schema "
                f"{self.config.schema_name!r}: is source.dsn the database your app's PostgresSaver "
                "writes to (and source.schema its schema)?",
            )

    def threads(self) -> list[str]:
        return list_threads(self.conn, self.config.schema_name)

    def thread_events(self, thread_id: str) -> list[DataChange]:
        with self.conn.transaction():
            return read_thread(self.conn, self.config.schema_name, thread_id)

    def close(self) -> None:
        self.conn.close()


__all__ = ["PostgresThreads", "list_threads", "read_thread"]
