"""SqliteSaver's rows as change events: the one mapping the snapshot, the stream and
``replicator copy`` share.

A ``checkpoints`` row is a whole checkpoint (``CheckpointDocument``: the serialized checkpoint
with every channel value, ``(type, bytes)`` as stored; metadata from its UTF-8 JSON bytes to a
plain tree, as ``SqliteSaver`` reads it). A ``writes`` row is a ``WriteChange`` with its
``task_path``. Values are never decoded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connectors import json_values
from connectors.sources.sqlite.capture import REQUIRED_COLUMNS, TABLES
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    CheckpointDocument,
    CheckpointKey,
    DataChange,
    Op,
    SourceMeta,
    ThreadDeletion,
    WriteChange,
    WriteKey,
)

# Column order of each table as the snapshot and thread reads select it; keys first.
COLUMNS = {
    "checkpoints": (
        "thread_id",
        "checkpoint_ns",
        "checkpoint_id",
        "parent_checkpoint_id",
        "type",
        "checkpoint",
        "metadata",
    ),
    "writes": (
        "thread_id",
        "checkpoint_ns",
        "checkpoint_id",
        "task_id",
        "idx",
        "task_path",
        "channel",
        "type",
        "value",
    ),
}
PRIMARY_KEYS = {
    "checkpoints": ("thread_id", "checkpoint_ns", "checkpoint_id"),
    "writes": ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
}


def metadata_tree(data: bytes | str | None, where: str) -> dict[str, Any]:
    """Metadata as ``SqliteSaver`` reads it back (``json.loads``; absent: ``{}``), decoded as
    ``connectors.json_values`` does (a third of the stream's time went to ``json.loads``)."""
    if data is None:
        return {}
    try:
        tree = json_values.loads(data)
    except ValueError as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"{where}: metadata is not the JSON SqliteSaver writes: {exc}"
        ) from None
    if not isinstance(tree, dict):
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"{where}: metadata is not a JSON object")
    return tree


def _blob(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a value an app stored as TEXT: its bytes, as SQLite gives them
        return value.encode("utf-8")
    return bytes(value)


def checkpoint_event(
    op: Op,
    key: CheckpointKey,
    meta: SourceMeta,
    parent: str | None = None,
    type_: str | None = None,
    data: Any = None,
    metadata: bytes | str | None = None,
) -> CheckpointDocument:
    if op is Op.DELETE:
        return CheckpointDocument(Op.DELETE, key, meta)
    where = f"checkpoint {key.checkpoint_id} of thread {key.thread_id!r} ns {key.checkpoint_ns!r}"
    return CheckpointDocument(
        Op.UPSERT,
        key,
        meta,
        parent_checkpoint_id=parent,
        type=type_ or "",
        data=_blob(data),
        metadata=metadata_tree(metadata, where),
    )


def write_event(
    op: Op,
    key: WriteKey,
    meta: SourceMeta,
    task_path: str | None = None,
    channel: str | None = None,
    type_: str | None = None,
    data: Any = None,
) -> WriteChange:
    if op is Op.DELETE:
        return WriteChange(Op.DELETE, key, meta)
    return WriteChange(
        Op.UPSERT,
        key,
        meta,
        channel=channel or "",
        type=type_ or "",
        data=_blob(data),
        task_path=task_path or "",
    )


def row_to_event(table: str, row: tuple[Any, ...], meta: SourceMeta) -> DataChange:
    """A row as selected in ``COLUMNS[table]`` order, as an upsert."""
    if table == "checkpoints":
        t, ns, cid, parent, type_, data, metadata = row
        return checkpoint_event(Op.UPSERT, CheckpointKey(t, ns, cid), meta, parent, type_, data, metadata)
    t, ns, cid, task, idx, task_path, channel, type_, data = row
    return write_event(Op.UPSERT, WriteKey(t, ns, cid, task, int(idx)), meta, task_path, channel, type_, data)


def select(table: str) -> str:
    return f"SELECT {', '.join(COLUMNS[table])} FROM {table}"


def check_tables(conn: sqlite3.Connection, path: str) -> None:
    """The file holds SqliteSaver's two tables with the columns its readers use."""
    missing: list[str] = []
    for table in TABLES:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        if not columns:
            missing.append(f"table {table}")
        else:
            missing += [f"{table}.{c}" for c in sorted(REQUIRED_COLUMNS[table] - columns)]
    if missing:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"source database {path} is not a SqliteSaver database: missing {', '.join(missing)}. "
            "Set [source] path to the file the app's SqliteSaver writes (it creates its tables on "
            "first use: run the app once first).",
        )


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent read (in WAL mode a reader never blocks the app's writer, nor waits)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # closed meanwhile (a stage torn down mid-copy): nothing is held any more


def read_thread(conn: sqlite3.Connection, thread_id: str) -> list[DataChange]:
    """One thread as events, ``ThreadDeletion`` first (a target's copy is replaced, not merged),
    then every checkpoint and write. The caller holds the read transaction."""
    meta = SourceMeta(position=0, snapshot=True)
    events: list[DataChange] = [ThreadDeletion(thread_id, meta)]
    for table in TABLES:
        order = ", ".join(PRIMARY_KEYS[table])
        rows = conn.execute(f"{select(table)} WHERE thread_id = ? ORDER BY {order}", (thread_id,))
        for seq, row in enumerate(rows.fetchall(), len(events)):
            events.append(
                row_to_event(table, row, SourceMeta(position=0, seq=seq, table=table, snapshot=True))
            )
    return events


def list_threads(conn: sqlite3.Connection) -> list[str]:
    """Every thread with a checkpoint or a pending write, sorted."""
    rows = conn.execute("SELECT thread_id FROM checkpoints UNION SELECT thread_id FROM writes ORDER BY 1")
    return [row[0] for row in rows.fetchall()]
