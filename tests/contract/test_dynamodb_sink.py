"""Contract of DynamoDBSink on a real moto server: what DynamoDBSaver reads back after the events
PostgresSaver's tables produce equals what PostgresSaver itself returns.

Events are built the way PostgresSaver.put / put_writes store rows (primitive channel values
inline in the JSON skeleton, the rest as versioned blobs only for channels in ``new_versions``,
writes as serde bytes with WRITES_IDX_MAP indices), from real LangGraph checkpoints and langgraph's
real serializer. The expected values come from InMemorySaver, which runs the same calls.
"""

from __future__ import annotations

import itertools
import json
import operator
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, TypedDict

import boto3
import pytest
import structlog.testing
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

from connectors.sinks.dynamodb import BLOB_PK_PREFIX, WRITES_INDEX_PK_PREFIX, DynamoDBSink
from replicator.embedded import create_dynamodb_table
from replicator.errors import ErrorKind, ReplicatorError
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
REGION = "us-east-1"
KiB = 1024
_lsn = itertools.count(1)


def src() -> SourceMeta:
    return SourceMeta(position=next(_lsn))


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


def build_graph(checkpointer: InMemorySaver) -> Any:
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


def run_graph(saver: Recorder, thread_id: str) -> None:
    app = build_graph(saver)
    config = {"configurable": {"thread_id": thread_id}}
    app.invoke({"messages": [HumanMessage(content="Hallo, Welt! 你好")], "count": 0}, config)
    app.invoke(Command(resume="Jörg 🦊"), config)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def aws(moto: Any) -> dict[str, str]:
    return {"endpoint_url": moto.endpoint_url}


def make_sink(moto: Any, table: str, bucket: str | None = None, **kw: Any) -> DynamoDBSink:
    return DynamoDBSink(
        "dynamo-test",
        table,
        REGION,
        endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_endpoint_url=moto.endpoint_url if bucket else None,
        **kw,
    )


def ddb(moto: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name=REGION)


def s3(moto: Any) -> Any:
    return boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION)


def scan(moto: Any, table: str) -> list[dict[str, Any]]:
    client = ddb(moto)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def bucket_contents(moto: Any, bucket: str | None) -> dict[str, bytes]:
    if not bucket:
        return {}
    client = s3(moto)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


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


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_real_graph_reads_back_like_the_source(
    moto: Any, dynamo_table: str, s3_bucket: str, batch_size: int
) -> None:
    recorder = Recorder()
    threads = ["thread-ünï-🚀", "plain#thread"]
    for t in threads:
        run_graph(recorder, t)
    assert any(ns for t in threads for ns in namespaces(recorder, t)), "the subgraph made a namespace"
    assert any(isinstance(e, WriteChange) and e.key.idx == -3 for e in recorder.events)  # __interrupt__
    assert any(isinstance(e, WriteChange) and e.key.idx == -4 for e in recorder.events)  # __resume__

    sink = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="/app/lg/")
    sink.check()
    for batch in batches(recorder.events, batch_size):
        sink.apply(batch)
    saver = sink.saver()
    for t in threads:
        assert assert_thread_equal(recorder, saver, t) >= 6
    assert sorted(sink.thread_ids()) == sorted(threads)
    assert sink.missing_blobs == 0
    sink.close()


