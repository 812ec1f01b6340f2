"""The change-event model shared by every source and sink.

Events carry LangGraph entities (checkpoint, blob, pending write, thread), not table rows:
a source maps its own row layout to these, a sink maps these to its own layout, so N sources
and M sinks need N + M mappings instead of N x M. No I/O lives here.

Serialized values stay opaque: a blob or a write carries the saver's ``(type, bytes)`` pair as
stored. A checkpoint carries the saver-neutral *skeleton* (``v``, ``ts``, ``id``,
``channel_versions``, ``versions_seen``, ``updated_channels`` and the primitive channel values
that PostgresSaver keeps inline), plus its metadata, both as plain JSON-compatible trees.
Non-primitive channel values travel as blobs keyed by ``(channel, version)``, exactly as
PostgresSaver shares them between checkpoints. A source whose saver stores each checkpoint whole
(SqliteSaver, InMemorySaver) emits ``CheckpointDocument`` instead; ``connectors.langgraph.forms``
converts between the two forms.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Op(enum.StrEnum):
    UPSERT = "u"
    DELETE = "d"


class ControlKind(enum.StrEnum):
    SNAPSHOT_START = "snapshot_start"
    SNAPSHOT_END = "snapshot_end"
    HEARTBEAT = "heartbeat"


class SourceMeta(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where an event came from in the source's own log.

    ``position`` is the source position at which the change became durable (a Postgres commit
    LSN, a changelog sequence): an opaque, ordered integer that only the source can format.
    Events of one transaction share it; ``seq`` orders them inside it. On the wire it keeps its
    first name, ``lsn``, so topics written by earlier versions still decode.
    ``commit_ts`` is the commit time in epoch seconds (0 when the source cannot tell).
    """

    position: int = msgspec.field(name="lsn")
    commit_ts: float = 0.0
    xid: int = 0
    seq: int = 0
    table: str = ""
    snapshot: bool = False


class CheckpointKey(msgspec.Struct, frozen=True, array_like=True):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str


class BlobKey(msgspec.Struct, frozen=True, array_like=True):
    thread_id: str
    checkpoint_ns: str
    channel: str
    version: str


class WriteKey(msgspec.Struct, frozen=True, array_like=True):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    task_id: str
    idx: int


class CheckpointChange(msgspec.Struct, frozen=True, tag_field="entity", tag="checkpoint", omit_defaults=True):
    """A checkpoint put (``op=u``) or removal (``op=d``; then only ``key`` is meaningful).

    ``unchanged`` names fields the source could not send because they were not modified
    (Postgres unchanged-TOAST): a sink keeps its stored value for those. ``no_blob`` names
    channels the source knows have no blob at their version in this checkpoint
    (``connectors/sources/postgres/no_blob.py``): a sink need not look them up.
    """

    op: Op
    key: CheckpointKey
    source: SourceMeta
    parent_checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    unchanged: tuple[str, ...] = ()
    no_blob: tuple[str, ...] = ()


class BlobChange(msgspec.Struct, frozen=True, tag_field="entity", tag="blob", omit_defaults=True):
    """A channel value stored once per ``(channel, version)`` and shared by checkpoints."""

    op: Op
    key: BlobKey
    source: SourceMeta
    type: str = ""
    data: bytes | None = None
    unchanged: tuple[str, ...] = ()


class WriteChange(msgspec.Struct, frozen=True, tag_field="entity", tag="write", omit_defaults=True):
    """One pending write of a task, as ``put_writes`` stored it."""

    op: Op
    key: WriteKey
    source: SourceMeta
    channel: str = ""
    type: str = ""
    data: bytes | None = None
    task_path: str = ""
    unchanged: tuple[str, ...] = ()


class ThreadDeletion(msgspec.Struct, frozen=True, tag_field="entity", tag="thread"):
    """Every namespace, checkpoint, blob and write of one thread is gone (``delete_thread``)."""

    thread_id: str
    source: SourceMeta


class Control(msgspec.Struct, frozen=True, tag_field="entity", tag="control", omit_defaults=True):
    """Pipeline markers riding the data topic so they stay in order with the data.

    A heartbeat at ``source.position`` promises that everything the source committed up to that
    position was published before it, on every partition.
    """

    kind: ControlKind
    source: SourceMeta
    info: dict[str, Any] = {}


class CheckpointDocument(
    msgspec.Struct, frozen=True, tag_field="entity", tag="checkpoint_doc", omit_defaults=True
):
    """A checkpoint in *whole* form: one serialized checkpoint with every channel value in it.

    What SqliteSaver, InMemorySaver and the DynamoDB savers store: ``(type, data)`` is the saver's
    ``dumps_typed`` of the full checkpoint (``msgpack`` for JsonPlusSerializer), ``metadata`` the
    checkpoint metadata as a plain tree. A removal (``op=d``) carries only ``key``.
    ``connectors.langgraph.forms`` converts between this and ``CheckpointChange`` + blobs.
    """

    op: Op
    key: CheckpointKey
    source: SourceMeta
    parent_checkpoint_id: str | None = None
    type: str = ""
    data: bytes | None = None
    metadata: dict[str, Any] | None = None


DataChange = CheckpointChange | BlobChange | WriteChange | ThreadDeletion | CheckpointDocument
ChangeEvent = CheckpointChange | BlobChange | WriteChange | ThreadDeletion | Control | CheckpointDocument


def thread_of(event: ChangeEvent) -> str | None:
    """The LangGraph thread an event belongs to (its Kafka key); None for control events."""
    if isinstance(event, Control):
        return None
    if isinstance(event, ThreadDeletion):
        return event.thread_id
    return event.key.thread_id


class Committed(msgspec.Struct, frozen=True):
    """Emitted by a source after the last event of a unit it can resume from.

    Once every event before it is acknowledged downstream, the pipeline hands it back to
    ``Source.confirm`` (slot flush position, changelog cursor, snapshot chunk). Never earlier.
    ``token`` is the source's own resume information; the pipeline does not look inside.
    """

    position: int
    commit_ts: float = 0.0
    token: Any = None
