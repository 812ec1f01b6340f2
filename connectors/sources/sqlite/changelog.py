"""Reading, planning and trimming the changelog (pure planning; small reads and deletes).

Positions: a changelog ``seq`` is a position; ``P`` as a *confirmed* or *next* position means
"every row with ``seq < P``". An event carries the seq of its (first) changelog row and is
followed by ``Committed(last seq + 1)``; a heartbeat carries the next seq to read. ``confirm(P)``
lets rows with ``seq < P`` be trimmed.

``delete_thread`` as one event: SqliteSaver deletes a thread's rows in one transaction, and
SQLite has one writer, so they are one contiguous run of delete rows of that thread, the last of
which left the thread with no row (``emptied``). ``plan`` turns such a run into one
``ThreadDeletion``. That is exact, not a guess: right after the run the source has no row of the
thread, and a target that held what the source held before the run held exactly the rows the
run deletes. A run that does not end with the thread empty (an app deleting single rows) stays
per-row deletes. A run cut off by a read's row limit is held back and read whole next time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from connectors.sources.sqlite.capture import CHANGELOG
from connectors.sources.sqlite.rows import checkpoint_event, write_event
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import CheckpointKey, DataChange, Op, SourceMeta, ThreadDeletion, WriteKey

_COLUMNS = (
    "seq",
    "tbl",
    "op",
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "task_id",
    "idx",
    "parent_checkpoint_id",
    "task_path",
    "channel",
    "type",
    "value",
    "metadata",
    "emptied",
    "ts",
)
SELECT = f"SELECT {', '.join(_COLUMNS)} FROM {CHANGELOG} WHERE seq >= ? ORDER BY seq LIMIT ?"


@dataclass(frozen=True)
class LogRow:
    seq: int
    tbl: str
    op: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    task_id: str | None = None
    idx: int | None = None
    parent_checkpoint_id: str | None = None
    task_path: str | None = None
    channel: str | None = None
    type: str | None = None
    value: Any = None
    metadata: Any = None
    emptied: int = 0
    ts: float = 0.0

    @property
    def is_delete(self) -> bool:
        return self.op == "d"


@dataclass(frozen=True)
class Unit:
    """One event and the position to confirm once it is published (its last row's seq + 1)."""

    event: DataChange
    next_position: int
    commit_ts: float


def read(conn: sqlite3.Connection, start: int, limit: int) -> list[LogRow]:
    """Up to ``limit`` rows with ``seq >= start``, in order: whole transactions, as committed."""
    return [LogRow(*row) for row in conn.execute(SELECT, (start, limit)).fetchall()]


def row_event(row: LogRow) -> DataChange:
    """One changelog row as its event (an upsert carries the new values the trigger copied)."""
    op = Op.DELETE if row.is_delete else Op.UPSERT
    meta = SourceMeta(position=row.seq, commit_ts=row.ts or 0.0, seq=row.seq, table=row.tbl)
    if row.tbl == "checkpoints":
        key = CheckpointKey(row.thread_id, row.checkpoint_ns, row.checkpoint_id)
        return checkpoint_event(op, key, meta, row.parent_checkpoint_id, row.type, row.value, row.metadata)
    if row.tbl == "writes":
        if row.task_id is None or row.idx is None:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT, f"changelog row {row.seq}: a write without task_id or idx"
            )
        key_w = WriteKey(row.thread_id, row.checkpoint_ns, row.checkpoint_id, row.task_id, int(row.idx))
        return write_event(op, key_w, meta, row.task_path, row.channel, row.type, row.value)
    raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"changelog row {row.seq}: unknown table {row.tbl!r}")


def plan(rows: list[LogRow], complete: bool) -> tuple[list[Unit], int | None]:
    """The events of ``rows`` and where the next read starts (None: after the last row).

    ``complete``: the read reached the end of the changelog, so its last transaction is whole.
    Otherwise a trailing run of deletes not ending in ``emptied`` may continue in the next rows:
    it is left out, and the next read starts at its first row.
    """
    units: list[Unit] = []
    i = 0
    while i < len(rows):
        row = rows[i]
        if not row.is_delete:
            units.append(Unit(row_event(row), row.seq + 1, row.ts or 0.0))
            i += 1
            continue
        end = i  # the run: consecutive deletes of this thread, up to one that emptied it
        while not rows[end].emptied and end + 1 < len(rows):
            following = rows[end + 1]
            if not following.is_delete or following.thread_id != row.thread_id:
                break
            end += 1
        last = rows[end]
        if last.emptied:
            meta = SourceMeta(position=row.seq, commit_ts=last.ts or 0.0, seq=row.seq, table=row.tbl)
            units.append(Unit(ThreadDeletion(row.thread_id, meta), last.seq + 1, last.ts or 0.0))
        elif end == len(rows) - 1 and not complete:
            return units, row.seq  # may go on in rows not read yet
        else:
            units += [Unit(row_event(r), r.seq + 1, r.ts or 0.0) for r in rows[i : end + 1]]
        i = end + 1
    return units, None


def bounds(conn: sqlite3.Connection) -> tuple[int | None, int | None]:
    """The lowest and highest seq still in the changelog (None, None when it is empty)."""
    row = conn.execute(f"SELECT min(seq), max(seq) FROM {CHANGELOG}").fetchone()
    return (row[0], row[1]) if row else (None, None)


def trim(conn: sqlite3.Connection, below: int) -> int:
    """Delete rows with ``seq < below`` (published and applied everywhere); how many."""
    return conn.execute(f"DELETE FROM {CHANGELOG} WHERE seq < ?", (below,)).rowcount
