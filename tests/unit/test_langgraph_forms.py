"""The two checkpoint forms with langgraph's real serializer: whole -> split gives what
PostgresSaver.put stores, split -> whole what SqliteSaver stores (decoded equal), and back."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import msgspec
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import END, START, StateGraph

from connectors.langgraph import forms
from connectors.langgraph.forms import ABSENT, Blob
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    CheckpointChange,
    CheckpointDocument,
    CheckpointKey,
    Op,
    SourceMeta,
    thread_of,
)

SERDE = JsonPlusSerializer()
SRC = SourceMeta(position=1)


class State(TypedDict, total=False):
    messages: Annotated[list[Any], operator.add]
    raw: bytes
    profile: dict[str, Any]
    count: int
    note: str | None


def real_checkpoints() -> list[dict[str, Any]]:
    """Every checkpoint of a small real graph run twice on one thread, oldest first."""

    def first(state: State) -> State:
        return {
            "messages": [AIMessage(content="Grüß Gott 🚀")],
            "raw": bytes(range(256)),
            "profile": {"tags": {"x"}, "nested": [1, 2.5, None, "ü"]},
            "count": state.get("count", 0) + 1,
            "note": None,
        }

    def second(state: State) -> State:
        return {"messages": [AIMessage(content="again")], "count": state.get("count", 0) + 1, "note": "n"}

    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    saver = InMemorySaver()
    app = g.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "t"}}
    app.invoke({"messages": [HumanMessage(content="Hallo 你好")], "count": 0}, config)
    app.invoke({"messages": [HumanMessage(content="more")]}, config)
    return [dict(t.checkpoint) for t in reversed(list(saver.list(config)))]


def postgres_rows(checkpoint: dict[str, Any], new_versions: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """What PostgresSaver.put stores: the inline skeleton and the blobs of new versions."""
    inline = dict(checkpoint["channel_values"])
    blob_values: dict[str, Any] = {}
    for k, v in checkpoint["channel_values"].items():
        if isinstance(v, _DeltaSnapshot):
            blob_values[k] = inline.pop(k)
            inline[k] = True
        elif v is None or isinstance(v, str | int | float | bool):
            pass
        else:
            blob_values[k] = inline.pop(k)
    blobs = {
        (k, forms.version_text(v)): SERDE.dumps_typed(blob_values[k])
        for k, v in new_versions.items()
        if k in blob_values
    }
    return {**checkpoint, "channel_values": inline}, blobs


def cut(checkpoint: dict[str, Any], previous: dict[str, Any] | None) -> forms.SplitCheckpoint:
    type_, data = SERDE.dumps_typed(checkpoint)
    assert type_ == "msgpack"
    return forms.split(data, previous, "test")


def new_versions(checkpoint: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    prev = previous or {}
    return {k: v for k, v in checkpoint["channel_versions"].items() if prev.get(k) != v}


def test_whole_to_split_is_what_postgres_saver_stores() -> None:
    checkpoints = real_checkpoints()
    assert len(checkpoints) >= 4
    previous: dict[str, Any] | None = None
    for checkpoint in checkpoints:
        split = cut(checkpoint, previous)
        skeleton, blobs = postgres_rows(checkpoint, new_versions(checkpoint, previous))
        assert split.skeleton == skeleton
        # each blob is byte-identical to the value's own dumps_typed (a slice of the document)
        assert {(ch, v): (t, d) for ch, v, t, d in split.blobs} == blobs
        previous = checkpoint["channel_versions"]
    assert any(t == "bytes" for cp in checkpoints for *_, t, _ in cut(cp, None).blobs)


def test_split_and_back_gives_the_same_checkpoint() -> None:
    store: dict[tuple[str, str], Blob] = {}
    previous: dict[str, Any] | None = None
    for checkpoint in real_checkpoints():
        type_, data = SERDE.dumps_typed(checkpoint)
        document = CheckpointDocument(
            Op.UPSERT, CheckpointKey("t", "", checkpoint["id"]), SRC, None, type_, data, {"step": 1}
        )
        events = forms.to_changes(document, previous)
        for e in events[:-1]:
            assert isinstance(e, BlobChange)
            store[(e.key.channel, e.key.version)] = (e.type, e.data)
        change = events[-1]
        assert isinstance(change, CheckpointChange) and change.metadata == {"step": 1}
        # the skeleton survives jsonb, as the split form travels
        change = msgspec.structs.replace(change, checkpoint=json.loads(json.dumps(change.checkpoint)))
        rebuilt, missing = forms.to_document(change, lambda ch, v: store.get((ch, v), ABSENT))
        assert missing == {}
        assert rebuilt.type == "msgpack" and rebuilt.key == document.key
        assert SERDE.loads_typed((rebuilt.type, rebuilt.data or b"")) == checkpoint
        previous = checkpoint["channel_versions"]


def test_traffic_is_linear_only_new_versions_travel() -> None:
    checkpoints = real_checkpoints()
    all_blobs = sum(len(cut(cp, None).blobs) for cp in checkpoints)
    previous: dict[str, Any] | None = None
    sent = 0
    for cp in checkpoints:
        sent += len(cut(cp, previous).blobs)
        previous = cp["channel_versions"]
    assert sent < all_blobs


def test_delta_snapshot_keeps_the_inline_marker_and_int_versions() -> None:
    checkpoint = create_checkpoint(empty_checkpoint(), None, 0)
    checkpoint["channel_values"] = {"hist": _DeltaSnapshot([1, 2]), "flag": True, "empty": None}
    checkpoint["channel_versions"] = {"hist": 3, "flag": 2, "empty": 1}
    split = cut(dict(checkpoint), None)
    assert split.skeleton["channel_values"] == {"hist": True, "flag": True, "empty": None}
    assert [(ch, v, t) for ch, v, t, _ in split.blobs] == [("hist", "3", "msgpack")]
    assert split.blobs[0][3] == SERDE.dumps_typed(_DeltaSnapshot([1, 2]))[1]
    assert [r[2:] for r in forms.blob_refs("t", "", split.skeleton)] == [("hist", "3"), ("flag", "2")]
    blobs = {("hist", "3"): ("msgpack", split.blobs[0][3])}
    full, _ = forms.assemble(split.skeleton, lambda ch, v: blobs.get((ch, v), ABSENT), "here")
    assert SERDE.loads_typed(("msgpack", msgspec.msgpack.encode(full))) == checkpoint


def test_missing_blobs_are_reported_only_for_updated_channels() -> None:
    skeleton = {
        "channel_values": {"n": 1},
        "channel_versions": {"n": "1", "gone": "2", "trigger": "3"},
        "updated_channels": ["gone"],
    }
    full, missing = forms.assemble(skeleton, lambda ch, v: ABSENT, "here")
    assert full["channel_values"] == {"n": 1} and missing == {"gone": "2"}


def test_unspliceable_and_malformed_inputs_name_the_checkpoint() -> None:
    with pytest.raises(ReplicatorError) as err:
        forms.splice("pickle", b"\x80\x04N.", "thread 't' ns '' checkpoint c1", "obj")
    assert (
        err.value.kind is ErrorKind.MALFORMED_EVENT and "pickle" in str(err.value) and "c1" in str(err.value)
    )
    with pytest.raises(ReplicatorError) as err:
        forms.split(b"\xc1not msgpack", None, "checkpoint c2")
    assert err.value.kind is ErrorKind.MALFORMED_EVENT and "c2" in str(err.value)
    document = CheckpointDocument(Op.UPSERT, CheckpointKey("t", "", "c3"), SRC, type="json", data=b"{}")
    with pytest.raises(ReplicatorError) as err:
        forms.to_changes(document, None)
    assert err.value.kind is ErrorKind.MALFORMED_EVENT and "c3" in str(err.value)


def test_document_event_round_trips_through_the_codec() -> None:
    from replicator.codec import decode_value, encode

    document = CheckpointDocument(
        Op.UPSERT, CheckpointKey("t", "ns", "c"), SRC, "p", "msgpack", b"\x80", {"step": 2}
    )
    (record,) = encode(document, 1 << 20)
    assert decode_value(record.value) == document
    assert thread_of(document) == "t"
