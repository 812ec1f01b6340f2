"""Batch planning for any target: what a batch of change events leaves behind, before any write.

The plan is the batch's *net effect* per LangGraph entity (last operation per key wins), plus the
threads deleted in it, whose earlier entries in the batch are dropped. Applying it means: delete
everything those threads held before the batch, then put or delete each entity as planned. The
result depends only on the events, whatever order a target writes in, so replaying any suffix
of a stream rewrites identical data.

The plan doubles as the batch's own view while it is built (a checkpoint assembled from a blob
written earlier in the same batch, an unchanged TOAST field taken from an earlier upsert). What
it does not hold is read as of before the batch: blobs through the cache, then one bulk lookup
(``prefetch``); stored checkpoints and writes through the target (``StoredReader``). No I/O here:
the target's reads come in through those two interfaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from connectors.langgraph import forms
from connectors.langgraph.blobs import BlobCache, BlobStore
from connectors.langgraph.forms import (
    ABSENT,
    Blob,
    BlobRef,
    CheckpointRef,
    Form,
    WriteRef,
    _Absent,
)
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    CheckpointChange,
    CheckpointDocument,
    DataChange,
    Op,
    ThreadDeletion,
    WriteChange,
)

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WholeCheckpoint:
    """A checkpoint as a whole-form target stores it. ``data`` is ``dumps_typed`` of the full
    checkpoint; ``metadata`` a plain tree, or the ``msgspec.Raw`` msgpack kept from the target."""

    parent_checkpoint_id: str | None
    type: str
    data: bytes
    metadata: Any


@dataclass(frozen=True)
class Write:
    channel: str
    type: str
    data: bytes
    task_path: str


# What a target holds for a checkpoint: whole, or PostgresSaver's skeleton (split form).
CheckpointValue = WholeCheckpoint | CheckpointChange


@dataclass
class DurableOps:
    """The net effect of one batch (None: delete). First delete what ``deleted_threads`` held
    before the batch, then apply the rest; each entity appears at most once."""

    deleted_threads: list[str] = field(default_factory=list)
    checkpoints: dict[CheckpointRef, CheckpointValue | None] = field(default_factory=dict)
    blobs: dict[BlobRef, Blob | None] = field(default_factory=dict)
    writes: dict[WriteRef, Write | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.deleted_threads or self.checkpoints or self.blobs or self.writes)


class StoredReader(Protocol):
    """The target's stored entities, as of before the batch (for unchanged TOAST fields)."""

    def stored_checkpoint(self, ref: CheckpointRef) -> CheckpointValue | None: ...

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None: ...


CacheOp = tuple[str, Any]  # ("put", (ref, value)) | ("discard", ref) | ("evict_thread", thread_id)


@dataclass
class Planned:
    ops: DurableOps
    cache_ops: list[CacheOp]
    blob_lookups: int = 0
    missing_blobs: int = 0
    missing_payloads: int = 0


def apply_cache_ops(cache: BlobCache, ops: Sequence[CacheOp]) -> None:
    """Bring the cache up to date with a batch, once the target holds it durably."""
    for op, arg in ops:
        if op == "put":
            cache.put(*arg)
        elif op == "discard":
            cache.discard(arg)
        else:
            cache.evict_thread(arg)


def plan_batch(
    events: Sequence[DataChange],
    form: Form,
    cache: BlobCache,
    blob_store: BlobStore,
    stored: StoredReader,
    sink: str,
) -> Planned:
    """Plan ``events`` for a target storing checkpoints in ``form``.

    Whole form: split-form checkpoints are assembled from their blobs (prefetched: cache first,
    then one ``blob_store.get_many``). Split form: whole documents are split (every non-primitive
    value becomes a blob; blobs are insert-only, so re-sending one changes nothing).
    """
    return _Planner(form, cache, blob_store, stored, sink).plan(events)


