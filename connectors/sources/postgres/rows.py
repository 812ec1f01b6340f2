"""PostgresSaver's three tables, mapped to and from saver-neutral change events.

The only place that knows PostgresSaver's row layout (see langgraph-formats.md, section 2).
Used by both the snapshot and the stream reader, so both produce identical events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    BlobKey,
    CheckpointChange,
    CheckpointKey,
    Op,
    SourceMeta,
    WriteChange,
    WriteKey,
)

RowChange = CheckpointChange | BlobChange | WriteChange

CHECKPOINTS = "checkpoints"
BLOBS = "checkpoint_blobs"
WRITES = "checkpoint_writes"
TABLES = (BLOBS, CHECKPOINTS, WRITES)  # snapshot order: blobs before the checkpoints using them

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    CHECKPOINTS: ("thread_id", "checkpoint_ns", "checkpoint_id"),
    BLOBS: ("thread_id", "checkpoint_ns", "channel", "version"),
    WRITES: ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
}

COLUMNS: dict[str, tuple[str, ...]] = {
    CHECKPOINTS: (
        "thread_id",
        "checkpoint_ns",
        "checkpoint_id",
        "parent_checkpoint_id",
        "checkpoint",
        "metadata",
    ),
    BLOBS: ("thread_id", "checkpoint_ns", "channel", "version", "type", "blob"),
    WRITES: (
        "thread_id",
        "checkpoint_ns",
        "checkpoint_id",
        "task_id",
        "idx",
        "channel",
        "type",
        "blob",
        "task_path",
    ),
}


class Unchanged:
    """Marker for a column Postgres did not resend (unchanged TOAST on UPDATE)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


def _field(row: Mapping[str, Any], column: str, table: str) -> Any:
    try:
        return row[column]
    except KeyError:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"row of {table} has no column {column!r} (columns: {sorted(row)})"
        ) from None


def _text(row: Mapping[str, Any], column: str, table: str) -> str:
    value = _field(row, column, table)
    if not isinstance(value, str):
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"{table}.{column} should be text, got {type(value).__name__}"
        )
    return value


def row_to_event(
    table: str, op: Op, row: Mapping[str, Any], source: SourceMeta, is_unchanged: Any = None
) -> RowChange:
    """One row change of a PostgresSaver table as a LangGraph entity change.

    ``is_unchanged(value)`` tells whether a value is the unchanged-TOAST marker of the reader.
    A delete needs only the primary key columns (replica identity default).
    """

    def unchanged_fields(mapping: dict[str, str]) -> tuple[str, ...]:
        if is_unchanged is None:
            return ()
        return tuple(field for column, field in mapping.items() if is_unchanged(row.get(column)))

    def value(column: str, unchanged: tuple[str, ...], field: str) -> Any:
        return None if field in unchanged else row.get(column)

    if table == CHECKPOINTS:
        key = CheckpointKey(
            _text(row, "thread_id", table),
            _text(row, "checkpoint_ns", table),
            _text(row, "checkpoint_id", table),
        )
        if op is Op.DELETE:
            return CheckpointChange(op=op, key=key, source=source)
        unchanged = unchanged_fields({"checkpoint": "checkpoint", "metadata": "metadata"})
        checkpoint = value("checkpoint", unchanged, "checkpoint")
        metadata = value("metadata", unchanged, "metadata")
        if checkpoint is not None and not isinstance(checkpoint, dict):
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT, f"checkpoints.checkpoint of {key} is not a JSON object"
            )
        return CheckpointChange(
            op=op,
            key=key,
            source=source,
            parent_checkpoint_id=row.get("parent_checkpoint_id"),
            checkpoint=checkpoint,
            metadata=metadata if isinstance(metadata, dict) else ({} if metadata is None else {"": metadata}),
            unchanged=unchanged,
        )
    if table == BLOBS:
        key_b = BlobKey(
            _text(row, "thread_id", table),
            _text(row, "checkpoint_ns", table),
            _text(row, "channel", table),
            _text(row, "version", table),
        )
        if op is Op.DELETE:
            return BlobChange(op=op, key=key_b, source=source)
        unchanged = unchanged_fields({"blob": "data"})
        return BlobChange(
            op=op,
            key=key_b,
            source=source,
            type=_text(row, "type", table),
            data=_bytes(value("blob", unchanged, "data")),
            unchanged=unchanged,
        )
    if table == WRITES:
        key_w = WriteKey(
            _text(row, "thread_id", table),
            _text(row, "checkpoint_ns", table),
            _text(row, "checkpoint_id", table),
            _text(row, "task_id", table),
            int(_field(row, "idx", table)),
        )
        if op is Op.DELETE:
            return WriteChange(op=op, key=key_w, source=source)
        unchanged = unchanged_fields({"blob": "data"})
        return WriteChange(
            op=op,
            key=key_w,
            source=source,
            channel=_text(row, "channel", table),
            type=row.get("type") or "",
            data=_bytes(value("blob", unchanged, "data")),
            task_path=row.get("task_path") or "",
            unchanged=unchanged,
        )
    raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"table {table!r} is not a PostgresSaver table")


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"expected bytea, got {type(value).__name__}")
