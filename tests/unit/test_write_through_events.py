"""InMemorySaver's structures as change events (replicator.memory_events), without any I/O.

The builders for put and put_writes run *before* the saver is touched; these tests prove that what
they compute is exactly what the saver then stores, by comparing with the events read from the
saver's structures afterwards, over a real graph run (subgraph, interrupt, resume, unicode).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from replicator.events import CheckpointDocument, DataChange, ThreadDeletion, WriteChange
from replicator.memory_events import (
    PositionClock,
    put_events,
    put_writes_events,
    stamper,
    thread_ids,
    thread_state,
)
from tests.contract.recording import hand_checkpoint, run_graph


def fold(events: list[DataChange]) -> dict[Any, Any]:
    """What applying ``events`` in order leaves: key -> (type, data[, metadata]); deletions clear."""
    state: dict[Any, Any] = {}
    for event in events:
        if isinstance(event, ThreadDeletion):
            state = {k: v for k, v in state.items() if k[1].thread_id != event.thread_id}
        elif isinstance(event, CheckpointDocument):
            state[("c", event.key)] = (event.parent_checkpoint_id, event.type, event.data, event.metadata)
        elif isinstance(event, WriteChange):
            state[("w", event.key)] = (event.channel, event.type, event.data, event.task_path)
    return state


def stored(saver: InMemorySaver) -> dict[Any, Any]:
    events: list[DataChange] = []
    for thread in thread_ids(saver):
        events.extend(thread_state(saver, thread, stamper(1)))
    return fold(events)


class Capturing(InMemorySaver):
    """An InMemorySaver that computes each call's events first, as WriteThroughSaver does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[DataChange] = []

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self.events.extend(put_events(self, config, checkpoint, metadata, new_versions, stamper(1)))
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.events.extend(put_writes_events(self, config, writes, task_id, task_path, stamper(1)))
        super().put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.events.append(ThreadDeletion(str(thread_id), stamper(1)("thread")))
        super().delete_thread(thread_id)


def test_events_computed_before_each_call_are_what_the_saver_stores() -> None:
    saver = Capturing()
    run_graph(saver, "t-1")
    run_graph(saver, "t-2", first_message="zwei 🙂")
    run_graph(saver, "t-3")
    saver.delete_thread("t-3")
    assert thread_ids(saver) == ["t-1", "t-2"]
    assert fold(saver.events) == stored(saver)
    namespaces = {k[1].checkpoint_ns for k in stored(saver) if k[0] == "c"}
    assert "" in namespaces and any(ns.startswith("sub:") for ns in namespaces)  # the subgraph


def test_documents_read_back_as_the_saver_reads_them() -> None:
    saver = InMemorySaver()
    run_graph(saver, "t")
    serde = JsonPlusSerializer()
    documents = [e for e in thread_state(saver, "t", stamper(7)) if isinstance(e, CheckpointDocument)]
    assert documents
    for doc in documents:
        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": doc.key.checkpoint_ns}}
        config["configurable"]["checkpoint_id"] = doc.key.checkpoint_id
        expected = saver.get_tuple(config)
        assert expected is not None
        assert doc.type == "msgpack"
        assert serde.loads_typed((doc.type, doc.data or b"")) == expected.checkpoint
        assert doc.metadata == msgspec.msgpack.decode(msgspec.msgpack.encode(expected.metadata))
        parent = expected.parent_config["configurable"]["checkpoint_id"] if expected.parent_config else None
        assert doc.parent_checkpoint_id == parent
        assert doc.source.position == 7


def test_thread_state_starts_with_a_deletion_and_keeps_every_write_idx() -> None:
    saver = InMemorySaver()
    run_graph(saver, "t")
    events = list(thread_state(saver, "t", stamper(3)))
    assert isinstance(events[0], ThreadDeletion) and events[0].thread_id == "t"
    writes = {
        (e.key.checkpoint_ns, e.key.checkpoint_id, e.key.task_id, e.key.idx)
        for e in events[1:]
        if isinstance(e, WriteChange)
    }
    held = {(k[1], k[2], task, idx) for k, inner in saver.writes.items() for (task, idx) in inner}
    assert writes == held
    assert any(idx < 0 for *_, idx in writes)  # the interrupt and resume writes keep their special idx
    assert [e.source.seq for e in events] == list(range(len(events)))


def test_regular_writes_are_insert_if_absent_special_ones_overwrite() -> None:
    saver = InMemorySaver()
    config, checkpoint, versions = hand_checkpoint("t", "", {"a": 1})
    stored_config = saver.put(config, checkpoint, {"source": "input", "step": -1}, versions)
    saver.put_writes(stored_config, [("a", "first"), ("__interrupt__", "i1")], "task")
    again = put_writes_events(
        saver, stored_config, [("a", "second"), ("__interrupt__", "i2")], "task", "", stamper(2)
    )
    assert [(e.key.idx, e.channel) for e in again if isinstance(e, WriteChange)] == [
        (WRITES_IDX_MAP["__interrupt__"], "__interrupt__")
    ]


def test_unchanged_channels_come_from_earlier_blobs_and_empty_channels_are_left_out() -> None:
    saver = Capturing()
    config, first, versions = hand_checkpoint("t", "ns", {"a": {"big": "ü" * 10}, "b": [1, 2]})
    parent = saver.put(config, first, {"step": 0}, versions)
    config2, second, versions2 = hand_checkpoint("t", "ns", {"b": [3]}, parent=first, step=1)
    config2["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    second["channel_versions"]["gone"] = "00000000000000000000000000000001.0.5"
    versions2["gone"] = second["channel_versions"]["gone"]  # a new version without a value: "empty"
    saver.put(config2, second, {"step": 1}, versions2)
    doc = saver.events[-1]
    assert isinstance(doc, CheckpointDocument)
    values = JsonPlusSerializer().loads_typed((doc.type, doc.data or b""))["channel_values"]
    assert values == {"a": {"big": "ü" * 10}, "b": [3]}
    assert fold(saver.events) == stored(saver)


def test_a_serde_that_is_not_msgpack_is_reserialized_with_the_apps_serde() -> None:
    class Pickled(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            import pickle

            return "pickle", pickle.dumps(obj)

    saver = Capturing(serde=Pickled(pickle_fallback=True))
    run_graph(saver, "t")
    docs = [e for e in saver.events if isinstance(e, CheckpointDocument)]
    assert docs and all(d.type == "pickle" for d in docs)
    last = docs[-1]
    config: Any = {
        "configurable": {
            "thread_id": "t",
            "checkpoint_ns": last.key.checkpoint_ns,
            "checkpoint_id": last.key.checkpoint_id,
        }
    }
    expected = saver.get_tuple(config)
    assert expected is not None
    assert saver.serde.loads_typed((last.type, last.data or b"")) == expected.checkpoint


def test_a_bad_config_raises_before_any_event() -> None:
    saver = InMemorySaver()
    _, checkpoint, versions = hand_checkpoint("t", "", {"a": 1})
    with pytest.raises(KeyError):  # InMemorySaver.put needs checkpoint_ns too
        put_events(saver, {"configurable": {"thread_id": "t"}}, checkpoint, {}, versions, stamper(1))


def test_positions_strictly_increase() -> None:
    clock = PositionClock()
    seen = [clock.next() for _ in range(1000)]
    assert seen == sorted(set(seen)) and len(seen) == 1000
