"""The applier stops when Kafka skips past records the target never applied (retention).

Kafka moves a consumer whose next offset was deleted to the earliest offset left
(``auto_offset_reset``); applying from there would lose changes silently. The broker here cannot
delete records (``delete_records`` drops its connection, no retention runs), so what Kafka then
hands over is played to the applier directly: records after a gap, with a real sink.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from langgraph.checkpoint.memory import InMemorySaver

from connectors.registry import make_sink
from connectors.sinks.saver_config import SaverTargetConfig
from replicator.applier import Applier
from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.state import MemoryStateStore
from tests.savers import bind
from tests.unit.test_applier_poll_size import _data_record

TP = TopicPartition("topic-a", 3)


class _Consumer:
    """The group's committed offsets and the commits a batch makes."""

    def __init__(self, committed: int | Exception | None) -> None:
        self.committed_offset = committed
        self.commits: list[dict[Any, Any]] = []

    def committed(self, tp: TopicPartition) -> int | None:
        if isinstance(self.committed_offset, Exception):
            raise self.committed_offset
        return self.committed_offset

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append(offsets)

    def group_metadata(self) -> Any:
        return SimpleNamespace(generation_id=1, member_id="m", state="Stable")


def _applier(committed: int | Exception | None) -> Applier:
    state = MemoryStateStore()
    sink = make_sink(SaverTargetConfig(kind="saver", name="mem", factory=bind(InMemorySaver)), state)
    applier = Applier(sink, KafkaConfig(bootstrap_servers="k:9092", topic="topic-a"), state)
    applier.consumer = _Consumer(committed)  # type: ignore[assignment]
    return applier


def _batch(first: int, count: int, thread: str) -> dict[TopicPartition, list[Any]]:
    return {TP: [_data_record(first + n, f"{thread}{n}", 2) for n in range(count)]}


def _applied(applier: Applier) -> tuple[int, int]:
    """Events applied, and the partition's committed position (next offset)."""
    position = applier.stats.partitions.get(TP.partition)
    return applier.stats.events, position.offset if position else -1


def test_records_after_a_gap_are_refused_and_nothing_of_them_applied() -> None:
    applier = _applier(committed=10)
    applier._apply(_batch(10, 3, "a"))  # 10-12: from the committed offset on
    applier._apply(_batch(13, 2, "b"))  # 13-14: contiguous
    assert _applied(applier) == (10, 15)
    with pytest.raises(ReplicatorError) as err:
        applier._apply(_batch(20, 2, "c"))  # 15-19 deleted before this target applied them
    assert err.value.kind is ErrorKind.SOURCE_LOST
    message = str(err.value)
    assert "offsets 15-19 of partition 3" in message and "'mem'" in message and "retention" in message
    assert "replicator reset" in message
    assert _applied(applier) == (10, 15)  # nothing after the gap
    assert len(applier.consumer.commits) == 2  # type: ignore[attr-defined]


def test_after_a_restart_the_committed_offset_is_the_reference() -> None:
    applier = _applier(committed=10)
    with pytest.raises(ReplicatorError, match="offsets 10-11 of partition 3"):
        applier._apply(_batch(12, 1, "x"))  # reset to the earliest offset left, past 10 and 11
    assert _applied(applier) == (0, -1)

    replayed = _applier(committed=10)
    replayed._apply(_batch(7, 5, "r"))  # a replay from before the commit is not a gap
    assert _applied(replayed) == (10, 12)


def test_a_new_assignment_reads_the_committed_offset_again() -> None:
    applier = _applier(committed=None)  # no commit yet: the first batch sets the reference
    applier._apply(_batch(0, 2, "a"))
    applier._apply(_batch(2, 1, "b"))
    applier.consumer.committed_offset = 40  # type: ignore[attr-defined]
    applier.assignment_changed([3])
    applier._take_assignment()  # the partition restarts from the group's committed offset
    with pytest.raises(ReplicatorError, match="offsets 40-49"):
        applier._apply(_batch(50, 1, "c"))


def test_an_unreadable_committed_offset_skips_the_check_once() -> None:
    applier = _applier(committed=KafkaTimeoutError("coordinator not available"))
    applier._apply(_batch(30, 2, "a"))  # unknown reference: applied, and now the reference
    with pytest.raises(ReplicatorError, match="offsets 32-32"):
        applier._apply(_batch(33, 1, "b"))
    assert _applied(applier) == (4, 32)
