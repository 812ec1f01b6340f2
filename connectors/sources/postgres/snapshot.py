"""Consistent initial copy of the three PostgresSaver tables, in resumable keyset chunks.

On the first run the snapshot is the one the slot exported when it was created, so its end
joins the stream at the slot's consistent point with no gap and no overlap. When a run dies
mid-snapshot, the exported snapshot is gone: the next run continues from the saved keyset
cursor in a fresh REPEATABLE READ snapshot taken *after* the slot's consistent point, and the
stream still starts at that point. Every change after it is then replayed over the newer rows,
and since each event carries a whole row and apply is idempotent, every key ends at its last
change: a bounded overlap that converges, never a gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from connectors.sources.postgres.rows import COLUMNS, PRIMARY_KEYS, TABLES, row_to_event
from connectors.sources.snapshot_progress import SnapshotChunk, SnapshotCursor
from replicator.events import DataChange, Op, SourceMeta


def count_rows(conn: psycopg.Connection[Any], schema: str) -> int:
    """Estimated total rows (planner statistics): for progress only."""
    row = conn.execute(
        """SELECT COALESCE(SUM(GREATEST(c.reltuples, 0)), 0)::bigint FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)""",
        (schema, list(TABLES)),
    ).fetchone()
    estimate = int(row[0]) if row else 0
    if estimate > 0:
        return estimate
    # Never analyzed (small or new tables): count exactly, which is cheap exactly then.
    total = 0
    for table in TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        counted = conn.execute(query).fetchone()
        total += int(counted[0]) if counted else 0
    return total


def read_snapshot(
    conn: psycopg.Connection[Any],
    *,
    schema: str,
    start: SnapshotCursor,
    position: int,
    chunk_rows: int,
    exported_snapshot: str | None = None,
) -> Iterator[SnapshotChunk]:
    """Yield chunks from ``start`` to the end, all in one transaction on ``conn``.

    ``position`` (the slot's consistent point) is stamped on every event: these rows are the
    state as of that point, or (after a resume) of a later one.
    """
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    if exported_snapshot is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported_snapshot)))
    else:
        conn.execute("SELECT 1")
    cursor = start
    seq = 0
    try:
        while not cursor.finished(len(TABLES)):
            table = TABLES[cursor.table_index]
            pk = PRIMARY_KEYS[table]
            columns = COLUMNS[table]
            select = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(schema, table)
            )
            order = sql.SQL(" ORDER BY {} LIMIT {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in pk), sql.Literal(chunk_rows)
            )
            if cursor.after is None:
                query = select + order
                params: tuple[Any, ...] = ()
            else:
                where = sql.SQL(" WHERE ({}) > ({})").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in pk),
                    sql.SQL(", ").join(sql.Placeholder() * len(pk)),
                )
                query = select + where + order
                params = cursor.after
            rows = conn.execute(query, params).fetchall()
            events: list[DataChange] = []
            size = 0
            for row in rows:
                record = dict(zip(columns, row, strict=True))
                seq += 1
                meta = SourceMeta(position=position, seq=seq, table=table, snapshot=True)
                events.append(row_to_event(table, Op.UPSERT, record, meta))
                size += sum(len(v) for v in row if isinstance(v, bytes))
            if len(rows) < chunk_rows:
                cursor = SnapshotCursor(cursor.table_index + 1, None)
            else:
                last = rows[-1]
                cursor = SnapshotCursor(cursor.table_index, tuple(last[columns.index(c)] for c in pk))
            yield SnapshotChunk(events, cursor, len(rows), size)
    finally:
        conn.rollback()