def test_special_writes_unicode_and_hash_in_names(moto: Any, dynamo_table: str) -> None:
    sink = make_sink(moto, dynamo_table)
    t, ns = "tëst#1", "outer:1f0e|inner:2a"
    config, ckpt, new = hand_checkpoint(
        t, ns, {"messages": [HumanMessage(content="ä")], "ch#with#hash": {"k": "v"}, "flag": True}
    )
    events = put_events(config, ckpt, {"source": "input", "step": -1, "parents": {}}, new)
    wconf = saver_config(t, ns, ckpt["id"])
    task = str(uuid.uuid4())
    events += writes_events(
        wconf, [("messages", [AIMessage(content="ok ✓")]), ("flag", False)], task, "~a, b"
    )
    events += writes_events(wconf, [("__error__", ValueError("kaputt ✗"))], task, "~a, b")
    events += writes_events(wconf, [("__interrupt__", ["why?"])], str(uuid.uuid4()))
    events += writes_events(wconf, [("__resume__", None)], "00000000-0000-0000-0000-000000000000")
    sink.apply(events)

    saver = sink.saver()
    got = saver.get_tuple(saver_config(t, ns))
    assert got is not None
    assert got.checkpoint == ckpt
    assert got.metadata == {"source": "input", "step": -1, "parents": {}}
    writes = {(w[0], w[1]): w[2] for w in got.pending_writes or []}
    assert writes[(task, "messages")] == [AIMessage(content="ok ✓")]
    assert writes[(task, "flag")] is False
    # what PostgresSaver returns for it too: the serde's round trip of the exception
    assert writes[(task, "__error__")] == SERDE.loads_typed(SERDE.dumps_typed(ValueError("kaputt ✗")))
    assert ["why?"] in writes.values()
    assert writes[("00000000-0000-0000-0000-000000000000", "__resume__")] is None
    items = {(i["PK"]["S"], i["SK"]["S"]): i for i in scan(moto, dynamo_table)}
    meta = items[(f"WRITES_{t}#{ns}#{ckpt['id']}", f"{task}#-1")]
    assert meta["idx"] == {"N": "-1"} and meta["task_path"] == {"S": "~a, b"}
    resume = items[(f"WRITES_{t}#{ns}#{ckpt['id']}", "00000000-0000-0000-0000-000000000000#-4")]
    assert "task_path" not in resume  # the saver leaves it out when empty
    assert (
        f"{BLOB_PK_PREFIX}{t}",
        json.dumps([ns, "ch#with#hash", new["ch#with#hash"]], separators=(",", ":")),
    ) in items
    assert sink.thread_ids() == [t]


def test_large_values_go_to_s3_like_the_saver(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    sink = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx")
    t = "big-🐘"
    medium = "m" * (420 * KiB)  # > 400 KiB
    huge = bytes(range(256)) * (5 * KiB)  # 1.25 MiB, blob type "bytes"
    config, ckpt, new = hand_checkpoint(t, "", {"medium": medium + "!", "huge": huge, "small": [1, 2]})
    # a str is inline in PostgresSaver: make the medium value a list so it becomes a blob
    ckpt["channel_values"]["medium"] = [medium]
    events = put_events(config, ckpt, {"step": 0}, new)
    wconf = saver_config(t, "", ckpt["id"])
    task = "task-1"
    events += writes_events(wconf, [("messages", "w" * (1100 * KiB)), ("tiny", 1)], task)
    sink.apply(events)

    saver = sink.saver()
    got = saver.get_tuple(saver_config(t))
    assert got is not None
    assert got.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [1, 2]}
    assert sorted(got.pending_writes or []) == sorted(
        [(task, "messages", "w" * (1100 * KiB)), (task, "tiny", 1)]
    )

    items = {(i["PK"]["S"], i["SK"]["S"]): i for i in scan(moto, dynamo_table)}
    meta = items[(f"CHECKPOINT_{t}", f"#{ckpt['id']}")]
    assert meta["ref_loc"]["S"] == "S3" and meta["ref_key"]["S"] == f"{t}/checkpoints//{ckpt['id']}"
    wmeta = items[(f"WRITES_{t}##{ckpt['id']}", f"{task}#0")]
    assert wmeta["ref_loc"]["S"] == "S3"
    assert wmeta["ref_key"]["S"] == f"{t}/checkpoints//{ckpt['id']}/writes/{task}/0"
    assert items[(f"WRITES_{t}##{ckpt['id']}", f"{task}#1")]["ref_loc"]["S"] == "DYNAMODB"
    objects = bucket_contents(moto, s3_bucket)
    assert f"pfx/{t}/checkpoints//{ckpt['id']}" in objects
    assert f"pfx/{t}/checkpoints//{ckpt['id']}/writes/{task}/0" in objects
    blob_objects = [k for k in objects if k.startswith("pfx/_replicator/blobs/")]
    assert len(blob_objects) == 2  # medium and huge blob state offloaded, small inline
    assert (f"CHUNK_{t}##{ckpt['id']}", "CHUNK") not in items

    # A cold sink (restart) assembles the next checkpoint from the offloaded blob state.
    sink2 = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx")
    config2, ckpt2, new2 = hand_checkpoint(t, "", {"small": [3]}, parent=ckpt, step=1)
    config2["configurable"]["checkpoint_id"] = ckpt["id"]
    sink2.apply(put_events(config2, ckpt2, {"step": 1}, new2))
    got2 = sink2.saver().get_tuple(saver_config(t))
    assert got2 is not None and got2.checkpoint["id"] == ckpt2["id"]
    assert got2.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [3]}
    assert got2.parent_config == saver_config(t, "", ckpt["id"])