class _Planner:
    def __init__(
        self, form: Form, cache: BlobCache, blob_store: BlobStore, stored: StoredReader, sink: str
    ) -> None:
        self.form = form
        self.cache = cache
        self.blob_store = blob_store
        self.stored = stored
        self.sink = sink
        self.ops = DurableOps()
        self.deleted: set[str] = set()
        # Blob lookups answered from before the batch (cache hits and the one bulk lookup).
        self.prebatch: dict[BlobRef, Blob | _Absent] = {}
        self.out = Planned(self.ops, [])

    def plan(self, events: Sequence[DataChange]) -> Planned:
        if self.form is Form.WHOLE:
            self._prefetch(events)
        for event in events:
            if isinstance(event, CheckpointChange):
                self._checkpoint(event)
            elif isinstance(event, CheckpointDocument):
                self._document(event)
            elif isinstance(event, BlobChange):
                self._blob(event)
            elif isinstance(event, WriteChange):
                self._write(event)
            elif isinstance(event, ThreadDeletion):
                self._thread_deletion(event.thread_id)
            else:  # pragma: no cover - the applier filters control events out
                raise ReplicatorError(
                    ErrorKind.INTERNAL, f"sink {self.sink!r} got a non-data event: {type(event).__name__}"
                )
        return self.out

    # ------------------------------------------------------------------ reads before the batch

    def _prefetch(self, events: Sequence[DataChange]) -> None:
        """Resolve, before planning, every blob the batch's checkpoints reference and the batch
        does not write itself: from the cache, then with one bulk lookup for the rest."""
        touched: set[BlobRef] = set()
        deleted: set[str] = set()
        wanted: set[BlobRef] = set()
        for event in events:
            if isinstance(event, BlobChange):
                k = event.key
                touched.add((k.thread_id, k.checkpoint_ns, k.channel, k.version))
            elif isinstance(event, ThreadDeletion):
                deleted.add(event.thread_id)
            elif isinstance(event, CheckpointChange) and event.op == Op.UPSERT and event.checkpoint:
                t = event.key.thread_id
                if t in deleted:
                    continue
                for ref in forms.blob_refs(t, event.key.checkpoint_ns, event.checkpoint):
                    if ref in touched or ref in self.prebatch:
                        continue
                    if ref[2] in event.no_blob:  # the source knows there is none to find
                        self.prebatch[ref] = ABSENT
                        self.out.cache_ops.append(("put", (ref, ABSENT)))
                        continue
                    cached = self.cache.get(ref)
                    if cached is not None:
                        self.prebatch[ref] = cached
                    else:
                        wanted.add(ref)
        if wanted:
            self.out.blob_lookups += len(wanted)
            found = self.blob_store.get_many(sorted(wanted))
            for ref in wanted:
                value = found.get(ref, ABSENT)
                self.prebatch[ref] = value
                self.out.cache_ops.append(("put", (ref, value)))

    def _resolve_blob(self, ref: BlobRef) -> Blob | _Absent:
        if ref in self.ops.blobs:
            value = self.ops.blobs[ref]
            return ABSENT if value is None else value
        if ref[0] in self.deleted:
            return ABSENT
        return self.prebatch.get(ref, ABSENT)

    def _stored_checkpoint(self, ref: CheckpointRef) -> CheckpointValue | None:
        if ref in self.ops.checkpoints:
            return self.ops.checkpoints[ref]
        return None if ref[0] in self.deleted else self.stored.stored_checkpoint(ref)

    def _stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        if ref in self.ops.writes:
            write = self.ops.writes[ref]
            return None if write is None else (write.type, write.data)
        return None if ref[0] in self.deleted else self.stored.stored_write(ref)

    # ------------------------------------------------------------------ events

    def _checkpoint(self, event: CheckpointChange) -> None:
        k = event.key
        t, ns, cid = k.thread_id, k.checkpoint_ns, k.checkpoint_id
        ref = (t, ns, cid)
        if event.op == Op.DELETE:
            self.ops.checkpoints[ref] = None
            return
        stored: CheckpointValue | None = None
        if "checkpoint" in event.unchanged or "metadata" in event.unchanged:
            stored = self._stored_checkpoint(ref)
            if stored is None:
                self.out.missing_payloads += 1
                _log.warning(
                    "checkpoint update leaves fields unchanged but no stored checkpoint to take them "
                    "from; skipped (expected only when replaying after the thread was deleted)",
                    sink=self.sink,
                    thread_id=t,
                    checkpoint_ns=ns,
                    checkpoint_id=cid,
                    unchanged=list(event.unchanged),
                )
                return
        if self.form is Form.SPLIT:
            self.ops.checkpoints[ref] = _keep_split(event, stored)
            return
        keep_checkpoint = isinstance(stored, WholeCheckpoint) and "checkpoint" in event.unchanged
        keep_metadata = isinstance(stored, WholeCheckpoint) and "metadata" in event.unchanged
        if keep_checkpoint:
            assert isinstance(stored, WholeCheckpoint)
            type_, data = stored.type, stored.data
        else:
            document, missing = forms.to_document(event, lambda ch, v: self._resolve_blob((t, ns, ch, v)))
            type_, data = document.type, document.data or b""
            if missing:
                self.out.missing_blobs += len(missing)
                _log.warning(
                    "blobs referenced by a checkpoint not found; checkpoint written without them "
                    "(expected when a replay re-applies a checkpoint of a thread deleted later)",
                    sink=self.sink,
                    thread_id=t,
                    checkpoint_ns=ns,
                    checkpoint_id=cid,
                    channels=missing,
                )
        metadata = stored.metadata if keep_metadata and stored is not None else (event.metadata or {})
        self.ops.checkpoints[ref] = WholeCheckpoint(event.parent_checkpoint_id, type_, data, metadata)

    def _document(self, event: CheckpointDocument) -> None:
        k = event.key
        ref = (k.thread_id, k.checkpoint_ns, k.checkpoint_id)
        if event.op == Op.DELETE:
            self.ops.checkpoints[ref] = None
        elif self.form is Form.WHOLE:
            self.ops.checkpoints[ref] = WholeCheckpoint(
                event.parent_checkpoint_id, event.type, event.data or b"", event.metadata or {}
            )
        else:
            for change in forms.to_changes(event, None):
                if isinstance(change, BlobChange):
                    self._blob(change)
                else:
                    self._checkpoint(change)

    def _write(self, event: WriteChange) -> None:
        k = event.key
        ref = (k.thread_id, k.checkpoint_ns, k.checkpoint_id, k.task_id, k.idx)
        if event.op == Op.DELETE:
            self.ops.writes[ref] = None
            return
        type_, data = event.type, event.data or b""
        if "data" in event.unchanged:
            stored = self._stored_write(ref)
            if stored is None:
                self.out.missing_payloads += 1
                _log.warning(
                    "write update leaves its value unchanged but no stored value to keep; skipped",
                    sink=self.sink,
                    thread_id=k.thread_id,
                    checkpoint_ns=k.checkpoint_ns,
                    checkpoint_id=k.checkpoint_id,
                    task_id=k.task_id,
                    idx=k.idx,
                )
                return
            if "type" in event.unchanged:
                type_ = stored[0]
            data = stored[1]
        self.ops.writes[ref] = Write(event.channel, type_, data, event.task_path)

    def _blob(self, event: BlobChange) -> None:
        k = event.key
        ref = (k.thread_id, k.checkpoint_ns, k.channel, k.version)
        if event.op == Op.DELETE:
            self.ops.blobs[ref] = None
            self.cache.discard(ref)
            self.out.cache_ops.append(("discard", ref))
            return
        if "data" in event.unchanged:
            return  # blobs are insert-only: an update that keeps the value changes nothing we hold
        value: Blob = (event.type, event.data)
        self.ops.blobs[ref] = value
        self.out.cache_ops.append(("put", (ref, value)))

    def _thread_deletion(self, t: str) -> None:
        if t not in self.deleted:
            self.deleted.add(t)
            self.ops.deleted_threads.append(t)
        # Whatever this batch planned for the thread before the deletion goes as well.
        ops = self.ops
        ops.blobs = {ref: v for ref, v in ops.blobs.items() if ref[0] != t}
        ops.checkpoints = {ref: v for ref, v in ops.checkpoints.items() if ref[0] != t}
        ops.writes = {ref: v for ref, v in ops.writes.items() if ref[0] != t}
        self.cache.evict_thread(t)
        self.out.cache_ops.append(("evict_thread", t))


def _keep_split(event: CheckpointChange, stored: CheckpointValue | None) -> CheckpointChange:
    """A split-form upsert with its unchanged fields taken from the stored checkpoint."""
    if stored is None:
        return event
    if not isinstance(stored, CheckpointChange):
        raise ReplicatorError(
            ErrorKind.INTERNAL, "a split-form target returned a whole checkpoint as its stored one"
        )
    return msgspec.structs.replace(
        event,
        checkpoint=stored.checkpoint if "checkpoint" in event.unchanged else event.checkpoint,
        metadata=stored.metadata if "metadata" in event.unchanged else event.metadata,
        unchanged=(),
    )
