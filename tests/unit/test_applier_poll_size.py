"""The applier sizes its polls by the data changes records hold, not by heartbeats."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition
from langgraph.checkpoint.memory import InMemorySaver

from connectors.registry import make_sink
from connectors.sinks.saver_config import SaverTargetConfig
from replicator import codec
from replicator.applier import Applier
from replicator.config import KafkaConfig
from replicator.events import BlobChange, BlobKey, Control, ControlKind, Op, SourceMeta
from replicator.state import MemoryStateStore
from tests.savers import bind


class _Consumer:
    """Where the applier commits offsets: the only consumer calls a batch makes."""

    def __init__(self) -> None:
        self.commits: list[dict[Any, Any]] = []

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append(offsets)

    def group_metadata(self) -> Any:
        return SimpleNamespace(generation_id=1)

    def committed(self, tp: Any) -> int | None:
        return None  # no commit yet: the batches' own offsets are checked


def _data_record(offset: int, thread: str, events: int) -> Any:
    meta = SourceMeta(position=100 + offset, commit_ts=1.0, xid=offset)
    values = [
        codec.encode_value(
            BlobChange(
                op=Op.UPSERT,
                key=BlobKey(thread, "", f"c{n}", f"{n:032}"),
                source=meta,
                type="msgpack",
                data=b"\x90",
            )
        )
        for n in range(events)
    ]
    record = codec.batch_record(thread.encode(), values)
    return SimpleNamespace(offset=offset, key=record.key, value=record.value, headers=record.headers)


def _heartbeat(offset: int) -> Any:
    [record] = codec.encode(
        Control(kind=ControlKind.HEARTBEAT, source=SourceMeta(position=10_000 + offset)), 1 << 20
    )
    return SimpleNamespace(offset=offset, key=record.key, value=record.value, headers=record.headers)


def test_a_run_of_heartbeats_does_not_make_the_next_poll_take_more_data() -> None:
    state = MemoryStateStore()
    sink = make_sink(SaverTargetConfig(kind="saver", name="mem", factory=bind(InMemorySaver)), state)
    applier = Applier(sink, KafkaConfig(bootstrap_servers="k:9092"), state, batch_events=2000)
    applier.consumer = _Consumer()  # type: ignore[assignment]
    data, tail = TopicPartition("t", 0), TopicPartition("t", 1)

    applier._apply({data: [_data_record(n, f"t{n}", 50) for n in range(40)]})
    steady = applier._max_records()
    assert steady < 2000 / 30, "about batch_events / 50 records of 50 changes each"

    # One partition reached its tail of heartbeats while another still holds data.
    applier._apply(
        {tail: [_heartbeat(n) for n in range(500)], data: [_data_record(40 + n, "u", 50) for n in range(2)]}
    )
    assert applier._max_records() <= steady, "heartbeats are not data: the poll does not grow"
    applier._apply({tail: [_heartbeat(500 + n) for n in range(500)]})
    assert applier._max_records() <= steady
    assert len(applier.consumer.commits) == 3  # type: ignore[attr-defined]
    sink.close()
