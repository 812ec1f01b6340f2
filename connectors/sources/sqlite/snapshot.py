"""Consistent initial copy of SqliteSaver's two tables, in resumable keyset chunks.

On the first run one read transaction (a WAL snapshot: the app keeps writing) reads the
changelog's last seq ``S`` and then every row: the copy is the state as of ``S``, and the
stream starts at ``S + 1``, with no gap and no overlap. When a run dies mid-copy, the next run
continues from the saved keyset cursor in a fresh, newer read transaction and still streams from
``S + 1``: changes after ``S`` are then replayed over rows that may already show them. Each event
carries a whole row (or a whole-thread deletion) and apply is idempotent, so every key ends at
its last change: a bounded overlap that converges, never a gap (rows with ``seq > S`` are never
trimmed before the copy is done).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from connectors.sources.snapshot_progress import SnapshotChunk, SnapshotCursor
from connectors.sources.sqlite.capture import TABLES
from connectors.sources.sqlite.rows import COLUMNS, PRIMARY_KEYS, row_to_event, select
from replicator.events import DataChange, SourceMeta


def count_rows(conn: sqlite3.Connection) -> int:
    """Rows in both tables (for progress; counted on the primary key index, values unread)."""
    return sum(int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in TABLES)


def read_chunks(
    conn: sqlite3.Connection, *, start: SnapshotCursor, position: int, chunk_rows: int
) -> Iterator[SnapshotChunk]:
    """Chunks from ``start`` to the end. The caller holds the read transaction on ``conn``.

    ``position`` (the first seq the stream will read) is stamped on every event.
    """
    cursor = start
    seq = 0
    while not cursor.finished(len(TABLES)):
        table = TABLES[cursor.table_index]
        pk = PRIMARY_KEYS[table]
        order = f" ORDER BY {', '.join(pk)} LIMIT ?"
        if cursor.after is None:
            rows = conn.execute(select(table) + order, (chunk_rows,)).fetchall()
        else:
            where = f" WHERE ({', '.join(pk)}) > ({', '.join('?' * len(pk))})"
            rows = conn.execute(select(table) + where + order, (*cursor.after, chunk_rows)).fetchall()
        events: list[DataChange] = []
        size = 0
        for row in rows:
            seq += 1
            meta = SourceMeta(position=position, seq=seq, table=table, snapshot=True)
            events.append(row_to_event(table, row, meta))
            size += sum(len(v) for v in row if isinstance(v, bytes))
        if len(rows) < chunk_rows:
            cursor = SnapshotCursor(cursor.table_index + 1, None)
        else:
            columns = COLUMNS[table]
            cursor = SnapshotCursor(cursor.table_index, tuple(rows[-1][columns.index(c)] for c in pk))
        yield SnapshotChunk(events, cursor, len(rows), size)
