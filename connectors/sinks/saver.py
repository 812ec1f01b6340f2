"""The generic target: any LangGraph saver, written through its own ``put`` / ``put_writes`` /
``delete_thread``, so every saver that exists (Redis, MongoDB, Firestore, ...) is a target
without the replicator knowing its layout.

``[[targets]] kind = "saver"``, ``factory = "package.module:callable"``: the callable is imported
from the Python path and called with no arguments; it returns a ``BaseCheckpointSaver`` (or a
context manager yielding one). The saver is the only way in, so:

- A checkpoint is put whole (the whole form), with ``new_versions`` = every channel's version:
  savers that key values by version (InMemorySaver, the plain-Redis saver) store each value at the
  version the source gave it; storing one again at the same version changes nothing.
- Pending writes go through ``put_writes``, which numbers them by their position in the call
  (a special channel such as ``__resume__`` takes its own negative ``idx`` but still uses up a
  position): a task's regular writes are put in one call at their ``idx`` positions, each special
  write alone. A position the batch does not fill (a special write's, or a write put by an
  earlier batch) holds one of the task's own writes again, which changes nothing: savers keep a
  regular write they hold and overwrite a special one with itself. The earlier writes are read
  back through ``get_tuple``, which finds nothing before the checkpoint itself is there: until
  then such writes wait in the state store (``saver_stash.py``).
- PostgresSaver's versioned blobs, which later checkpoints of a split-form source refer to, have
  no place in an arbitrary saver: they live in the replicator's state store, per target.
- A saver's API deletes whole threads only. PostgresSaver's ``delete_thread`` reaches the log as
  one row delete per checkpoint, blob and write, which a batch may cut anywhere: the thread is
  deleted through ``delete_thread`` once no checkpoint of it is left, counting the deleted
  checkpoints it still holds from earlier batches (kept in the state store until then). A
  single checkpoint or write deleted from a thread that keeps others (a source that prunes)
  cannot be applied: it stays in the target, is logged, and ``replicator verify`` shows it.
- Savers keep a regular pending write they already hold when it is put again (InMemorySaver,
  SqliteSaver, PostgresSaver, the plain-Redis saver all do): the filler above relies on it.

Slower than a layout written for the store (every call is the saver's own round trips), exact
for every saver that honours the ``BaseCheckpointSaver`` contract.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import msgspec
import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    CheckpointMetadata,
)

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps, WholeCheckpoint, Write
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import CheckpointRef, Form, WriteRef
from connectors.langgraph.tuples import numbered_writes
from connectors.saver_factory import load_factory, open_saver
from connectors.sinks.layout import LayeredSink
from connectors.sinks.saver_stash import WriteStash, stash_name
from connectors.sinks.state_blobs import StateBlobs
from replicator.errors import ErrorKind, ReplicatorError, translated
from replicator.state.base import StateStore

_log = structlog.get_logger(__name__)

_IO_NAMES = ("Connection", "Timeout", "Unavailable", "Refused", "Reset", "Broken")
_BUSY_WORDS = ("locked", "busy", "throttl", "too many requests")


def saver_error(exc: BaseException, target: str, what: str) -> ReplicatorError:
    """What an exception from a third-party saver means: I/O trouble is retried, the rest stops.

    A saver's client errors are not ours to know, so they are told apart by their class names
    and messages (``redis.ConnectionError``, ``TimeoutError``, SQLite's "database is locked").
    """
    if isinstance(exc, ReplicatorError):
        return exc
    names = [cls.__name__ for cls in type(exc).__mro__]
    text = f"{type(exc).__name__}: {exc}"
    message = f"target {target!r} (saver): {what}: {text}"
    if any(word in str(exc).lower() for word in _BUSY_WORDS):
        return ReplicatorError(ErrorKind.TARGET_THROTTLED, message + " (retried after a backoff)")
    if isinstance(exc, OSError) or any(io in name for name in names for io in _IO_NAMES):
        return ReplicatorError(ErrorKind.TARGET_UNREACHABLE, message + " (retried after a backoff)")
    return ReplicatorError(ErrorKind.TARGET_SETUP, message)


def pending_deletes_name(target: str, thread_id: str) -> str:
    """The state document of a thread's deleted checkpoints the saver still holds."""
    return f"saver-deletes:{target}:{thread_id}"


def _config(thread_id: str, ns: str, checkpoint_id: str | None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return RunnableConfig(configurable=configurable)


def _idx_of(channel: str, position: int) -> int:
    return WRITES_IDX_MAP.get(channel, position)


def _first_of_task(held: dict[tuple[str, int], tuple[str, Any]], task: str) -> tuple[str, Any] | None:
    """A write of ``task`` the target already holds, to stand at a position before the batch's
    first write: put again, it changes nothing (a regular write the saver holds is kept, a
    special one is overwritten by itself)."""
    own = sorted((idx, write) for (task_id, idx), write in held.items() if task_id == task)
    return own[0][1] if own else None


class SaverLayout:
    """A saver's store, reached only through the saver (whole form); blobs in the state store."""

    form = Form.WHOLE

    def __init__(self, name: str, factory: str, state: StateStore | None) -> None:
        self.name = name
        self.factory = factory
        self.blobs = StateBlobs(name, state, f"target {name!r} (saver)")
        self._saver: BaseCheckpointSaver[Any] | None = None
        self._exit = ExitStack()
        self.deferred_deletes = 0
        self.unplaced_writes = 0
        self._stashes: dict[str, WriteStash] = {}

    # ------------------------------------------------------------------ the saver

    def saver(self) -> BaseCheckpointSaver[str]:
        if self._saver is None:
            with self._errors("calling the factory"):
                self._saver = open_saver(self.factory, f"targets[{self.name}]", self._exit)
        saver: BaseCheckpointSaver[str] = self._saver
        return saver

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return translated(Exception, lambda exc: saver_error(exc, self.name, what))

    # ------------------------------------------------------------------ Layout

    def check(self) -> None:
        saver = self.saver()
        with self._errors("reading through the saver"):
            saver.get_tuple(_config("langgraph-replicator-check", "", None))

    def blob_store(self) -> BlobStore:
        return self.blobs

    def stored_checkpoint(self, ref: CheckpointRef) -> WholeCheckpoint | None:
        t, ns, cid = ref
        saver = self.saver()
        with self._errors(f"reading checkpoint {cid} of thread {t!r}"):
            tup = saver.get_tuple(_config(t, ns, cid))
            if tup is None or tup.config["configurable"].get("checkpoint_id") != cid:
                return None
            type_, data = saver.serde.dumps_typed(tup.checkpoint)
        parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        return WholeCheckpoint(parent, type_, data, dict(tup.metadata or {}))

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        t, ns, cid, task, idx = ref
        held = self._task_writes(t, ns, cid)
        if held is None:
            waiting = self._stash(t).get(ref)
            return None if waiting is None else (waiting.type, waiting.data)
        found = held.get((task, idx))
        if found is None:
            return None
        with self._errors("encoding a stored write"):
            return self.saver().serde.dumps_typed(found[1])

    def _task_writes(self, t: str, ns: str, cid: str) -> dict[tuple[str, int], tuple[str, Any]] | None:
        """The checkpoint's writes the target holds; None while the checkpoint is not there."""
        with self._errors(f"reading the writes of checkpoint {cid} of thread {t!r}"):
            tup = self.saver().get_tuple(_config(t, ns, cid))
        if tup is None or tup.config["configurable"].get("checkpoint_id") != cid:
            return None
        return numbered_writes(tup)

    def _stash(self, t: str) -> WriteStash:
        if t not in self._stashes:
            self._stashes[t] = WriteStash(self.blobs.state(), self.name, t)
        return self._stashes[t]

    def write(self, ops: DurableOps) -> None:
        saver = self.saver()
        self._stashes = {}
        with self._errors(f"deleting {len(ops.deleted_threads)} threads"):
            for t in ops.deleted_threads:
                saver.delete_thread(t)
                self._forget(t)
        self.blobs.apply(ops)
        self._remove(ops)
        put: set[CheckpointRef] = set()
        with self._errors("putting checkpoints"):
            for (t, ns, cid), value in sorted(ops.checkpoints.items()):
                if isinstance(value, WholeCheckpoint):
                    self._put(t, ns, cid, value)
                    put.add((t, ns, cid))
        with self._errors("putting pending writes"):
            self._put_writes(self._with_waiting(ops.writes, put))
        for stash in self._stashes.values():
            stash.save()

    def _forget(self, t: str) -> None:
        """A deleted thread leaves nothing of it in the state store."""
        state = self.blobs.state()
        state.delete(pending_deletes_name(self.name, t))
        state.delete(stash_name(self.name, t))
        self._stashes.pop(t, None)

    def _with_waiting(
        self, writes: dict[WriteRef, Write | None], put: set[CheckpointRef]
    ) -> dict[WriteRef, Write | None]:
        """The batch's writes plus those that waited for a checkpoint this batch put (the
        batch's own version of a write wins, a delete included)."""
        merged = dict(writes)
        for t in sorted({ref[0] for ref in put}):
            waiting = self._stash(t).take((ns, cid) for tt, ns, cid in put if tt == t)
            for ref, write in waiting.items():
                merged.setdefault(ref, write)
        return merged

    def _put(self, t: str, ns: str, cid: str, value: WholeCheckpoint) -> None:
        saver = self.saver()
        checkpoint = saver.serde.loads_typed((value.type, value.data))
        metadata = value.metadata
        if isinstance(metadata, msgspec.Raw):
            metadata = msgspec.msgpack.decode(metadata)
        saver.put(
            _config(t, ns, value.parent_checkpoint_id),
            checkpoint,
            CheckpointMetadata(**(metadata or {})),
            dict(checkpoint.get("channel_versions") or {}),
        )

    def _put_writes(self, writes: dict[WriteRef, Write | None]) -> None:
        """Each (checkpoint, task)'s writes in one ``put_writes`` call, in idx order."""
        saver = self.saver()
        groups: dict[tuple[str, str, str, str], dict[int, Write]] = defaultdict(dict)
        for (t, ns, cid, task, idx), write in writes.items():
            if write is not None:
                groups[(t, ns, cid, task)][idx] = write
        for (t, ns, cid, task), by_idx in sorted(groups.items()):
            config = _config(t, ns, cid)
            specials = [
                (by_idx[i], (by_idx[i].channel, self._value(by_idx[i]))) for i in sorted(by_idx) if i < 0
            ]
            for w, special in specials:
                saver.put_writes(config, [special], task, w.task_path)
            regular = sorted(i for i in by_idx if i >= 0)
            if not regular:
                continue
            listed: list[tuple[str, Any]] = []
            filler = specials[0][1] if specials else None
            for position in range(regular[-1] + 1):
                if position in by_idx:
                    listed.append((by_idx[position].channel, self._value(by_idx[position])))
                    continue
                if filler is None:
                    held = self._task_writes(t, ns, cid)
                    if held is None:
                        # The checkpoint has not arrived: the writes wait for it (saver_stash.py).
                        self._stash(t).add({(t, ns, cid, task, i): by_idx[i] for i in regular})
                        listed = []
                        break
                    filler = _first_of_task(held, task)
                if filler is None:
                    # The saver numbers writes by position: one cannot land after a gap. The
                    # writes before the gap are put; the rest are counted and reported.
                    left = [i for i in regular if i > position]
                    self.unplaced_writes += len(left)
                    _log.warning(
                        "pending writes after a gap in their task's idx cannot be put through "
                        "the saver's API; skipped",
                        sink=self.name,
                        thread_id=t,
                        checkpoint_ns=ns,
                        checkpoint_id=cid,
                        task_id=task,
                        missing_idx=position,
                        skipped_idx=left,
                    )
                    break
                listed.append(filler)
            if listed:
                saver.put_writes(config, listed, task, by_idx[regular[0]].task_path)

    def _value(self, write: Write) -> Any:
        return self.saver().serde.loads_typed((write.type, write.data))

    # ------------------------------------------------------------------ deletes

    def _remove(self, ops: DurableOps) -> None:
        """Apply per-row deletes: a thread goes (``delete_thread``) once none of its checkpoints
        is left; until then the deleted checkpoints it still holds are remembered (see module
        doc)."""
        deleted: dict[str, set[tuple[str, str]]] = defaultdict(set)
        upserted: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for (t, ns, cid), value in ops.checkpoints.items():
            (deleted if value is None else upserted)[t].add((ns, cid))
        touched = set(deleted) | {ref[0] for ref, write in ops.writes.items() if write is None}
        for t in sorted(touched):
            self._remove_from_thread(t, deleted[t], upserted[t])

    def _remove_from_thread(
        self, t: str, deleted: set[tuple[str, str]], upserted: set[tuple[str, str]]
    ) -> None:
        saver, state = self.saver(), self.blobs.state()
        name = pending_deletes_name(self.name, t)
        pending = {(ns, cid) for ns, cid in (state.get(name) or {}).get("checkpoints", [])}
        with self._errors(f"reading thread {t!r} to delete from it"):
            held = {
                (c.get("checkpoint_ns", ""), c["checkpoint_id"])
                for c in (
                    tup.config["configurable"] for tup in saver.list({"configurable": {"thread_id": t}})
                )
            }
        gone = pending | deleted
        if not (held | upserted) - gone:
            with self._errors(f"deleting thread {t!r}"):
                saver.delete_thread(t)  # also what the saver holds but cannot list (orphan writes)
            self._forget(t)
            return
        still = sorted(gone & held - upserted)
        if still == sorted(pending):
            return
        if still:
            state.put(name, {"checkpoints": [list(ref) for ref in still]})
        elif pending:
            state.delete(name)
        self.deferred_deletes += len(deleted & held)
        _log.warning(
            "checkpoints deleted from a thread that keeps others cannot be deleted through a saver's "
            "API: kept until the whole thread is deleted (replicator verify shows them meanwhile)",
            sink=self.name,
            thread_id=t,
            kept=len(still),
        )

    # ------------------------------------------------------------------ verify

    def drop_own_state(self) -> list[str]:
        """Nothing in the target: the blob state is in the state store (cleared with positions)."""
        return []

    def thread_ids(self) -> Iterable[str]:
        with self._errors("listing threads"):
            return sorted({str(tup.config["configurable"]["thread_id"]) for tup in self.saver().list(None)})

    def close(self) -> None:
        with self._errors("closing the saver"):
            self._exit.close()
        self._saver = None


class SaverSink(LayeredSink):
    """``LayeredSink`` over ``SaverLayout``: what ``[[targets]] kind = "saver"`` builds."""

    def __init__(
        self,
        name: str,
        factory: str,
        state: StateStore | None,
        blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES,
    ) -> None:
        self.saver_layout = SaverLayout(name, factory, state)
        super().__init__(self.saver_layout, blob_cache_bytes)


__all__ = [
    "SaverLayout",
    "SaverSink",
    "load_factory",
    "numbered_writes",
    "pending_deletes_name",
    "saver_error",
]
