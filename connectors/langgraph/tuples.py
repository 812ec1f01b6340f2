"""A saver's ``CheckpointTuple`` as change events: what a saver's API gives back, in the form
the pipeline carries. The saver source of ``replicator copy`` reads stores this way, and the
generic target reads back its own writes with ``numbered_writes``."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol

from replicator.events import (
    CheckpointDocument,
    CheckpointKey,
    DataChange,
    Op,
    SourceMeta,
    WriteChange,
    WriteKey,
)


def numbered_writes(tup: CheckpointTuple) -> dict[tuple[str, int], tuple[str, Any]]:
    """A tuple's pending writes by ``(task_id, idx)``: a special channel's idx from
    ``WRITES_IDX_MAP``, a regular write's from its position among its task's regular writes
    (savers return them in idx order)."""
    out: dict[tuple[str, int], tuple[str, Any]] = {}
    seen: dict[str, int] = defaultdict(int)
    for task_id, channel, value in tup.pending_writes or ():
        if channel in WRITES_IDX_MAP:
            idx = WRITES_IDX_MAP[channel]
        else:
            idx = seen[task_id]
            seen[task_id] += 1
        out[(task_id, idx)] = (channel, value)
    return out


def tuple_events(tup: CheckpointTuple, serde: SerializerProtocol, meta: SourceMeta) -> list[DataChange]:
    """The checkpoint whole (every channel value in it) and its pending writes.

    A pending write's ``task_path`` is not part of a saver's API: it is empty here (LangGraph
    reads it only to order writes of parallel tasks, which ``idx`` and ``task_id`` also do).
    """
    conf = tup.config["configurable"]
    t, ns, cid = str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), str(conf["checkpoint_id"])
    parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    type_, data = serde.dumps_typed(tup.checkpoint)
    events: list[DataChange] = [
        CheckpointDocument(
            Op.UPSERT,
            CheckpointKey(t, ns, cid),
            meta,
            parent_checkpoint_id=parent,
            type=type_,
            data=data,
            metadata=dict(tup.metadata or {}),
        )
    ]
    for (task, idx), (channel, value) in sorted(numbered_writes(tup).items()):
        w_type, w_data = serde.dumps_typed(value)
        key = WriteKey(t, ns, cid, task, idx)
        events.append(WriteChange(Op.UPSERT, key, meta, channel=channel, type=w_type, data=w_data))
    return events


def _canonical(value: Any) -> Any:
    """A value as plain, ordered data: mappings and sets sorted, models dumped."""
    if isinstance(value, dict):
        return sorted((repr(_canonical(k)), _canonical(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return ["set", sorted(repr(_canonical(v)) for v in value)]
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    dump = getattr(value, "model_dump", None)  # pydantic models (LangChain messages)
    if callable(dump):
        return [type(value).__name__, _canonical(dump())]
    if isinstance(value, bytes | str | int | float | bool) or value is None:
        return value
    return [type(value).__name__, repr(value)]


def tuples_digest(tuples: list[CheckpointTuple]) -> str:
    """A digest of what a saver returned for a thread, stable across processes."""
    digest = hashlib.sha256()
    for tup in tuples:
        parent = tup.parent_config or {}
        parts = (tup.config, parent, tup.checkpoint, tup.metadata, tup.pending_writes)
        digest.update(repr(_canonical(parts)).encode())
    return digest.hexdigest()


__all__ = ["numbered_writes", "tuple_events", "tuples_digest"]
