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
        unit.futures.append((ack, False))
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
