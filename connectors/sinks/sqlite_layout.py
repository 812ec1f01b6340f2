"""The rows of SqliteSaver's tables for a planned batch (whole form), and our blob table. Pure.

SqliteSaver (langgraph-checkpoint-sqlite 3.1) keeps two tables, created by its ``setup()``:

* ``checkpoints`` (thread_id, checkpoint_ns, checkpoint_id) -> parent_checkpoint_id, type,
  checkpoint (``dumps_typed`` of the whole checkpoint, every channel value in it), metadata (the
  UTF-8 bytes of ``json.dumps(metadata, ensure_ascii=False)``)
* ``writes`` (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) -> task_path, channel, type,
  value

The statements follow ``SqliteSaver.put``/``put_writes``: checkpoints ``INSERT OR REPLACE``, a
write replaced only when special (``idx < 0``), otherwise ``INSERT OR IGNORE``.

Replicator-owned, in the same file: ``lgrepl_blobs``, the blob store. A split-form source shares
channel values between checkpoints as insert-only ``(channel, version)`` blobs, while SqliteSaver
stores every checkpoint whole, so assembling one needs blobs written arbitrarily long before it.
Kept in the target's own file they survive restarts with no rebuild, are written in the same
transaction as the checkpoints that use them, and go away with their thread (SqliteSaver never
reads the table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from connectors.langgraph.batch import DurableOps, WholeCheckpoint
from replicator.errors import ErrorKind, ReplicatorError

BLOB_TABLE = "lgrepl_blobs"
CREATE_BLOB_TABLE = f"""
    CREATE TABLE IF NOT EXISTS {BLOB_TABLE} (
        thread_id TEXT NOT NULL,
        checkpoint_ns TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        type TEXT NOT NULL,
        blob BLOB,
        PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
    ) WITHOUT ROWID
"""
TABLES = ("checkpoints", "writes", BLOB_TABLE)

_KEY = {
    "checkpoints": ("thread_id", "checkpoint_ns", "checkpoint_id"),
    "writes": ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
    BLOB_TABLE: ("thread_id", "checkpoint_ns", "channel", "version"),
}
DELETE_THREAD = tuple(f"DELETE FROM {table} WHERE thread_id = ?" for table in TABLES)
DELETE_CHECKPOINT, DELETE_WRITE, DELETE_BLOB = (
    f"DELETE FROM {table} WHERE " + " AND ".join(f"{column} = ?" for column in _KEY[table])
    for table in TABLES
)
INSERT_BLOB = (
    f"INSERT OR IGNORE INTO {BLOB_TABLE} (thread_id, checkpoint_ns, channel, version, type, blob) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
PUT_CHECKPOINT = (
    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
    "type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_WRITE = (
    "INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
)
REPLACE_WRITE = f"INSERT OR REPLACE {_WRITE}VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_WRITE = f"INSERT OR IGNORE {_WRITE}VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def metadata_bytes(metadata: Any, where: str) -> bytes:
    """Metadata as SqliteSaver.put stores it: UTF-8 JSON, non-ASCII kept as is."""
    if isinstance(metadata, msgspec.Raw):
        metadata = msgspec.msgpack.decode(metadata)
    try:
        return json.dumps(metadata, ensure_ascii=False).encode("utf-8", "ignore")
    except (TypeError, ValueError) as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"{where}: metadata cannot be written as JSON for SqliteSaver: {exc}"
        ) from None


def stored_metadata(data: bytes | None) -> Any:
    return {} if data is None else json.loads(data)


@dataclass
class Rows:
    """What one batch does to the file, statement by statement, in order: thread deletions, then
    per-row deletes, then blobs, checkpoints and writes."""

    deleted_threads: list[str] = field(default_factory=list)
    checkpoint_deletes: list[tuple[str, str, str]] = field(default_factory=list)
    write_deletes: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    blob_deletes: list[tuple[str, str, str, str]] = field(default_factory=list)
    blobs: list[tuple[str, str, str, str, str, bytes | None]] = field(default_factory=list)
    checkpoints: list[tuple[str, str, str, str | None, str, bytes, bytes]] = field(default_factory=list)
    replaced_writes: list[tuple[str, str, str, str, str, int, str, str, bytes]] = field(default_factory=list)
    inserted_writes: list[tuple[str, str, str, str, str, int, str, str, bytes]] = field(default_factory=list)

    def statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        threads = [(t,) for t in self.deleted_threads]
        groups: list[tuple[str, list[tuple[Any, ...]]]] = [(sql, threads) for sql in DELETE_THREAD]
        groups += [
            (DELETE_CHECKPOINT, list(self.checkpoint_deletes)),
            (DELETE_WRITE, list(self.write_deletes)),
            (DELETE_BLOB, list(self.blob_deletes)),
            (INSERT_BLOB, list(self.blobs)),
            (PUT_CHECKPOINT, list(self.checkpoints)),
            (REPLACE_WRITE, list(self.replaced_writes)),
            (INSERT_WRITE, list(self.inserted_writes)),
        ]
        return [(sql, params) for sql, params in groups if params]


def rows(ops: DurableOps, target: str) -> Rows:
    """The rows of ``ops`` (each entity appears once in it, so order within a group is free)."""
    out = Rows(deleted_threads=list(ops.deleted_threads))
    for (t, ns, cid), checkpoint in ops.checkpoints.items():
        if checkpoint is None:
            out.checkpoint_deletes.append((t, ns, cid))
            continue
        if not isinstance(checkpoint, WholeCheckpoint):
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"target {target!r} stores whole checkpoints (SqliteSaver), was given a split one: "
                f"checkpoint {cid} of thread {t!r} ns {ns!r}",
            )
        where = f"checkpoint {cid} of thread {t!r} ns {ns!r}"
        out.checkpoints.append(
            (
                t,
                ns,
                cid,
                checkpoint.parent_checkpoint_id,
                checkpoint.type,
                checkpoint.data,
                metadata_bytes(checkpoint.metadata, where),
            )
        )
    for (t, ns, cid, task, idx), write in ops.writes.items():
        if write is None:
            out.write_deletes.append((t, ns, cid, task, idx))
            continue
        row = (t, ns, cid, task, write.task_path, idx, write.channel, write.type, write.data)
        (out.replaced_writes if idx < 0 else out.inserted_writes).append(row)
    for (t, ns, channel, version), blob in ops.blobs.items():
        if blob is None:
            out.blob_deletes.append((t, ns, channel, version))
        else:
            out.blobs.append((t, ns, channel, version, blob[0], blob[1]))
    return out
