"""The publisher confirms a source unit only once Kafka acknowledged every record of it and of
every unit before it, without waiting for acks while the source has more to read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from replicator.config import KafkaConfig
from replicator.errors import ReplicatorError
from replicator.events import Committed
from replicator.publisher import Publisher, _Unit
from replicator.state import MemoryStateStore
from tests.unit.test_publisher_snapshot import CopyingSource, SnapshotState


@dataclass
class Meta:
    partition: int
    offset: int


class Ack:
    """A produce future as kafka-python's: done once the broker answered."""

    def __init__(self, offset: int) -> None:
        self.is_done = False
        self.value = Meta(0, offset)
        self.exception: Exception | None = None

    def failed(self) -> bool:
        return self.exception is not None


class Producer:
    def __init__(self) -> None:
        self.acks: list[Ack] = []

    def flush(self, timeout: float | None = None) -> None:
        for ack in self.acks:
            ack.is_done = True


class ConfirmingSource(CopyingSource):
    def __init__(self) -> None:
        super().__init__(SnapshotState.DONE)
        self.confirmed: list[tuple[int, Any]] = []

    def confirm(self, committed: Committed) -> None:
        self.confirmed.append((committed.position, committed.token))


def _unit(producer: Producer, position: int, records: int, token: Any = None) -> _Unit:
    unit = _Unit(commit=Committed(position=position, commit_ts=0.0, token=token))
    for _ in range(records):
        ack = Ack(len(producer.acks))
        producer.acks.append(ack)
        unit.futures.append((ack, 1))
        unit.bytes += 10
    return unit


def _publisher(units: list[_Unit]) -> tuple[Publisher, ConfirmingSource]:
    source = ConfirmingSource()
    publisher = Publisher(source, KafkaConfig(bootstrap_servers="k:9092"), MemoryStateStore())
    publisher._closed.extend(units)
    publisher._unacked_bytes = sum(u.bytes for u in units)
    return publisher, source


def test_units_are_confirmed_in_order_once_acknowledged_without_waiting() -> None:
    producer = Producer()
    first, second, third = _unit(producer, 10, 2), _unit(producer, 20, 1), _unit(producer, 30, 3)
    publisher, source = _publisher([first, second, third])

    publisher._settle(producer, wait=False)
    assert source.confirmed == [], "nothing acknowledged yet"

    for ack in producer.acks[2:]:  # the later units are acknowledged, the first is not
        ack.is_done = True
    publisher._settle(producer, wait=False)
    assert source.confirmed == [], "a later unit is never confirmed before an earlier one"

    producer.acks[0].is_done = producer.acks[1].is_done = True
    publisher._settle(producer, wait=False)
    assert source.confirmed == [(30, None)], "the latest whole unit, once"
    assert publisher.unacknowledged_bytes == 0
    assert publisher.stats.produced == {0: 6}


def test_waiting_acknowledges_everything_and_each_resume_token_is_confirmed_itself() -> None:
    producer = Producer()
    chunks = [_unit(producer, 5, 1, token={"chunk": 1}), _unit(producer, 6, 1, token={"chunk": 2})]
    publisher, source = _publisher([*chunks, _unit(producer, 7, 1), _unit(producer, 8, 1)])
    publisher._open = _unit(producer, 0, 2)  # a unit still being read: acked, not confirmed
    publisher._open.commit = None
    publisher._unacked_bytes += publisher._open.bytes

    publisher._settle(producer, wait=True)
    assert source.confirmed == [(5, {"chunk": 1}), (6, {"chunk": 2}), (8, None)]
    assert publisher.unacknowledged_bytes == 0 and not publisher._open.futures


def test_a_refused_record_stops_the_publisher_before_confirming() -> None:
    producer = Producer()
    unit = _unit(producer, 10, 1)
    producer.acks[0].is_done = True
    producer.acks[0].exception = RuntimeError("record too large")
    publisher, source = _publisher([unit])
    with pytest.raises(ReplicatorError, match="Kafka refused a record"):
        publisher._settle(producer, wait=False)
    assert source.confirmed == []


