"""Batch planning and the layered sink over a dict-backed layout (no I/O): what any target
gets from the LangGraph layer, in both forms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from connectors.langgraph.batch import CheckpointValue, DurableOps, WholeCheckpoint, Write
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import Blob, BlobRef, CheckpointRef, Form, WriteRef
from connectors.sinks.layout import LayeredSink
from replicator.events import (
    BlobChange,
    BlobKey,
    CheckpointChange,
    CheckpointDocument,
    CheckpointKey,
    DataChange,
    Op,
    SourceMeta,
    ThreadDeletion,
    WriteChange,
    WriteKey,
)

SERDE = JsonPlusSerializer()
SRC = SourceMeta(position=1)


class MemoryLayout:
    """A whole target in dicts: what a layout file for a new store has to provide."""

    name = "memory"

    def __init__(self, form: Form) -> None:
        self.form = form
        self.checkpoints: dict[CheckpointRef, CheckpointValue] = {}
        self.blobs: dict[BlobRef, Blob] = {}
        self.writes: dict[WriteRef, Write] = {}
        self.lookups: list[list[BlobRef]] = []
        self.fail = False

    def check(self) -> None:
        pass

    def blob_store(self) -> BlobStore:
        return self

    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        self.lookups.append(list(refs))
        return {r: self.blobs[r] for r in refs if r in self.blobs}

    def stored_checkpoint(self, ref: CheckpointRef) -> CheckpointValue | None:
        return self.checkpoints.get(ref)

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        w = self.writes.get(ref)
        return None if w is None else (w.type, w.data)

    def write(self, ops: DurableOps) -> None:
        if self.fail:
            raise OSError("target down")
        for t in ops.deleted_threads:
            for table in (self.checkpoints, self.blobs, self.writes):
                for ref in [r for r in table if r[0] == t]:
                    del table[ref]  # type: ignore[attr-defined]
        for entries, table in (
            (ops.checkpoints, self.checkpoints),
            (ops.blobs, self.blobs),
            (ops.writes, self.writes),
        ):
            for ref, value in entries.items():
                if value is None:
                    table.pop(ref, None)  # type: ignore[attr-defined]
                else:
                    table[ref] = value  # type: ignore[index]

    def saver(self) -> Any:
        raise NotImplementedError

    def thread_ids(self) -> Iterable[str]:
        return sorted({r[0] for r in self.checkpoints} | {r[0] for r in self.writes})

    def close(self) -> None:
        pass


def checkpoint(values: dict[str, Any], step: int = 0) -> dict[str, Any]:
    cp = create_checkpoint(empty_checkpoint(), None, step)
    cp["channel_values"] = values
    cp["channel_versions"] = {ch: f"{step + 1:032}.{0.5:016}" for ch in values}
    cp["updated_channels"] = sorted(values)
    return dict(cp)


def split_events(t: str, cp: dict[str, Any], metadata: dict[str, Any] | None = None) -> list[DataChange]:
    inline = {k: v for k, v in cp["channel_values"].items() if v is None or isinstance(v, str | int | float)}
    events: list[DataChange] = [
        BlobChange(Op.UPSERT, BlobKey(t, "", ch, cp["channel_versions"][ch]), SRC, *SERDE.dumps_typed(v))
        for ch, v in cp["channel_values"].items()
        if ch not in inline
    ]
    skeleton = {**cp, "channel_values": inline}
    events.append(
        CheckpointChange(Op.UPSERT, CheckpointKey(t, "", cp["id"]), SRC, None, skeleton, metadata or {"s": 1})
    )
    return events


def document(t: str, cp: dict[str, Any]) -> CheckpointDocument:
    type_, data = SERDE.dumps_typed(cp)
    return CheckpointDocument(Op.UPSERT, CheckpointKey(t, "", cp["id"]), SRC, None, type_, data, {"s": 1})


def whole_value(layout: MemoryLayout, t: str, cp: dict[str, Any]) -> dict[str, Any]:
    value = layout.checkpoints[(t, "", cp["id"])]
    assert isinstance(value, WholeCheckpoint)
    loaded: dict[str, Any] = SERDE.loads_typed((value.type, value.data))
    return loaded


def test_whole_target_assembles_from_earlier_batches_through_the_cache() -> None:
    layout = MemoryLayout(Form.WHOLE)
    sink = LayeredSink(layout, 1 << 20)
    cp1 = checkpoint({"doc": {"a": [1, 2]}, "n": 3, "raw": b"\x00\x01"})
    sink.apply(split_events("t", cp1))
    assert whole_value(layout, "t", cp1) == cp1
    assert layout.lookups == [] and len(sink.cache) == 2  # written in the batch: no lookup, cached

    cp2 = {**checkpoint({"n": 4}, 1), "channel_values": {**cp1["channel_values"], "n": 4}}
    cp2["channel_versions"] = {**cp1["channel_versions"], "n": f"{2:032}.{0.5:016}"}
    sink.apply(split_events("t", cp2)[-1:])
    assert whole_value(layout, "t", cp2) == cp2 and layout.lookups == []  # from the cache

    cold = LayeredSink(layout, 1 << 20)  # restart: one bulk lookup, inline channels not asked for
    cold.apply(split_events("t", cp2)[-1:])
    assert [sorted(r[2] for r in refs) for refs in layout.lookups] == [["doc", "raw"]]
    assert cold.blob_lookups == 2 and cold.missing_blobs == 0


def test_channels_the_source_marks_as_without_blob_are_not_looked_up() -> None:
    import msgspec

    layout = MemoryLayout(Form.WHOLE)
    cp = checkpoint({"doc": {"a": 1}})
    cp["channel_versions"] = {**cp["channel_versions"], "branch:to:agent": f"{1:032}.{0.5:016}"}
    *_blobs, event = split_events("t", cp)
    cold = LayeredSink(layout, 1 << 20)
    cold.apply([msgspec.structs.replace(event, no_blob=("branch:to:agent",))])
    assert [[r[2] for r in refs] for refs in layout.lookups] == [["doc"]], "only the unmarked channel"
    assert cold.blob_lookups == 1
    layout.lookups.clear()
    LayeredSink(layout, 1 << 20).apply([event])
    assert sorted(r[2] for r in layout.lookups[0]) == ["branch:to:agent", "doc"], "unmarked: both looked up"


def test_whole_target_takes_documents_as_they_are() -> None:
    layout = MemoryLayout(Form.WHOLE)
    sink = LayeredSink(layout)
    cp = checkpoint({"doc": {"a": 1}})
    doc = document("t", cp)
    sink.apply([doc])
    assert layout.checkpoints[("t", "", cp["id"])] == WholeCheckpoint(None, doc.type, doc.data, {"s": 1})
    assert layout.blobs == {}
    sink.apply([CheckpointDocument(Op.DELETE, doc.key, SRC)])
    assert layout.checkpoints == {}


def test_split_target_gets_documents_split() -> None:
    layout = MemoryLayout(Form.SPLIT)
    sink = LayeredSink(layout)
    cp = checkpoint({"doc": {"a": 1}, "n": 2})
    sink.apply([document("t", cp)])
    stored = layout.checkpoints[("t", "", cp["id"])]
    assert isinstance(stored, CheckpointChange) and stored.checkpoint is not None
    assert stored.checkpoint["channel_values"] == {"n": 2}
    assert list(layout.blobs) == [("t", "", "doc", cp["channel_versions"]["doc"])]
    assert layout.lookups == []  # a split target never assembles


def test_last_operation_per_key_wins_and_deleted_threads_drop_their_batch() -> None:
    layout = MemoryLayout(Form.WHOLE)
    sink = LayeredSink(layout)
    old = checkpoint({"state": {"life": 1}})
    sink.apply(split_events("t", old))
    write = WriteChange(Op.UPSERT, WriteKey("t", "", old["id"], "task", 0), SRC, "c", "msgpack", b"\x01")
    new = checkpoint({"state": {"life": 2}})  # same (channel, version) as the first life
    sink.apply(
        [
            write,
            WriteChange(Op.DELETE, write.key, SRC),
            write,
            ThreadDeletion("t", SRC),
            *split_events("t", new),
            WriteChange(Op.UPSERT, WriteKey("u", "", "c", "task", 0), SRC, "c", "msgpack", b"\x02"),
        ]
    )
    assert list(layout.checkpoints) == [("t", "", new["id"])]
    assert whole_value(layout, "t", new)["channel_values"] == {"state": {"life": 2}}
    assert list(layout.writes) == [("u", "", "c", "task", 0)]


def test_cache_changes_wait_for_a_durable_batch() -> None:
    layout = MemoryLayout(Form.WHOLE)
    sink = LayeredSink(layout)
    layout.fail = True
    with pytest.raises(OSError):
        sink.apply(split_events("t", checkpoint({"doc": {"a": 1}})))
    assert len(sink.cache) == 0


def test_unchanged_fields_are_kept_from_the_target_or_the_batch() -> None:
    layout = MemoryLayout(Form.WHOLE)
    sink = LayeredSink(layout)
    cp = checkpoint({"doc": {"a": 1}})
    events = split_events("t", cp, {"v": "old"})
    sink.apply(events)
    key = CheckpointKey("t", "", cp["id"])
    sink.apply([CheckpointChange(Op.UPSERT, key, SRC, metadata={"v": "new"}, unchanged=("checkpoint",))])
    value = layout.checkpoints[("t", "", cp["id"])]
    assert isinstance(value, WholeCheckpoint) and value.metadata == {"v": "new"}
    assert whole_value(layout, "t", cp) == cp
    write = WriteChange(Op.UPSERT, WriteKey("t", "", cp["id"], "task", -1), SRC, "c", "msgpack", b"\x07")
    sink.apply([write, WriteChange(Op.UPSERT, write.key, SRC, "c", unchanged=("type", "data"))])
    assert layout.writes[write.key.thread_id, "", cp["id"], "task", -1].data == b"\x07"
    sink.apply([CheckpointChange(Op.UPSERT, CheckpointKey("gone", "", "x"), SRC, unchanged=("checkpoint",))])
    assert sink.missing_payloads == 1