def test_blob_from_an_earlier_batch_and_after_restart(moto: Any, dynamo_table: str) -> None:
    t = "long-conversation"
    history = [HumanMessage(content="first")]
    c1_conf, c1, new1 = hand_checkpoint(t, "", {"history": history, "profile": {"name": "Zoë"}})
    c2_conf, c2, new2 = hand_checkpoint(t, "", {"count": 2}, parent=c1, step=1)
    c3_conf, c3, new3 = hand_checkpoint(t, "", {"count": 3}, parent=c2, step=2)

    sink = make_sink(moto, dynamo_table)
    sink.apply(put_events(c1_conf, c1, {"step": 0}, new1))
    assert len(sink.cache) >= 2  # blobs applied are cached
    sink.apply(put_events(c2_conf, c2, {"step": 1}, new2))  # blobs from the cache
    sink.close()

    cold = make_sink(moto, dynamo_table)  # restart: empty cache, state read from the table
    assert len(cold.cache) == 0
    cold.apply(put_events(c3_conf, c3, {"step": 2}, new3))
    saver = cold.saver()
    for ckpt in (c1, c2, c3):
        got = saver.get_tuple(saver_config(t, "", ckpt["id"]))
        assert got is not None and got.checkpoint == ckpt
    assert c3["channel_values"]["history"] == history
    assert cold.missing_blobs == 0
    # the lookup filled the cache, including what the empty channels resolved to
    assert len(cold.cache) >= 2


