"""The rows of PostgresSaver's tables for a planned batch (split form). Pure: no I/O.

PostgresSaver (langgraph-checkpoint-postgres 3.2) keeps three tables, created by its ``setup()``:

* ``checkpoints`` (thread_id, checkpoint_ns, checkpoint_id) -> parent_checkpoint_id, type (NULL),
  checkpoint jsonb (the skeleton: primitive channel values inline), metadata jsonb
* ``checkpoint_blobs`` (thread_id, checkpoint_ns, channel, version) -> type, blob bytea: every
  other channel value, written once per version and shared by later checkpoints
* ``checkpoint_writes`` (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) -> channel, type,
  blob bytea, task_path

A split-form batch maps onto them one entity per row, so the target holds the source's rows as
they are: blob bytes go into ``bytea`` untouched, the skeleton and metadata into ``jsonb``. The
statements follow ``PostgresSaver.put``/``put_writes``: blobs are insert-only (``DO NOTHING``),
checkpoints are upserted, a write is overwritten only when special (``idx < 0``: error,
interrupt, resume, scheduled), otherwise inserted if absent. The blob table is also the blob
store the LangGraph layer reads from: a split target needs no replicator-owned rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.langgraph.batch import DurableOps
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import CheckpointChange

CheckpointRow = tuple[str, str, str, str | None, dict[str, Any], dict[str, Any]]
BlobRow = tuple[str, str, str, str, str, bytes | None]
WriteRow = tuple[str, str, str, str, str, int, str, str, bytes]  # PostgresSaver's column order

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")

DELETE_THREADS = tuple(f"DELETE FROM {table} WHERE thread_id = ANY(%s)" for table in TABLES)

_KEY = {
    "checkpoints": ("thread_id", "checkpoint_ns", "checkpoint_id"),
    "checkpoint_blobs": ("thread_id", "checkpoint_ns", "channel", "version"),
    "checkpoint_writes": ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
}
DELETE_CHECKPOINT, DELETE_BLOB, DELETE_WRITE = (
    f"DELETE FROM {table} WHERE " + " AND ".join(f"{column} = %s" for column in _KEY[table])
    for table in TABLES
)

# %b: bytea travels in binary, never through a text (hex) form.
INSERT_BLOB = """
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    VALUES (%s, %s, %s, %s, %s, %b)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

# PostgresSaver's upsert; the parent is set too, so that the row is the source's row.
UPSERT_CHECKPOINT = """
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
        parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,
        checkpoint = EXCLUDED.checkpoint,
        metadata = EXCLUDED.metadata
"""

_WRITE_COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
UPSERT_WRITE = f"""
    INSERT INTO checkpoint_writes ({_WRITE_COLUMNS})
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %b)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
        channel = EXCLUDED.channel,
        type = EXCLUDED.type,
        blob = EXCLUDED.blob
"""
INSERT_WRITE = f"""
    INSERT INTO checkpoint_writes ({_WRITE_COLUMNS})
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %b)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
"""


@dataclass
class Rows:
    """What one batch does to PostgresSaver's tables, statement by statement, in order:
    thread deletions first, then per-row deletes, then blobs, checkpoints and writes."""

    deleted_threads: list[str] = field(default_factory=list)
    checkpoint_deletes: list[tuple[str, str, str]] = field(default_factory=list)
    blob_deletes: list[tuple[str, str, str, str]] = field(default_factory=list)
    write_deletes: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    blobs: list[BlobRow] = field(default_factory=list)
    checkpoints: list[CheckpointRow] = field(default_factory=list)
    overwritten_writes: list[WriteRow] = field(default_factory=list)
    inserted_writes: list[WriteRow] = field(default_factory=list)

    def statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """``(sql, parameter rows)`` pairs to run in this order; empty groups left out.
        Checkpoint rows carry plain dicts where the I/O layer adapts them to jsonb."""
        groups: list[tuple[str, list[tuple[Any, ...]]]] = []
        if self.deleted_threads:
            groups += [(sql, [(self.deleted_threads,)]) for sql in DELETE_THREADS]
        groups += [
            (DELETE_CHECKPOINT, list(self.checkpoint_deletes)),
            (DELETE_BLOB, list(self.blob_deletes)),
            (DELETE_WRITE, list(self.write_deletes)),
            (INSERT_BLOB, list(self.blobs)),
            (UPSERT_CHECKPOINT, list(self.checkpoints)),
            (UPSERT_WRITE, list(self.overwritten_writes)),
            (INSERT_WRITE, list(self.inserted_writes)),
        ]
        return [(sql, params) for sql, params in groups if params]


def rows(ops: DurableOps, target: str) -> Rows:
    """The rows of ``ops``; every entity appears once in ``ops``, so the order within a group is free."""
    out = Rows(deleted_threads=list(ops.deleted_threads))
    for (t, ns, cid), checkpoint in ops.checkpoints.items():
        if checkpoint is None:
            out.checkpoint_deletes.append((t, ns, cid))
            continue
        if not isinstance(checkpoint, CheckpointChange) or checkpoint.checkpoint is None:
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"target {target!r} stores PostgresSaver's split form, but checkpoint {cid} of thread "
                f"{t!r} ns {ns!r} came without its skeleton",
            )
        out.checkpoints.append(
            (t, ns, cid, checkpoint.parent_checkpoint_id, checkpoint.checkpoint, checkpoint.metadata or {})
        )
    for (t, ns, channel, version), blob in ops.blobs.items():
        if blob is None:
            out.blob_deletes.append((t, ns, channel, version))
        else:
            out.blobs.append((t, ns, channel, version, blob[0], blob[1]))
    for (t, ns, cid, task, idx), write in ops.writes.items():
        if write is None:
            out.write_deletes.append((t, ns, cid, task, idx))
            continue
        row: WriteRow = (t, ns, cid, task, write.task_path, idx, write.channel, write.type, write.data)
        (out.overwritten_writes if idx < 0 else out.inserted_writes).append(row)
    return out
