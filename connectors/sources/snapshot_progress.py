"""Where a source's resumable initial copy stands: shared by every source that copies its tables
in keyset chunks (Postgres, SQLite) and saves its progress in the state store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from replicator.events import DataChange
from replicator.lifecycle import SnapshotState, snapshot_transition
from replicator.state import SOURCE_STATE, StateStore


@dataclass(frozen=True)
class SnapshotCursor:
    """The next table to read (its index in the source's table order) and the last key read."""

    table_index: int
    after: tuple[Any, ...] | None

    def finished(self, tables: int) -> bool:
        return self.table_index >= tables

    def to_json(self) -> dict[str, Any]:
        return {
            "table_index": self.table_index,
            "after": list(self.after) if self.after is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SnapshotCursor:
        if not data:
            return cls(0, None)
        after = data.get("after")
        return cls(int(data.get("table_index", 0)), tuple(after) if after is not None else None)


@dataclass(frozen=True)
class SnapshotChunk:
    events: list[DataChange]
    cursor: SnapshotCursor  # where the copy stands after this chunk
    rows: int
    bytes: int


@dataclass(frozen=True)
class SnapshotToken:
    """A ``Committed`` token of the copy: confirmed, the copy may resume after ``cursor``."""

    cursor: SnapshotCursor
    rows: int
    done: bool


def progress_doc(
    token: SnapshotToken, *, total: int, size: int, started_at: float | None, position: int | None = None
) -> dict[str, Any]:
    """The state document of a copy at ``token`` (what ``status`` shows and a restart reads)."""
    doc: dict[str, Any] = {
        "cursor": None if token.done else token.cursor.to_json(),
        "rows": token.rows,
        "total": total,
        "bytes": size,
        "started_at": started_at,
        "updated_at": time.time(),
    }
    if position is not None:
        doc["position"] = position
    return doc


def saved_snapshot_state(state: StateStore) -> SnapshotState:
    """Where the initial copy stands, as the source persisted it under ``source``."""
    return SnapshotState.parse((state.get(SOURCE_STATE) or {}).get("snapshot"))


def save_snapshot(state: StateStore, new: SnapshotState, fields: dict[str, Any]) -> None:
    """Move the persisted copy to ``new`` (checked against ``lifecycle``), merging ``fields``."""
    saved = state.get(SOURCE_STATE) or {}
    snapshot_transition(SnapshotState.parse(saved.get("snapshot")), new)
    state.put(SOURCE_STATE, {**saved, **fields, "snapshot": new.value})


__all__ = [
    "SnapshotChunk",
    "SnapshotCursor",
    "SnapshotToken",
    "progress_doc",
    "save_snapshot",
    "saved_snapshot_state",
]