def test_replaying_a_batch_or_a_suffix_changes_nothing(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    recorder = Recorder()
    run_graph(recorder, "replayed")
    run_graph(recorder, "deleted-later")
    events = list(recorder.events)
    # deletes in the stream: a write, a checkpoint, a whole thread, then a new life for it
    first_write = next(e for e in events if isinstance(e, WriteChange) and e.key.thread_id == "replayed")
    events.append(WriteChange(Op.DELETE, first_write.key, src()))
    first_ckpt = next(e for e in events if isinstance(e, CheckpointChange) and e.key.thread_id == "replayed")
    events.append(CheckpointChange(Op.DELETE, first_ckpt.key, src()))
    events.append(ThreadDeletion("deleted-later", src()))
    big_conf, big, big_new = hand_checkpoint("deleted-later", "", {"blob": ["x" * (400 * KiB)]})
    events += put_events(big_conf, big, {"step": 0}, big_new)

    sink = make_sink(moto, dynamo_table, s3_bucket)
    sink.apply(events)
    table_once, bucket_once = scan(moto, dynamo_table), bucket_contents(moto, s3_bucket)

    sink.apply(events)  # the same batch again
    assert scan(moto, dynamo_table) == table_once
    assert bucket_contents(moto, s3_bucket) == bucket_once

    for start in (1, len(events) // 3, len(events) // 2, len(events) - 3):
        fresh = make_sink(moto, dynamo_table, s3_bucket)  # a new owner replays from its offset
        for batch in batches(events[start:], 5):
            fresh.apply(batch)
        assert scan(moto, dynamo_table) == table_once, f"suffix from {start}"
        assert bucket_contents(moto, s3_bucket) == bucket_once, f"suffix from {start}"

    saver = sink.saver()
    assert saver.get_tuple(saver_config("replayed", "", first_ckpt.key.checkpoint_id)) is None
    assert [t.checkpoint["id"] for t in saver.list(saver_config("deleted-later"))] == [big["id"]]


def test_deletes(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    recorder = Recorder()
    run_graph(recorder, "victim")
    run_graph(recorder, "bystander")
    sink = make_sink(moto, dynamo_table, s3_bucket)
    sink.apply(recorder.events)

    # an orphan write (its checkpoint never arrives) and a large write offloaded to S3
    orphan_conf = saver_config("victim", "", "1f0000aa-0000-6000-8000-000000000000")
    sink.apply(writes_events(orphan_conf, [("messages", "o" * (360 * KiB))], "orphan-task"))
    assert any(k.startswith("victim/") for k in bucket_contents(moto, s3_bucket))
    bystander_before = [i for i in scan(moto, dynamo_table) if "bystander" in i["PK"]["S"]]
    saver = sink.saver()

    # delete one write
    latest = saver.get_tuple(saver_config("victim"))
    assert latest is not None
    with_writes = next(t for t in saver.list(saver_config("victim")) if t.pending_writes)
    conf = with_writes.config["configurable"]
    wt = next(
        e
        for e in recorder.events
        if isinstance(e, WriteChange)
        and e.key.thread_id == "victim"
        and e.key.checkpoint_id == conf["checkpoint_id"]
    )
    sink.apply([WriteChange(Op.DELETE, wt.key, src())])
    after = saver.get_tuple(with_writes.config)
    assert after is not None and len(after.pending_writes or []) == len(with_writes.pending_writes or []) - 1
    chunk = f"CHUNK_victim#{wt.key.checkpoint_ns}#{wt.key.checkpoint_id}#{wt.key.task_id}#{wt.key.idx}"
    assert not [i for i in scan(moto, dynamo_table) if i["PK"]["S"] == chunk]

    # delete one checkpoint
    sink.apply(
        [
            CheckpointChange(
                Op.DELETE, CheckpointKey("victim", "", latest.config["configurable"]["checkpoint_id"]), src()
            )
        ]
    )
    assert saver.get_tuple(latest.config) is None
    newest = saver.get_tuple(saver_config("victim"))
    assert newest is not None and newest.config != latest.config

    # delete the thread: nothing of it remains, the other thread is untouched
    sink.apply([ThreadDeletion("victim", src())])
    leftovers = [i["PK"]["S"] for i in scan(moto, dynamo_table) if "victim" in i["PK"]["S"]]
    assert leftovers == []
    assert not [k for k in bucket_contents(moto, s3_bucket) if "victim" in k]
    assert saver.get_tuple(saver_config("victim")) is None
    assert list(saver.list(saver_config("victim"))) == []
    assert [i for i in scan(moto, dynamo_table) if "bystander" in i["PK"]["S"]] == bystander_before
    assert sink.thread_ids() == ["bystander"]
    assert assert_thread_equal(recorder, saver, "bystander") > 0


def test_thread_deleted_and_recreated_within_one_batch(moto: Any, dynamo_table: str) -> None:
    t = "phoenix"
    c1_conf, c1, new1 = hand_checkpoint(t, "", {"state": {"life": 1}})
    sink = make_sink(moto, dynamo_table)
    sink.apply(put_events(c1_conf, c1, {"step": 0}, new1))

    c2_conf, c2, new2 = hand_checkpoint(t, "", {"state": {"life": 2}})
    # same (channel, version) as the first life: the deletion must not let the old blob through
    c3_conf, c3, _ = hand_checkpoint(t, "", {}, parent=c2, step=1)
    batch: list[DataChange] = [
        *put_events(c1_conf, c1, {"step": 0}, new1),
        ThreadDeletion(t, src()),
        *put_events(c2_conf, c2, {"step": 0}, new2),
        *put_events(c3_conf, c3, {"step": 1}, {}),
    ]
    sink.apply(batch)
    saver = sink.saver()
    assert [x.checkpoint["id"] for x in saver.list(saver_config(t))] == [c3["id"], c2["id"]]
    got = saver.get_tuple(saver_config(t))
    assert got is not None and got.checkpoint["channel_values"] == {"state": {"life": 2}}

    # deleted at the end of a batch: gone, including what the batch itself wrote before
    sink.apply([*put_events(c1_conf, c1, {"step": 0}, new1), ThreadDeletion(t, src())])
    assert [i for i in scan(moto, dynamo_table)] == []


def test_missing_blob_after_the_thread_was_deleted(moto: Any, dynamo_table: str) -> None:
    t = "gone"
    conf, ckpt, new = hand_checkpoint(t, "", {"memo": {"a": 1}, "n": 5})
    events = put_events(conf, ckpt, {"step": 0}, new)
    blob, checkpoint = events
    sink = make_sink(moto, dynamo_table)
    sink.apply([blob])
    sink.apply([checkpoint, ThreadDeletion(t, src())])
    assert scan(moto, dynamo_table) == []

    # replay from the checkpoint on: its blob is gone, the checkpoint is written without it
    replay = make_sink(moto, dynamo_table)
    with structlog.testing.capture_logs() as logs:
        replay.apply([checkpoint])
    assert replay.missing_blobs == 1
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["thread_id"] == t and "memo" in warnings[0]["channels"]
    got = replay.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint["channel_values"] == {"n": 5}
    replay.apply([ThreadDeletion(t, src())])
    assert scan(moto, dynamo_table) == []


def test_empty_channels_are_not_missing_blobs(moto: Any, dynamo_table: str) -> None:
    """Channels with a version but no value (consumed triggers, __start__) have no blob in PG."""
    recorder = Recorder()
    run_graph(recorder, "triggers")
    sink = make_sink(moto, dynamo_table)
    for batch in batches(recorder.events, 3):
        sink.apply(batch)
    assert sink.missing_blobs == 0
    assert assert_thread_equal(recorder, sink.saver(), "triggers") > 0


def test_unchanged_toast_keeps_the_stored_part(moto: Any, dynamo_table: str) -> None:
    t = "toast"
    conf, ckpt, new = hand_checkpoint(t, "", {"doc": {"body": "x" * 5000}})
    events = put_events(conf, ckpt, {"step": 0, "v": "old"}, new)
    sink = make_sink(moto, dynamo_table)
    sink.apply(events)
    key = CheckpointKey(t, "", ckpt["id"])
    # UPDATE of metadata only: the checkpoint jsonb was not sent
    sink.apply(
        [CheckpointChange(Op.UPSERT, key, src(), metadata={"step": 0, "v": "new"}, unchanged=("checkpoint",))]
    )
    got = sink.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == ckpt and got.metadata == {"step": 0, "v": "new"}
    # and the other way round, within one batch after a fresh upsert
    skeleton = events[-1].checkpoint  # type: ignore[union-attr]
    sink.apply(
        [
            CheckpointChange(Op.UPSERT, key, src(), checkpoint=skeleton, metadata={"step": 0, "v": "3rd"}),
            CheckpointChange(Op.UPSERT, key, src(), checkpoint=skeleton, unchanged=("metadata",)),
        ]
    )
    got = sink.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == ckpt and got.metadata == {"step": 0, "v": "3rd"}


def test_unsupported_blob_type_is_a_malformed_event(moto: Any, dynamo_table: str) -> None:
    t = "pickled"
    conf, ckpt, new = hand_checkpoint(t, "", {"obj": {"a": 1}})
    blob, checkpoint = put_events(conf, ckpt, {"step": 0}, new)
    assert isinstance(blob, BlobChange)
    pickled = BlobChange(Op.UPSERT, blob.key, src(), type="pickle", data=b"\x80\x04N.")
    sink = make_sink(moto, dynamo_table)
    with pytest.raises(ReplicatorError) as err:
        sink.apply([pickled, checkpoint])
    assert err.value.kind is ErrorKind.MALFORMED_EVENT
    for part in (t, ckpt["id"], "obj", "pickle"):
        assert part in str(err.value)
    assert scan(moto, dynamo_table) == []  # nothing of a refused batch was written


def test_oversized_item_without_bucket_names_the_fix(moto: Any, dynamo_table: str) -> None:
    conf, ckpt, new = hand_checkpoint("no-bucket", "", {"big": ["y" * (500 * KiB)]})
    sink = make_sink(moto, dynamo_table)
    with pytest.raises(ReplicatorError) as err:
        sink.apply(put_events(conf, ckpt, {"step": 0}, new))
    assert err.value.kind is ErrorKind.TARGET_SETUP and "s3_bucket" in str(err.value)


def test_check_missing_table(moto: Any) -> None:
    sink = make_sink(moto, f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ReplicatorError) as err:
        sink.check()
    assert err.value.kind is ErrorKind.TARGET_SETUP
    assert sink.table in str(err.value) and "aws dynamodb create-table" in str(err.value)
    assert "AttributeName=PK,KeyType=HASH" in str(err.value)


def test_check_wrong_key_schema(moto: Any) -> None:
    name = f"wrong-{uuid.uuid4().hex[:8]}"
    ddb(moto).create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ReplicatorError) as err:
        make_sink(moto, name).check()
    assert err.value.kind is ErrorKind.TARGET_SETUP
    assert name in str(err.value) and "thread_id" in str(err.value) and "create-table" in str(err.value)


def test_check_missing_bucket_and_unreachable_endpoint(moto: Any, dynamo_table: str) -> None:
    with pytest.raises(ReplicatorError) as err:
        make_sink(moto, dynamo_table, f"nobucket-{uuid.uuid4().hex[:8]}").check()
    assert err.value.kind is ErrorKind.TARGET_SETUP and "nobucket-" in str(err.value)

    down = DynamoDBSink("down", dynamo_table, REGION, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ReplicatorError) as err:
        down.check()
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE
    assert "127.0.0.1:9" in str(err.value)


def test_blob_cache_is_bounded_by_bytes() -> None:
    from connectors.sinks.dynamodb import ABSENT, _BlobCache

    cache = _BlobCache(10_000)
    for i in range(20):
        cache.put(("t", "", f"c{i}", "1"), ("msgpack", b"x" * 1000))
    assert cache.size <= 10_000 and len(cache) < 20
    assert cache.get(("t", "", "c19", "1")) == ("msgpack", b"x" * 1000)
    assert cache.get(("t", "", "c0", "1")) is None  # least recently used went first
    cache.put(("u", "", "c", "1"), ABSENT)
    assert cache.get(("u", "", "c", "1")) is ABSENT
    cache.put(("t", "", "huge", "1"), ("bytes", b"y" * 20_000))  # larger than the cache: not kept
    assert cache.get(("t", "", "huge", "1")) is None
    cache.evict_thread("t")
    assert len(cache) == 1 and cache.get(("u", "", "c", "1")) is ABSENT


def test_saver_view_and_replicator_items_are_invisible_to_the_saver(moto: Any, dynamo_table: str) -> None:
    conf, ckpt, new = hand_checkpoint("only-writes", "", {"a": [1]})
    sink = make_sink(moto, dynamo_table)
    # writes whose checkpoint is not there yet (PG can commit them first)
    sink.apply(writes_events(saver_config("only-writes", "", ckpt["id"]), [("a", [2])], "t1"))
    assert sink.thread_ids() == ["only-writes"]
    assert sink.saver().get_tuple(saver_config("only-writes")) is None
    sink.apply(put_events(conf, ckpt, {"step": 0}, new))
    got = sink.saver().get_tuple(saver_config("only-writes"))
    assert got is not None and got.pending_writes == [("t1", "a", [2])]
    pks = {i["PK"]["S"] for i in scan(moto, dynamo_table)}
    assert f"{WRITES_INDEX_PK_PREFIX}only-writes" in pks and f"{BLOB_PK_PREFIX}only-writes" in pks


@pytest.mark.integration
def test_equal_to_a_real_postgres_saver(moto: Any, dynamo_table: str, s3_bucket: str, pg_dsn: str) -> None:
    """The whole point: rows a real PostgresSaver wrote, turned into events (as a snapshot would,
    blobs first), read back through DynamoDBSaver equal what PostgresSaver.get_tuple/list return."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    threads = ["pg-ünï 🚀", "pg#2"]
    with psycopg.connect(pg_dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        pg_saver = PostgresSaver(conn)
        pg_saver.setup()
        for t in threads:
            app = build_graph(pg_saver)  # type: ignore[arg-type]
            config: Any = {"configurable": {"thread_id": t}}
            app.invoke({"messages": [HumanMessage(content="Hallo " + "z" * (400 * KiB))], "count": 0}, config)
            app.invoke(Command(resume="Jörg 🦊"), config)

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

        sink = make_sink(moto, dynamo_table, s3_bucket)
        for batch in batches(events, 4):
            sink.apply(batch)
        saver = sink.saver()
        compared = 0
        for t in threads:
            nss = {
                r["checkpoint_ns"]
                for r in conn.execute("SELECT checkpoint_ns FROM checkpoints WHERE thread_id = %s", (t,))
            }
            assert len(nss) >= 2
            for ns in sorted(nss):
                conf = saver_config(t, ns)
                want = list(pg_saver.list(conf))
                got = list(saver.list(conf))
                assert [x.config for x in got] == [x.config for x in want]
                for w, g in zip(want, got, strict=True):
                    assert_same_tuple(w, g, metadata=w.metadata)
                    compared += 1
                assert_same_tuple(pg_saver.get_tuple(conf), saver.get_tuple(conf), metadata=want[0].metadata)
        assert compared >= 12
        assert sorted(sink.thread_ids()) == sorted(threads)
        assert sink.missing_blobs == 0
        assert any(k.startswith("_replicator/blobs/") for k in bucket_contents(moto, s3_bucket))


class _Impatient(DynamoDBSink):
    botocore_max_attempts = 1
    max_error_attempts = 2
    backoff_max = 0.05


def test_apply_errors_are_classified_and_bounded(moto: Any, dynamo_table: str) -> None:
    import time

    from botocore.exceptions import ClientError

    from connectors.sinks.dynamodb import _transient

    conf, ckpt, new = hand_checkpoint("err", "", {"a": [1]})
    events = put_events(conf, ckpt, {"step": 0}, new)

    down = _Impatient("down", dynamo_table, REGION, endpoint_url="http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ReplicatorError) as err:
        down.apply(events)
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE and err.value.retry.value == "timed"
    assert time.monotonic() - started < 30

    ddb(moto).delete_table(TableName=dynamo_table)
    with pytest.raises(ReplicatorError) as err:
        make_sink(moto, dynamo_table).apply(events)
    assert err.value.kind is ErrorKind.TARGET_SETUP and "create-table" in str(err.value)

    def client_error(code: str, status: int) -> ClientError:
        response: Any = {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "BatchWriteItem")

    sink = make_sink(moto, dynamo_table)
    for code, status, kind in [
        ("ProvisionedThroughputExceededException", 400, ErrorKind.TARGET_THROTTLED),
        ("ThrottlingException", 400, ErrorKind.TARGET_THROTTLED),
        ("RequestLimitExceeded", 400, ErrorKind.TARGET_THROTTLED),
        ("InternalServerError", 500, ErrorKind.TARGET_UNREACHABLE),
    ]:
        exc = client_error(code, status)
        assert _transient(exc)
        assert sink._error(exc, "writing").kind is kind
    assert not _transient(client_error("ValidationException", 400))


def test_many_threads_per_batch(moto: Any, dynamo_table: str) -> None:
    """More than 100 blob lookups (several BatchGetItem requests) and many deletions in one batch."""
    first: list[DataChange] = []
    second: list[DataChange] = []
    expected = {}
    for n in range(30):
        t = f"bulk-{n}"
        values = {f"ch{i}": {"thread": n, "channel": i} for i in range(5)}
        c1_conf, c1, new1 = hand_checkpoint(t, "", values)
        c2_conf, c2, new2 = hand_checkpoint(t, "", {"n": n}, parent=c1, step=1)
        first += put_events(c1_conf, c1, {"step": 0}, new1)
        second += put_events(c2_conf, c2, {"step": 1}, new2)
        expected[t] = c2
    make_sink(moto, dynamo_table).apply(first)

    cold = make_sink(moto, dynamo_table)
    cold.apply(second)
    saver = cold.saver()
    for t, ckpt in expected.items():
        got = saver.get_tuple(saver_config(t))
        assert got is not None and got.checkpoint == ckpt
    assert cold.missing_blobs == 0

    cold.apply([ThreadDeletion(f"bulk-{n}", src()) for n in range(20)])
    assert cold.thread_ids() == sorted(f"bulk-{n}" for n in range(20, 30))
    remaining = {i["PK"]["S"] for i in scan(moto, dynamo_table)}
    assert not [
        pk for pk in remaining if any(pk.endswith(f"bulk-{n}") or f"bulk-{n}#" in pk for n in range(20))
    ]


# --------------------------------------------------------------------------- blob lookups


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


def test_inline_channels_are_not_looked_up_but_delta_snapshots_are(moto: Any, dynamo_table: str) -> None:
    """A cold sink looks up only the channels of a checkpoint that can have a blob: not the inline
    primitives, but DeltaChannel's snapshot behind its inline ``True`` marker (and a genuine ``True``,
    which cannot be told from it), channels with a blob and channels without any value."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    t = "lookups"
    snapshot = _DeltaSnapshot([HumanMessage(content="früh"), HumanMessage(content="später")])
    values = {
        "history": [HumanMessage(content="blob")],
        "delta": snapshot,
        "count": 1,
        "label": "ünï",
        "nothing": None,
        "off": False,
        "flag": True,
        "ratio": 0.5,
    }
    c1_conf, c1, new1 = hand_checkpoint(t, "", values)
    c1["channel_versions"]["consumed"] = f"{1:032}.{0.5:016}"  # a version without a value
    c2_conf, c2, new2 = hand_checkpoint(t, "", {"count": 2}, parent=c1, step=1)

    make_sink(moto, dynamo_table).apply(put_events(c1_conf, c1, {"step": 0}, new1))
    c2_events = put_events(c2_conf, c2, {"step": 1}, new2)
    assert isinstance(c2_events[-1], CheckpointChange) and c2_events[-1].checkpoint is not None
    assert c2_events[-1].checkpoint["channel_values"]["delta"] is True  # PostgresSaver's marker

    cold = make_sink(moto, dynamo_table)  # nothing cached: every lookup goes to the table
    cold.apply(c2_events)
    assert cold.blob_lookups == 4  # history, delta, flag, consumed
    got = cold.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == c2
    assert got.checkpoint["channel_values"]["delta"] == snapshot
    assert cold.missing_blobs == 0


@pytest.mark.parametrize("batch", ["transaction", "all"])
def test_demo_app_needs_fewer_blob_lookups(
    moto: Any, dynamo_table: str, batch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo app's conversations, applied one source transaction per batch (an applier at low
    load) or all in one batch: inline channels cost no BatchGetItem keys (all of them would miss),
    and the target reads back the same whether they are looked up or not."""
    from connectors.sinks import dynamodb
    from replicator.demo_app import build_graph as build_demo_graph
    from replicator.demo_app import run_conversation

    recorder = TransactionRecorder()
    graph = build_demo_graph(recorder)
    threads = [f"demo-{n}" for n in range(3)]
    for t in threads:
        run_conversation(graph, t, turns=2)
    units = recorder.transactions if batch == "transaction" else [recorder.events]

    def replicate(table: str) -> tuple[int, int]:
        sink = make_sink(moto, table)
        requests = 0
        batch_get = sink._batch_get

        def counting(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal requests
            requests += 1
            return batch_get(keys)

        monkeypatch.setattr(sink, "_batch_get", counting)
        for events in units:
            sink.apply(events)
        for t in threads:
            assert assert_thread_equal(recorder, sink.saver(), t) > 0
        assert sink.missing_blobs == 0
        sink.close()
        return sink.blob_lookups, requests

    after = replicate(dynamo_table)
    with monkeypatch.context() as m:
        m.setattr(dynamodb, "_may_have_blob", lambda inline, channel: True)  # every channel, as before
        create_dynamodb_table(moto.endpoint_url, f"{dynamo_table}-all")
        before = replicate(f"{dynamo_table}-all")
    # Measured (langgraph 1.2.24): 87 keys before, 36 after, in 30 requests either way per
    # transaction: every checkpoint still asks for its consumed triggers, which have no value.
    assert after[0] * 2 < before[0] and after[1] <= before[1]