class SendingProducer(Producer):
    """Records what was sent, in order; acks arrive on flush."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes | None, list[Any], int | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any, partition: int | None) -> Ack:
        from replicator.codec import decode_record

        self.sent.append((key, decode_record(value, headers), partition))
        ack = Ack(len(self.acks))
        self.acks.append(ack)
        return ack


def _change(thread: str, n: int) -> Any:
    from replicator.events import BlobChange, BlobKey, Op, SourceMeta

    return BlobChange(
        op=Op.UPSERT,
        key=BlobKey(thread, "", "messages", str(n)),
        source=SourceMeta(position=n),
        type="msgpack",
        data=b"x" * n,
    )


def test_a_threads_consecutive_changes_travel_as_one_record_and_no_unit_is_confirmed_before_it() -> None:
    producer = SendingProducer()
    publisher, source = _publisher([])
    a1, b1, a2 = _change("a", 1), _change("b", 2), _change("a", 3)
    publisher._add(producer, a1)
    publisher._add(producer, b1)
    publisher._closed.append(publisher._open)  # the first unit ends with a1, b1
    publisher._open.commit = Committed(position=10, commit_ts=0.0)
    publisher._open = _Unit()
    publisher._add(producer, a2)
    assert producer.sent == [], "events wait in their thread's batch"

    publisher._settle(producer, wait=False)
    assert producer.sent == [(b"a", [a1, a2], None), (b"b", [b1], None)]
    assert source.confirmed == [], "the batches' records are not acknowledged yet"

    producer.flush()
    publisher._settle(producer, wait=False)
    assert source.confirmed == [(10, None)]
    batched = {p: log.items() for p, log in publisher.stats.batch_offsets.items()}
    assert batched == {0: [(0, 1)]}, "status counts the second event of record 0"


def test_control_events_follow_every_change_read_before_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from replicator import publisher as publisher_module
    from replicator.events import Control, ControlKind, SourceMeta

    producer = SendingProducer()
    producer.partitions_for = lambda topic: {0, 1}  # type: ignore[attr-defined]
    producer.close = lambda timeout=None: None  # type: ignore[attr-defined]
    monkeypatch.setattr(publisher_module.kafka, "ensure_topic", lambda config: None)
    monkeypatch.setattr(publisher_module.kafka, "producer", lambda config: producer)
    heartbeat = Control(kind=ControlKind.HEARTBEAT, source=SourceMeta(position=20))
    a1, a2, b1 = _change("a", 1), _change("a", 2), _change("b", 3)
    stop = threading.Event()

    class Scripted(ConfirmingSource):
        def stream(self) -> Any:
            yield from (a1, Committed(position=10, commit_ts=0.0), a2, heartbeat, b1)
            yield Committed(position=30, commit_ts=0.0)
            stop.set()
            yield None

    source = Scripted()
    config = KafkaConfig(bootstrap_servers="k:9092")
    # No settle by time: only the heartbeat, the idle source and the stop send the batches.
    Publisher(source, config, MemoryStateStore(), flush_interval_s=3600, record_linger_s=3600).run(stop)
    assert producer.sent == [
        (b"a", [a1, a2], None),
        (None, [heartbeat], 0),
        (None, [heartbeat], 1),
        (b"b", [b1], None),
    ]
    assert source.confirmed[-1] == (30, None)


def test_an_event_too_large_for_a_batch_follows_its_threads_queued_changes() -> None:
    producer = SendingProducer()
    publisher, _ = _publisher([])
    small, large = _change("a", 1), _change("a", 300_000)
    publisher._add(producer, small)
    publisher._add(producer, large)
    assert producer.sent == [(b"a", [small], None), (b"a", [large], None)]
