"""What an ``InMemorySaver`` holds, and what a call would make it hold, as change events. No I/O.

``InMemorySaver`` keeps each checkpoint without its values (``storage``), every channel value once
per ``(channel, version)`` (``blobs``) and the pending writes with their final idx (``writes``).
These structures are read directly, not through ``list``/``get_tuple``, so what is published is
exactly what is stored: the writes' idx (``WRITES_IDX_MAP``'s negative ones included), task paths,
orphan writes and ``empty`` markers. Each checkpoint travels whole (``CheckpointDocument``): its
stored msgpack map with every value the saver would read for it spliced in undecoded (as
``connectors.langgraph.forms`` does), so the target's saver reads back what the in-memory one does.

The builders for ``put`` and ``put_writes`` compute the entries *before* the inner saver is
touched, with its own rules (blobs only for ``new_versions``, ``empty`` for a channel without a
value, insert-if-absent for a regular idx, overwrite for a special one): the wrapper publishes them
and applies the call only once Kafka acknowledged them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, Checkpoint, CheckpointMetadata, get_checkpoint_metadata
from langgraph.checkpoint.memory import InMemorySaver

from connectors.langgraph import forms
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

Typed = tuple[str, bytes]
Stored = tuple[Typed, Typed, str | None]  # InMemorySaver.storage[t][ns][cid]
BlobOf = Callable[[str, Any], Typed | None]  # (channel, version) -> the stored blob
Stamp = Callable[[str], SourceMeta]  # table name -> the next event's source metadata

_EMPTY: Typed = ("empty", b"")


class PositionClock:
    """Positions of one publisher: wall-clock nanoseconds, strictly increasing in this process.

    Only their order within one process matters (one thread's events all come from the process
    that owns it); the applier keeps the highest it saw per partition, so positions of several
    processes sharing a partition never move an applied position backwards.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


def stamper(position: int, commit_ts: float | None = None) -> Stamp:
    """Source metadata for the events of one call: one position, ``seq`` ordering them."""
    at = time.time() if commit_ts is None else commit_ts
    counter = iter(range(1 << 62))
    return lambda table: SourceMeta(position=position, commit_ts=at, seq=next(counter), table=table)


# --------------------------------------------------------------------------- documents


def _plain(metadata: Any, where: str) -> dict[str, Any]:
    """Metadata as the plain tree the event model carries (what a whole-form target stores)."""
    try:
        tree = msgspec.msgpack.decode(msgspec.msgpack.encode(metadata))
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"{where}: metadata cannot travel as a plain tree: {exc}"
        ) from None
    if not isinstance(tree, dict):
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"{where}: metadata is not a mapping")
    return tree


def _spliced(checkpoint: Typed, blob_of: BlobOf, where: str) -> bytes | None:
    """The whole checkpoint's msgpack bytes, values spliced undecoded; None when a part is not
    msgpack (an encrypted or pickling serde), so the caller re-serializes with the app's serde."""
    type_, data = checkpoint
    if type_ != "msgpack":
        return None
    try:
        parts = msgspec.msgpack.decode(data, type=dict[str, msgspec.Raw])
        versions = msgspec.msgpack.decode(parts["channel_versions"]) if "channel_versions" in parts else {}
    except msgspec.DecodeError:
        return None
    values: dict[str, Any] = {}
    for channel, version in (versions or {}).items():
        blob = blob_of(channel, version)
        if blob is None or blob[0] == "empty":
            continue
        if blob[0] not in ("msgpack", "bytes", "bytearray", "null"):
            return None
        values[channel] = forms.splice(blob[0], blob[1], where, channel)
    return forms.encode({**parts, "channel_values": values}, where)


def document(
    saver: InMemorySaver,
    thread_id: str,
    ns: str,
    checkpoint_id: str,
    stored: Stored,
    blob_of: BlobOf,
    stamp: Stamp,
) -> CheckpointDocument:
    """One stored checkpoint in whole form, its values as the saver would read them."""
    checkpoint, metadata, parent = stored
    at = forms.where(thread_id, ns, checkpoint_id)
    data = _spliced(checkpoint, blob_of, at)
    type_ = "msgpack"
    if data is None:
        full = dict(saver.serde.loads_typed(checkpoint))
        values: dict[str, Any] = {}
        for channel, version in full.get("channel_versions", {}).items():
            blob = blob_of(channel, version)
            if blob is not None and blob[0] != "empty":
                values[channel] = saver.serde.loads_typed(blob)
        type_, data = saver.serde.dumps_typed({**full, "channel_values": values})
    return CheckpointDocument(
        Op.UPSERT,
        CheckpointKey(thread_id, ns, checkpoint_id),
        stamp("storage"),
        parent_checkpoint_id=parent,
        type=type_,
        data=data,
        metadata=_plain(saver.serde.loads_typed(metadata), at),
    )


