"""The publisher leaves the initial copy's lifecycle to the source: it only asks and requests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import ChangeEvent, Committed
from replicator.lifecycle import SnapshotState
from replicator.publisher import Publisher
from replicator.state import MemoryStateStore


class CopyingSource:
    """A source whose copy is in a given state; records the restarts it was asked for."""

    name = "copying"

    def __init__(self, state: SnapshotState) -> None:
        self.state = state
        self.restarts = 0

    def snapshot_state(self) -> SnapshotState:
        return self.state

    def restart_snapshot(self) -> None:
        self.restarts += 1

    def check(self) -> None: ...
    def stream(self) -> Iterator[ChangeEvent | Committed | None]:
        return iter(())

    def confirm(self, committed: Committed) -> None: ...
    def head(self) -> int:
        return 0

    def format_position(self, position: int) -> str:
        return str(position)

    def describe(self) -> dict[str, Any]:
        return {}

    def reset(self) -> list[str]:
        return []

    def saver(self) -> Any: ...
    def thread_ids(self) -> Iterable[str]:
        return ()

    def close(self) -> None: ...


def _publisher(source: CopyingSource) -> Publisher:
    state = MemoryStateStore()
    state.put("publisher", {"produced": {"0": 10}, "position": 5})
    return Publisher(source, KafkaConfig(bootstrap_servers="k:9092"), state)


def test_a_log_lost_mid_copy_asks_the_source_to_copy_again() -> None:
    source = CopyingSource(SnapshotState.RUNNING)
    publisher = _publisher(source)
    with pytest.raises(ReplicatorError, match="during the initial copy") as raised:
        publisher._check_log_reset(0, 2)  # acked at 2, the log had held 10 records
    assert raised.value.kind is ErrorKind.BROKER_UNREACHABLE
    assert source.restarts == 1


def test_a_log_lost_after_the_copy_is_refilled_from_the_source_log() -> None:
    source = CopyingSource(SnapshotState.DONE)
    publisher = _publisher(source)
    publisher._check_log_reset(0, 2)
    assert source.restarts == 0 and publisher.stats.log_resets == 1
    assert publisher.stats.confirmed_position == 5, "the saved position is where confirming resumes"
