"""LangGraph runs turned into the change events a PostgresSaver source emits, for sink tests.

Events are built the way PostgresSaver.put / put_writes store rows (primitive channel values
inline in the JSON skeleton, the rest as versioned blobs only for channels in ``new_versions``,
writes as serde bytes with WRITES_IDX_MAP indices), from real LangGraph checkpoints and langgraph's
real serializer. The expected values come from InMemorySaver, which runs the same calls, or from a
real PostgresSaver. No sink and no store here: the contract suite and per-sink tests share it.
"""

from __future__ import annotations

import itertools
import json
import operator
import threading
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    CheckpointTuple,
    create_checkpoint,
    empty_checkpoint,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from replicator.events import (
    BlobChange,
    BlobKey,
    CheckpointChange,
    CheckpointKey,
    DataChange,
    Op,
    SourceMeta,
    ThreadDeletion,
    WriteChange,
    WriteKey,
)

SERDE = JsonPlusSerializer()
KiB = 1024
_position = itertools.count(1)


def src() -> SourceMeta:
    """Source metadata with a fresh, increasing position."""
    return SourceMeta(position=next(_position))


def jsonb(value: Any) -> Any:
    """What a value looks like after a round trip through a Postgres jsonb column."""
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- event builders


def put_events(
    config: dict[str, Any], checkpoint: dict[str, Any], metadata: dict[str, Any], new_versions: dict[str, Any]
) -> list[DataChange]:
    """The rows PostgresSaver.put inserts (blobs, then the checkpoint), as events."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    conf = config["configurable"]
    t, ns, parent = conf["thread_id"], conf.get("checkpoint_ns", ""), conf.get("checkpoint_id")
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
    events: list[DataChange] = []
    for k, ver in new_versions.items():
        if k in blob_values:
            type_, data = SERDE.dumps_typed(blob_values[k])
            events.append(BlobChange(Op.UPSERT, BlobKey(t, ns, k, str(ver)), src(), type=type_, data=data))
    skeleton = jsonb({**checkpoint, "channel_values": inline})
    events.append(
        CheckpointChange(
            Op.UPSERT,
            CheckpointKey(t, ns, checkpoint["id"]),
            src(),
            parent_checkpoint_id=parent,
            checkpoint=skeleton,
            metadata=jsonb(get_checkpoint_metadata(config, metadata)),  # type: ignore[arg-type]
        )
    )
    return events


def writes_events(
    config: dict[str, Any], writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
) -> list[DataChange]:
    """The rows PostgresSaver.put_writes inserts, as events."""
    conf = config["configurable"]
    t, ns, cid = conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
    events: list[DataChange] = []
    for i, (channel, value) in enumerate(writes):
        type_, data = SERDE.dumps_typed(value)
        events.append(
            WriteChange(
                Op.UPSERT,
                WriteKey(t, ns, cid, task_id, WRITES_IDX_MAP.get(channel, i)),
                src(),
                channel=channel,
                type=type_,
                data=data,
                task_path=task_path,
            )
        )
    return events


Row = CheckpointChange | BlobChange | WriteChange


def delete_thread_events(events: Sequence[DataChange], thread_id: str) -> list[DataChange]:
    """What PostgresSaver.delete_thread produces in the log: a DELETE of every row the thread still
    has, in its statement order (checkpoints, then blobs, then writes). ``events`` is the stream that
    made those rows; a row whose last event was a DELETE is gone already."""
    live: dict[Any, Row] = {}
    for event in events:
        if not isinstance(event, ThreadDeletion) and event.key.thread_id == thread_id:
            if event.op == Op.DELETE:
                live.pop(event.key, None)
            else:
                live[event.key] = event
    return [
        *(
            CheckpointChange(Op.DELETE, e.key, src())
            for e in live.values()
            if isinstance(e, CheckpointChange)
        ),
        *(BlobChange(Op.DELETE, e.key, src()) for e in live.values() if isinstance(e, BlobChange)),
        *(WriteChange(Op.DELETE, e.key, src()) for e in live.values() if isinstance(e, WriteChange)),
    ]


def thread_of(event: DataChange) -> str:
    return event.thread_id if isinstance(event, ThreadDeletion) else event.key.thread_id


class Recorder(InMemorySaver):
    """InMemorySaver that also turns every put/put_writes into the events PostgresSaver's rows give."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[DataChange] = []
        self._lock = threading.RLock()

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        with self._lock:
            self.events.extend(put_events(config, checkpoint, metadata, new_versions))
            return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        with self._lock:
            self.events.extend(writes_events(config, writes, task_id, task_path))
            super().put_writes(config, writes, task_id, task_path)


