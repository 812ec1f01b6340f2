"""Live capture of an InMemorySaver through ``WriteThroughSaver``, on the real broker, moto and a
real ``replicator run`` process with ``[source] kind = "memory"`` (appliers only).

The app is this test process: it fills an InMemorySaver, wraps it (which publishes what it holds),
then runs real graphs (subgraph, interrupt and resume, unicode, a value far over the broker's
record limit, deletes) through the wrapper. The daemon applies the topic to DynamoDB; the target,
read through its own saver, must end equal to the in-memory saver, and ``replicator status`` must
say so truthfully (the topic's end offsets against the applied offsets). Waiting is bounded
polling of real state, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import copy
import json
import operator
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from kafka import KafkaConsumer, TopicPartition
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from replicator.codec import Reassembler
from replicator.config import load_config
from replicator.embedded import EmbeddedBroker
from replicator.events import DataChange, ThreadDeletion
from replicator.memory import WriteNotAcknowledged, WriteThroughSaver
from replicator.memory_events import stamper, thread_ids, thread_state
from replicator.state import open_state_store
from replicator.status import collect, source_head
from replicator.target_saver import target_saver
from tests.contract.recording import assert_thread_equal, build_graph, run_graph
from tests.integration.harness import OTHER_KINDS, DaemonProcess, cli, other_kind_targets, wait_caught_up

BIG = ("Grüße 🦊 " * 70_000)[:600_000]  # ~700 KB of UTF-8: split in Kafka, S3 in DynamoDB


def memory_config(
    path: Path,
    *,
    bootstrap: str,
    topic: str,
    endpoint: str = "http://127.0.0.1:9",
    table: str = "unused",
    bucket: str = "unused",
    ack_timeout_s: float = 10.0,
    kafka_extra: str = "",
    targets: str | None = None,
) -> Path:
    suffix = uuid.uuid4().hex[:8]
    targets = (
        targets
        or f"""[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "{table}"
region = "us-east-1"
endpoint_url = "{endpoint}"
s3_bucket = "{bucket}"
"""
    )
    path.write_text(
        f"""
[source]
kind = "memory"
ack_timeout_s = {ack_timeout_s}

[state]
kind = "sqlite"
path = "{path.parent / "state.db"}"

[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
partitions = 4
group_prefix = "g-{suffix}"
session_timeout_ms = 6000
max_message_bytes = 65536
{kafka_extra}

{targets}
[log]
format = "json"
level = "info"
""",
        encoding="utf-8",
    )
    return path


class BigState(TypedDict, total=False):
    notes: Annotated[list[str], operator.add]
    blob: str


def big_graph(checkpointer: Any) -> Any:
    """One node writing a value far over the broker's record limit."""
    g = StateGraph(BigState)
    g.add_node("write", lambda state: {"blob": BIG, "notes": ["big ✓"]})
    g.add_edge(START, "write")
    g.add_edge("write", END)
    return g.compile(checkpointer=checkpointer)


def saver_contents(saver: InMemorySaver) -> Any:
    return copy.deepcopy((dict(saver.storage), dict(saver.writes), dict(saver.blobs)))


def topic_events(bootstrap: str, topic: str) -> list[DataChange]:
    """Every event in the topic, reassembled, partition by partition, read to the high watermark."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        events: list[Any] = []
        reassemblers = {tp: Reassembler() for tp in tps}
        done: set[TopicPartition] = set()
        while len(done) < len(tps):
            for tp, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    events.extend(reassemblers[tp].feed(record.offset, record.value, record.headers))
            for tp in tps:
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    done.add(tp)
        return events
    finally:
        consumer.close()


def fold(events: list[DataChange]) -> dict[Any, Any]:
    """What applying ``events`` in order leaves: key -> last upsert, a thread deletion clears."""
    state: dict[Any, Any] = {}
    for event in events:
        if isinstance(event, ThreadDeletion):
            state = {k: v for k, v in state.items() if k[1] != event.thread_id}
        else:
            state[(type(event).__name__, event.key.thread_id, event.key)] = event
    return {k: (v.type, v.data) for k, v in state.items()}


def expected_fold(saver: InMemorySaver) -> dict[Any, Any]:
    events: list[DataChange] = []
    for thread in thread_ids(saver):
        events.extend(thread_state(saver, thread, stamper(1)))
    return fold(events)


def test_graphs_through_the_wrapper_reach_dynamodb(
    tmp_path: Path, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    path = memory_config(
        tmp_path / "replicator.toml",
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        endpoint=moto.endpoint_url,
        table=dynamo_table,
        bucket=s3_bucket,
    )
    config = load_config(path)
    inner = InMemorySaver()
    run_graph(inner, "before-1")  # held before wrapping: published by from_config
    run_graph(inner, "before-2", first_message="zweiter Faden ✓")
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()  # joins its group while the app works
    try:
        with WriteThroughSaver.from_config(path, inner=inner) as saver:
            run_graph(saver, "live-1")
            run_graph(saver, "live-2", first_message="ελληνικά 🙂")
            big = big_graph(saver)
            big.invoke({"notes": ["start"]}, {"configurable": {"thread_id": "big"}})
            graph = build_graph(saver)
            resumed = {"configurable": {"thread_id": "before-1"}}  # a pre-existing thread goes on
            graph.invoke({"messages": [HumanMessage(content="noch einmal")], "count": 5}, resumed)
            graph.invoke(Command(resume="Ada 🧮"), resumed)
            saver.delete_thread("before-2")
            saver.delete_thread("live-2")
        assert sorted(thread_ids(inner)) == ["before-1", "big", "live-1"]

        report = wait_caught_up(config, daemon, timeout=60)
        assert report["source"]["slot"]["log_end"], report
        with target_saver(path) as target:
            for thread in ("before-1", "big", "live-1"):
                assert assert_thread_equal(inner, target, thread) > 0
            latest = target.get_tuple({"configurable": {"thread_id": "big", "checkpoint_ns": ""}})
            assert latest is not None and latest.checkpoint["channel_values"]["blob"] == BIG
            for gone in ("before-2", "live-2"):
                assert target.get_tuple({"configurable": {"thread_id": gone, "checkpoint_ns": ""}}) is None
                assert list(target.list({"configurable": {"thread_id": gone}})) == []

        # The operator's view agrees: every partition applied up to the topic's end.
        done = cli("status", "--config", str(path), "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["caught_up"] is True, status
        assert status["source"]["kind"] == "memory"
        partitions = status["targets"]["dynamo"]["partitions"]
        log_end = status["source"]["slot"]["log_end"]
        assert sum(int(o) for o in log_end.values()) > 0
        for p, view in partitions.items():
            assert view["produced"] == log_end[p] == view["applied"]
            assert view["lag_events"] == 0
        # Positions are times here; a partition no thread hashed to has applied none ("-").
        assert any(view["applied_lsn"].endswith("Z") for view in partitions.values()), partitions
        assert "publisher" not in daemon.output()  # appliers only
        assert daemon.alive()
    finally:
        daemon.stop()


def test_graphs_through_the_wrapper_reach_postgres_sqlite_and_any_saver_at_once(
    tmp_path: Path, broker: Any, kafka_topic: str, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live in-memory source into the other target kinds, all fed by one daemon: each ends
    equal to the in-memory saver through its own saver, a deleted thread gone from each."""
    from tests.savers import SQLITE_PATH_ENV

    monkeypatch.setenv(SQLITE_PATH_ENV, str(tmp_path / "generic.sqlite"))  # the daemon inherits it
    database = f"tgt_{uuid.uuid4().hex[:10]}"
    targets = other_kind_targets(pg.create_database(database), tmp_path)
    path = memory_config(
        tmp_path / "replicator.toml", bootstrap=broker.bootstrap_servers, topic=kafka_topic, targets=targets
    )
    config = load_config(path)
    inner = InMemorySaver()
    run_graph(inner, "before-1")  # held before wrapping: published by from_config
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    try:
        with WriteThroughSaver.from_config(path, inner=inner) as saver:
            run_graph(saver, "live-1", first_message="ελληνικά 🙂")
            big_graph(saver).invoke({"notes": ["start"]}, {"configurable": {"thread_id": "big"}})
            run_graph(saver, "gone")
            saver.delete_thread("gone")
        wait_caught_up(config, daemon, timeout=60)
        for name in OTHER_KINDS:
            with target_saver(path, name) as target:
                for thread in ("before-1", "big", "live-1"):
                    assert assert_thread_equal(inner, target, thread) > 0, (name, thread)
                assert list(target.list({"configurable": {"thread_id": "gone"}})) == [], name
        assert daemon.alive()
    finally:
        daemon.stop()
        pg.drop_database(database)


def test_status_is_behind_until_applied(tmp_path: Path, broker: Any, kafka_topic: str) -> None:
    """With nothing applied yet, status counts what the topic holds as lag (no daemon runs)."""
    path = memory_config(tmp_path / "replicator.toml", bootstrap=broker.bootstrap_servers, topic=kafka_topic)
    config = load_config(path)
    inner = InMemorySaver()
    run_graph(inner, "t-1")
    with WriteThroughSaver.from_config(path, inner=inner):
        pass
    state = open_state_store(config)
    try:
        head, details = source_head(config)
        report = collect(config, state, head, details)
    finally:
        state.close()
    lag = report["targets"]["dynamo"]["lag"]["events"]
    assert not report["caught_up"]
    assert lag == sum(report["source"]["slot"]["log_end"].values()) > 0
    assert lag == len(topic_events(broker.bootstrap_servers, kafka_topic))  # no event was split here


def test_unreachable_broker_fails_the_call_and_leaves_the_saver_unchanged(
    tmp_path: Path, kafka_topic: str
) -> None:
    own = EmbeddedBroker()
    own.start()
    try:
        path = memory_config(
            tmp_path / "replicator.toml",
            bootstrap=own.bootstrap_servers,
            topic=kafka_topic,
            ack_timeout_s=1.5,
            kafka_extra="bootstrap_timeout_ms = 1500\nrequest_timeout_ms = 1500",
        )
        inner = InMemorySaver()
        run_graph(inner, "kept")
        with WriteThroughSaver.from_config(path, inner=inner) as saver:
            before = saver_contents(inner)
            latest = inner.get_tuple({"configurable": {"thread_id": "kept", "checkpoint_ns": ""}})
            assert latest is not None
            own.kill()  # a crash: connections refused from now on
            with pytest.raises(WriteNotAcknowledged) as failed:
                saver.put(latest.config, latest.checkpoint, {"source": "update", "step": 99}, {})
            assert own.bootstrap_servers in str(failed.value)
            assert "NOT changed" in str(failed.value)
            assert failed.value.kind.value == "broker_unreachable"
            with pytest.raises(WriteNotAcknowledged):
                saver.delete_thread("kept")
            assert saver_contents(inner) == before

            # Back (empty: memory storage): the thread's next call republishes it whole first.
            own.start()
            saver.put_writes(latest.config, [("notes", "after the outage")], "task-1")
            events = topic_events(own.bootstrap_servers, kafka_topic)
            assert isinstance(events[0], ThreadDeletion) and events[0].thread_id == "kept"
            assert fold(events) == expected_fold(inner)
    finally:
        own.stop()

    unreachable = memory_config(
        tmp_path / "nowhere.toml",
        bootstrap="127.0.0.1:9",
        topic=kafka_topic,
        ack_timeout_s=1.0,
        kafka_extra="bootstrap_timeout_ms = 1000\nrequest_timeout_ms = 1000",
    )
    nothing = InMemorySaver()
    with (
        pytest.raises(WriteNotAcknowledged) as refused,
        WriteThroughSaver.from_config(unreachable, inner=nothing),
    ):
        pass
    assert "127.0.0.1:9" in str(refused.value)


def test_async_graph_through_the_wrapper(tmp_path: Path, broker: Any, kafka_topic: str) -> None:
    """ainvoke, aput, aput_writes, adelete_thread: the topic ends holding what the saver holds."""
    path = memory_config(tmp_path / "replicator.toml", bootstrap=broker.bootstrap_servers, topic=kafka_topic)
    inner = InMemorySaver()

    async def converse(saver: WriteThroughSaver) -> None:
        graph = build_graph(saver)
        for thread in ("a-1", "a-2"):
            config = {"configurable": {"thread_id": thread}}
            await graph.ainvoke({"messages": [HumanMessage(content="asynchron ⏱")], "count": 0}, config)
            await graph.ainvoke(Command(resume="Grace"), config)
        await saver.adelete_thread("a-2")
        got = await saver.aget_tuple({"configurable": {"thread_id": "a-1", "checkpoint_ns": ""}})
        assert got is not None
        assert [t.config async for t in saver.alist({"configurable": {"thread_id": "a-1"}})]

    with WriteThroughSaver.from_config(path, inner=inner) as saver:
        asyncio.run(converse(saver))
    assert thread_ids(inner) == ["a-1"]
    assert fold(topic_events(broker.bootstrap_servers, kafka_topic)) == expected_fold(inner)
