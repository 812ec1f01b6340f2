"""Which source position an applied event proves: the base of ``status``' caught_up."""

from __future__ import annotations

from replicator.applier import applied_below
from replicator.events import Control, ControlKind, SourceMeta, ThreadDeletion

CONSISTENT_POINT = 1000


def test_the_initial_copy_proves_nothing_until_its_end_marker() -> None:
    copy = SourceMeta(position=CONSISTENT_POINT, snapshot=True)
    lsn = applied_below(0, Control(kind=ControlKind.SNAPSHOT_START, source=copy))
    assert lsn == 0
    lsn = applied_below(lsn, ThreadDeletion(thread_id="t", source=copy))  # a row of the copy
    assert lsn == 0, "a half-applied copy must not count as everything below the consistent point"
    assert applied_below(lsn, Control(kind=ControlKind.SNAPSHOT_END, source=copy)) == CONSISTENT_POINT


def test_a_change_proves_below_its_commit_and_a_heartbeat_its_whole_position() -> None:
    change = ThreadDeletion(thread_id="t", source=SourceMeta(position=2000))
    assert applied_below(CONSISTENT_POINT, change) == 1999  # its transaction may go on next batch
    beat = Control(kind=ControlKind.HEARTBEAT, source=SourceMeta(position=2500))
    assert applied_below(1999, beat) == 2500
    assert applied_below(3000, change) == 3000  # never backwards


def test_a_partition_taken_over_starts_from_what_its_last_owner_saved() -> None:
    """Two appliers of one group: a stale remembered position would move the stored one back."""
    from typing import Any, cast

    from replicator.applier import Applier, PartitionPosition
    from replicator.config import KafkaConfig
    from replicator.state import MemoryStateStore

    class Named:
        name = "dynamo"

    state = MemoryStateStore()
    state.put("applier:dynamo:1", {"offset": 10, "position": 100})
    applier = Applier(cast(Any, Named()), KafkaConfig(bootstrap_servers="k:9092"), state)
    state.put("applier:dynamo:1", {"offset": 40, "position": 400})  # another applier moved on
    state.put("applier:dynamo:2", {"offset": 5, "position": 50})
    applier.stats.partitions[3] = PartitionPosition(offset=9, position=900)
    state.put("applier:dynamo:3", {"offset": 8, "position": 800})  # older than what this one holds
    applier.refresh_positions([1, 2, 3])
    assert (applier.stats.partitions[1].offset, applier.stats.partitions[1].position) == (40, 400)
    assert applier.stats.partitions[2].position == 50
    assert applier.stats.partitions[3].position == 900


def test_records_are_polled_for_about_batch_events_events() -> None:
    """A record holds a thread's run of changes: the poll asks for records by the ratio seen."""
    from typing import Any, cast

    from replicator.applier import Applier
    from replicator.config import KafkaConfig
    from replicator.state import MemoryStateStore

    class Named:
        name = "dynamo"

    applier = Applier(cast(Any, Named()), KafkaConfig(bootstrap_servers="k:9092"), MemoryStateStore())
    assert applier._max_records() == 125, "before any batch: few records"
    for _ in range(12):
        applier._learn_events_per_record(records=80, events=2000)
    assert applier._max_records() == 80
    for _ in range(20):
        applier._learn_events_per_record(records=500, events=500)  # one event per record again
    assert applier._max_records() == 2000
    applier._learn_events_per_record(records=0, events=0)  # a poll of heartbeats only
    assert applier._max_records() == 2000