def _stored_blob(saver: InMemorySaver, thread: Any, ns: str) -> BlobOf:
    return lambda channel, version: saver.blobs.get((thread, ns, channel, version))


# --------------------------------------------------------------------------- what the saver holds


def thread_ids(saver: InMemorySaver) -> list[Any]:
    """Every thread with a checkpoint or a pending write (writes may outlive their checkpoint)."""
    found = {t for t, namespaces in list(saver.storage.items()) if any(namespaces.values())}
    found.update(key[0] for key in list(saver.writes) if saver.writes.get(key))
    return sorted(found, key=str)


def thread_state(saver: InMemorySaver, thread: Any, stamp: Stamp) -> Iterator[DataChange]:
    """A deletion of the thread, then all it holds: applied in order, the target's copy of the
    thread becomes exactly the saver's (the initial publish, and the repair after a failed call)."""
    t = str(thread)
    yield ThreadDeletion(t, stamp("thread"))
    namespaces = saver.storage.get(thread) or {}
    for ns in sorted(namespaces):
        blob_of = _stored_blob(saver, thread, ns)
        checkpoints = namespaces[ns]
        for checkpoint_id in sorted(checkpoints):
            yield document(saver, t, ns, checkpoint_id, checkpoints[checkpoint_id], blob_of, stamp)
    for key in sorted((k for k in list(saver.writes) if k[0] == thread), key=lambda k: (k[1], k[2])):
        _, ns, checkpoint_id = key
        stored = saver.writes.get(key) or {}
        for (task_id, idx), (_, channel, typed, task_path) in sorted(stored.items()):
            yield _write(t, ns, checkpoint_id, task_id, idx, channel, typed, task_path, stamp)


def _write(
    t: str,
    ns: str,
    cid: str,
    task_id: str,
    idx: int,
    channel: str,
    typed: Typed,
    task_path: str,
    stamp: Stamp,
) -> WriteChange:
    return WriteChange(
        Op.UPSERT,
        WriteKey(t, ns, cid, task_id, idx),
        stamp("writes"),
        channel=channel,
        type=typed[0],
        data=typed[1],
        task_path=task_path,
    )


# --------------------------------------------------------------------------- what a call would store


def put_events(
    saver: InMemorySaver,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: Mapping[str, Any],
    stamp: Stamp,
) -> list[DataChange]:
    """The document ``saver.put`` would store, computed without touching the saver. Raises what
    ``put`` would raise on a bad config (before anything is published)."""
    configurable = config["configurable"]
    thread, ns = configurable["thread_id"], configurable["checkpoint_ns"]
    c = dict(checkpoint)
    values: dict[str, Any] = c.pop("channel_values")  # type: ignore[assignment]
    new_blobs = {
        (k, v): saver.serde.dumps_typed(values[k]) if k in values else _EMPTY for k, v in new_versions.items()
    }
    stored: Stored = (
        saver.serde.dumps_typed(c),
        saver.serde.dumps_typed(get_checkpoint_metadata(config, metadata)),
        configurable.get("checkpoint_id"),
    )

    def blob_of(channel: str, version: Any) -> Typed | None:
        if (channel, version) in new_blobs:
            return new_blobs[(channel, version)]
        return saver.blobs.get((thread, ns, channel, version))

    return [document(saver, str(thread), ns, checkpoint["id"], stored, blob_of, stamp)]


def put_writes_events(
    saver: InMemorySaver,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    stamp: Stamp,
) -> list[DataChange]:
    """The writes ``saver.put_writes`` would store: a regular idx only when absent, a special
    one (``WRITES_IDX_MAP``) always, as ``InMemorySaver`` decides."""
    configurable = config["configurable"]
    thread, ns, cid = (
        configurable["thread_id"],
        configurable.get("checkpoint_ns", ""),
        configurable["checkpoint_id"],
    )
    existing = saver.writes.get((thread, ns, cid)) or {}
    events: list[DataChange] = []
    for position, (channel, value) in enumerate(writes):
        idx = WRITES_IDX_MAP.get(channel, position)
        if idx >= 0 and (task_id, idx) in existing:
            continue
        typed = saver.serde.dumps_typed(value)
        events.append(_write(str(thread), ns, cid, task_id, idx, channel, typed, task_path, stamp))
    return events
