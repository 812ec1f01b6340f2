"""The in-memory source as the daemon sees it: captured in the app, so there is nothing to read.

An ``InMemorySaver`` lives in the app's process and has no log, so its capture is the app's own
``replicator.memory.WriteThroughSaver``, which publishes each write and waits for Kafka before
applying it. ``captured_in_app`` tells the daemon to run no publisher stage for this kind; this
class answers the rest of the ``Source`` protocol truthfully for ``check``, ``status`` and
``reset``:

- Positions are wall-clock nanoseconds, increasing within each app process
  (``replicator.memory_events.PositionClock``); they order one thread's events (one process owns
  a thread) but say nothing across processes. ``format_position`` shows them as UTC times.
- ``head()`` is 0: no position bounds what other processes will publish, and no process keeps
  the newest one where every process can read it. The head is instead what the topic holds, its
  end offset per partition (``replicator.memory_status``), which ``status`` compares with each
  target's committed offsets: caught up means every record in the topic when the status was
  taken is applied.
- There is no initial copy to track: each app publishes its saver's contents before it yields
  the wrapper, so the snapshot state is always done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.sources.memory.config import MemorySourceConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import ChangeEvent, Committed
from replicator.lifecycle import SnapshotState

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from replicator.state import StateStore

_IN_APP = (
    "the in-memory source is captured inside the app (replicator.memory.WriteThroughSaver): "
    "its store lives in the app processes, out of the daemon's reach"
)


class MemorySource:
    name = "memory"
    captured_in_app = True  # the daemon runs appliers only: the app publishes

    def __init__(self, config: MemorySourceConfig, state: StateStore) -> None:
        self.config = config
        self.state = state

    def check(self) -> None:
        """Nothing to reach: the apps publish, and the broker is checked by the daemon."""

    def stream(self) -> Iterator[ChangeEvent | Committed | None]:
        raise ReplicatorError(ErrorKind.CONFIG, f"no publisher runs for this source: {_IN_APP}")

    def confirm(self, committed: Committed) -> None:
        """Each app confirms its own writes by waiting for Kafka's acknowledgement."""

    def head(self) -> int:
        """0: see the module doc; the head of this source is the topic's end offsets."""
        return 0

    @staticmethod
    def format_position(position: int) -> str:
        if position <= 0:
            return "-"
        seconds, nanos = divmod(position, 1_000_000_000)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"

    @staticmethod
    def next_version(current: Any, channel: None = None) -> str:
        """InMemorySaver's string versions, continuing any int or str version."""
        from langgraph.checkpoint.memory import InMemorySaver

        version: str = InMemorySaver.get_next_version(None, current, channel)  # type: ignore[arg-type]
        return version

    def describe(self) -> dict[str, Any]:
        return {"captured_in": "app", "head": "the topic's end offsets (log_end)"}

    def reset(self) -> list[str]:
        """Nothing is kept for the replicator outside the apps and the topic."""
        return []

    def teardown(self) -> list[str]:
        return []

    def snapshot_state(self) -> SnapshotState:
        return SnapshotState.DONE

    def restart_snapshot(self) -> None:
        """Nothing to restart here: a restarted app wraps its saver again and publishes it whole."""

    def saver(self) -> BaseCheckpointSaver[str]:
        raise ReplicatorError(ErrorKind.CONFIG, f"cannot open the source's saver: {_IN_APP}")

    def thread_ids(self) -> Iterable[str]:
        raise ReplicatorError(ErrorKind.CONFIG, f"cannot list the source's threads: {_IN_APP}")

    def close(self) -> None:
        pass
