"""Pending writes the generic target cannot place yet, kept in the replicator's state store.

A saver numbers a task's writes by their position in one ``put_writes`` call, so a write after a
gap needs the task's earlier writes to stand in the gap (``saver.py``). Those are read back
through ``get_tuple``, which finds nothing while the checkpoint itself has not reached the
target: Postgres may commit writes before their checkpoint, and LangGraph's async durability
puts them in either order. Such writes wait here, per thread, until their checkpoint is put;
then they are put with it. Kept in the state store, so a restart loses none.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from connectors.langgraph.batch import Write
from connectors.langgraph.forms import WriteRef
from replicator.state.base import StateStore


def stash_name(target: str, thread_id: str) -> str:
    """The state document of a thread's writes waiting for their checkpoint."""
    return f"saver-writes:{target}:{thread_id}"


def _encode(ref: WriteRef, write: Write) -> list[Any]:
    _, ns, cid, task, idx = ref
    data = base64.b64encode(write.data).decode()
    return [ns, cid, task, idx, write.channel, write.type, data, write.task_path]


def _decode(thread_id: str, row: list[Any]) -> tuple[WriteRef, Write]:
    ns, cid, task, idx, channel, type_, data, path = row
    return (thread_id, ns, cid, task, int(idx)), Write(channel, type_, base64.b64decode(data), path)


class WriteStash:
    """One thread's waiting writes: loaded, changed in memory, saved once per batch."""

    def __init__(self, state: StateStore, target: str, thread_id: str) -> None:
        self._state = state
        self._name = stash_name(target, thread_id)
        self.thread_id = thread_id
        doc = state.get(self._name) or {}
        self._writes: dict[WriteRef, Write] = dict(_decode(thread_id, row) for row in doc.get("writes", []))
        self._changed = False

    def __bool__(self) -> bool:
        return bool(self._writes)

    def add(self, writes: dict[WriteRef, Write]) -> None:
        self._writes.update(writes)
        self._changed = True

    def get(self, ref: WriteRef) -> Write | None:
        return self._writes.get(ref)

    def take(self, checkpoints: Iterable[tuple[str, str]]) -> dict[WriteRef, Write]:
        """Remove and return the writes of these ``(ns, checkpoint_id)``."""
        wanted = set(checkpoints)
        taken = {ref: w for ref, w in self._writes.items() if (ref[1], ref[2]) in wanted}
        for ref in taken:
            del self._writes[ref]
        self._changed = self._changed or bool(taken)
        return taken

    def save(self) -> None:
        if not self._changed:
            return
        if self._writes:
            rows = [_encode(ref, w) for ref, w in sorted(self._writes.items(), key=lambda item: item[0])]
            self._state.put(self._name, {"writes": rows})
        else:
            self._state.delete(self._name)
        self._changed = False


__all__ = ["WriteStash", "stash_name"]