class TransactionRecorder(Recorder):
    """A Recorder that also keeps PostgresSaver's transactions apart: one per put and put_writes."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions: list[list[DataChange]] = []

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        with self._lock:
            before = len(self.events)
            result = super().put(config, checkpoint, metadata, new_versions)
            self.transactions.append(self.events[before:])
            return result

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        with self._lock:
            before = len(self.events)
            super().put_writes(config, writes, task_id, task_path)
            self.transactions.append(self.events[before:])


def postgres_rows_as_events(conn: Any) -> list[DataChange]:
    """Every row of a real PostgresSaver's tables as events, as a snapshot reads them (blobs first).
    ``conn`` is a psycopg connection with ``row_factory=dict_row``."""
    events: list[DataChange] = []
    for row in conn.execute(
        "SELECT * FROM checkpoint_blobs ORDER BY thread_id, checkpoint_ns, channel, version"
    ):
        key = BlobKey(row["thread_id"], row["checkpoint_ns"], row["channel"], row["version"])
        events.append(BlobChange(Op.UPSERT, key, src(), type=row["type"], data=row["blob"]))
    for row in conn.execute("SELECT * FROM checkpoints ORDER BY thread_id, checkpoint_ns, checkpoint_id"):
        ckey = CheckpointKey(row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"])
        events.append(
            CheckpointChange(
                Op.UPSERT,
                ckey,
                src(),
                parent_checkpoint_id=row["parent_checkpoint_id"],
                checkpoint=row["checkpoint"],
                metadata=row["metadata"],
            )
        )
    for row in conn.execute("SELECT * FROM checkpoint_writes"):
        wkey = WriteKey(
            row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"], row["task_id"], row["idx"]
        )
        events.append(
            WriteChange(
                Op.UPSERT,
                wkey,
                src(),
                channel=row["channel"],
                type=row["type"],
                data=row["blob"],
                task_path=row["task_path"],
            )
        )
    return events


# --------------------------------------------------------------------------- a real graph


class SubState(TypedDict, total=False):
    notes: Annotated[list[str], operator.add]
    answer: str


class State(TypedDict, total=False):
    messages: Annotated[list[Any], operator.add]
    profile: dict[str, Any]
    count: int
    notes: Annotated[list[str], operator.add]
    answer: str


def build_graph(checkpointer: Any) -> Any:
    """A graph with a subgraph (a checkpoint namespace), an interrupt, parallel nodes and unicode."""

    def ask(state: SubState) -> SubState:
        answer = interrupt({"question": "Wie heißt du? 🙂"})
        return {"notes": [f"answered: {answer}"], "answer": answer}

    def think(state: SubState) -> SubState:
        return {"notes": ["thinking…"]}

    sub = StateGraph(SubState)
    sub.add_node("think", think)
    sub.add_node("ask", ask)
    sub.add_edge(START, "think")
    sub.add_edge("think", "ask")
    sub.add_edge("ask", END)

    def prep(state: State) -> State:
        return {
            "messages": [AIMessage(content="Grüß Gott — let's begin 🚀")],
            "profile": {"lang": "de", "tags": {"x", "y"}, "nested": [1, 2.5, None, "ü"]},
            "count": state.get("count", 0) + 1,
        }

    def side(state: State) -> State:
        return {"messages": [AIMessage(content="side work ✓")], "count": state.get("count", 0) + 10}

    g = StateGraph(State)
    g.add_node("prep", prep)
    g.add_node("sub", sub.compile())
    g.add_node("side", side)
    g.add_edge(START, "prep")
    g.add_edge("prep", "sub")
    g.add_edge("prep", "side")
    g.add_edge("sub", END)
    g.add_edge("side", END)
    return g.compile(checkpointer=checkpointer)


def run_graph(saver: Any, thread_id: str, first_message: str = "Hallo, Welt! 你好") -> None:
    """One conversation: the first turn stops at the subgraph's interrupt, the second resumes it."""
    app = build_graph(saver)
    config = {"configurable": {"thread_id": thread_id}}
    app.invoke({"messages": [HumanMessage(content=first_message)], "count": 0}, config)
    app.invoke(Command(resume="Jörg 🦊"), config)


# --------------------------------------------------------------------------- helpers


def batches(events: Sequence[DataChange], size: int) -> Iterator[list[DataChange]]:
    for i in range(0, len(events), size):
        yield list(events[i : i + size])


def namespaces(saver: InMemorySaver, thread_id: str) -> list[str]:
    return sorted(saver.storage[thread_id].keys())


def assert_same_tuple(
    expected: CheckpointTuple | None, actual: CheckpointTuple | None, metadata: Any = None
) -> None:
    assert actual is not None and expected is not None
    assert actual.config == expected.config
    assert actual.parent_config == expected.parent_config
    assert actual.checkpoint == expected.checkpoint
    assert actual.metadata == (jsonb(expected.metadata) if metadata is None else metadata)
    # Same writes; DynamoDBSaver returns them in sort-key order, PostgresSaver by task_path.
    key = lambda w: (w[0], w[1], repr(w[2]))  # noqa: E731
    assert sorted(actual.pending_writes or [], key=key) == sorted(expected.pending_writes or [], key=key)


def assert_thread_equal(expected: InMemorySaver, actual: Any, thread_id: str) -> int:
    """Every namespace: latest, each checkpoint by id, and list() agree. Returns checkpoints seen."""
    seen = 0
    for ns in namespaces(expected, thread_id):
        config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        assert_same_tuple(expected.get_tuple(config), actual.get_tuple(config))
        want = list(expected.list(config))
        got = list(actual.list(config))
        assert [t.config for t in got] == [t.config for t in want]
        for w, g in zip(want, got, strict=True):
            assert_same_tuple(w, g)
            assert_same_tuple(w, actual.get_tuple(w.config))
            seen += 1
    return seen


def hand_checkpoint(
    thread_id: str, ns: str, values: dict[str, Any], parent: Any = None, step: int = 0
) -> tuple[Any, Any, dict[str, Any]]:
    """A real checkpoint (create_checkpoint) with these channel values, all of them new versions."""
    base = parent or empty_checkpoint()
    checkpoint = create_checkpoint(base, None, step)
    versions = dict(base["channel_versions"])
    new_versions = {}
    for ch in values:
        prev = versions.get(ch)
        n = int(str(prev).split(".")[0]) + 1 if prev else 1
        versions[ch] = new_versions[ch] = f"{n:032}.{0.5:016}"
    checkpoint["channel_values"] = {**base["channel_values"], **values}
    checkpoint["channel_versions"] = versions
    checkpoint["updated_channels"] = sorted(values)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent["id"]
    return config, checkpoint, new_versions


def saver_config(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> Any:
    conf = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}
