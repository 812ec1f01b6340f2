"""The narrow interfaces between the pipeline and the stores it moves data between.

A source yields change events and tells the pipeline where it may confirm; a sink applies a
batch of events and returns only once they are durable. Neither knows about Kafka, and the
pipeline knows none of their row layouts.

A source position is an opaque, ordered integer (a Postgres LSN, a changelog sequence): the
pipeline compares and stores positions but only the source reads meaning into them, formats
them for people, reports its own head and health, and resets itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from replicator.events import ChangeEvent, Committed, DataChange
from replicator.lifecycle import SnapshotState

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from replicator.migration import MigrationRecord


class SaverView(Protocol):
    """Read access to a store through its own official LangGraph saver (for verify)."""

    def saver(self) -> BaseCheckpointSaver[str]:
        """The store's official saver, opened on the same store the connector uses."""
        ...

    def thread_ids(self) -> Iterable[str]:
        """Every thread that has at least one checkpoint or pending write in the store."""
        ...


class Source(SaverView, Protocol):
    name: str

    def check(self) -> None:
        """Raise ReplicatorError naming what is wrong (unreachable, not configured, no tables)."""
        ...

    def stream(self) -> Iterator[ChangeEvent | Committed | None]:
        """Snapshot first when needed, then live changes; never ends on its own.

        After the last event of each unit the source can resume from (a transaction, a
        snapshot chunk) it yields ``Committed``. It yields ``None`` when it has nothing more
        buffered right now (the moment to flush), and heartbeats while idle.
        """
        ...

    def confirm(self, committed: Committed) -> None:
        """Everything up to ``committed`` is durable downstream: the source may forget it."""
        ...

    def head(self) -> int:
        """The source's current position: what it has durably committed so far."""
        ...

    def format_position(self, position: int) -> str:
        """A position as people read it in logs and status (Postgres: ``0/1A2B3C``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The source's own health for ``status`` (Postgres: its slot), JSON-compatible.

        ``retained_over_threshold`` (when true) says the source keeps more of its log for the
        replicator than configured; ``lag_bytes`` is the distance from head to confirmed.
        """
        ...

    def reset(self) -> list[str]:
        """Drop what the source keeps for the replicator (a slot); what was dropped, for people."""
        ...

    def teardown(self) -> list[str]:
        """After the migration (``finish --drop``): ``reset``, and everything else the replicator
        added to the source (a publication); what was dropped, or what the source's owner must
        drop when this role may not."""
        ...

    def snapshot_state(self) -> SnapshotState:
        """Where the initial copy stands, as the source persisted it."""
        ...

    def restart_snapshot(self) -> None:
        """Make the next run copy everything again (the broker lost the copy in flight)."""
        ...

    def close(self) -> None: ...


class Sink(SaverView, Protocol):
    name: str

    def check(self) -> None:
        """Raise ReplicatorError naming what is wrong (unreachable, table missing)."""
        ...

    def apply(self, events: Sequence[DataChange]) -> None:
        """Apply events in order; return only when they are durable in the store.

        Must be idempotent: applying any suffix of a stream again leaves the store as it was.
        """
        ...

    def drop_own_state(self) -> list[str]:
        """Remove what only the replicator reads from the target, after the migration; what was
        removed, one line each (``connectors.sinks.layout.Layout.drop_own_state``)."""
        ...

    def close(self) -> None: ...


class ThreadSource(Protocol):
    """A store read one whole thread at a time, for ``replicator copy`` (no log, no Kafka).

    ``thread_events`` is one consistent read of the thread: a ``ThreadDeletion`` first (the
    target's copy of the thread is replaced, never merged), then every checkpoint (with its
    blobs, for a split-form store) and pending write, in the order a sink applies them.
    """

    def threads(self) -> list[str]:
        """Every thread id the store holds, sorted."""
        ...

    def thread_events(self, thread_id: str) -> list[DataChange]: ...

    def close(self) -> None: ...


class Fence(Protocol):
    """What a switch may do while it holds a source's exclusive fence."""

    record: MigrationRecord
    fenced_at: float  # time.monotonic() when the fence was taken: the pause starts here

    def mark(self) -> int:
        """A position at or past every write the source accepted before the fence, also sent
        through the change stream (so the drain sees it without waiting for a heartbeat)."""
        ...

    def commit(self, record: MigrationRecord) -> None:
        """Store ``record``; every app follows it once the fence is released."""
        ...


class Switchboard(Protocol):
    """A source's migration record and fences, where every app instance and command reach them.

    ``app_write`` is the shared side (each app write holds it for its own transaction, with the
    source saver's statements inside it); ``fence`` is the exclusive side a switch holds while
    it drains. See connectors/sources/postgres/switchboard.py for the Postgres one.
    """

    def record(self) -> MigrationRecord: ...

    def saver(self) -> BaseCheckpointSaver[str]:
        """The source's official saver, whose writes join ``app_write``'s transaction."""
        ...

    def app_write(self) -> AbstractContextManager[MigrationRecord]: ...

    def hold_thread(self, thread_id: str) -> None:
        """Inside ``app_write``: keep ``thread_copy`` of this thread out until the write ends
        (dual write: a back-fill never copies a thread half-way through a write)."""
        ...

    def thread_copy(self, thread_id: str) -> AbstractContextManager[tuple[MigrationRecord, list[DataChange]]]:
        """The record and one thread's whole state as events (a ``ThreadDeletion`` first, so
        applying them makes a target's thread exactly the source's), with the thread's writes
        and any switch held off until the block ends: apply the events inside it."""
        ...

    def threads(self) -> list[str]:
        """Every thread id the source holds."""
        ...

    def held(self, thread_id: str, epoch: int) -> int | None:
        """The source position a thread held on the source after a cutover waits for on the
        target, or None when it is not held in ``epoch`` (see replicator/routing.py)."""
        ...

    def hold(self, thread_id: str, epoch: int) -> None:
        """Inside ``app_write``: mark the thread held on the source (position set by ``held_at``)."""
        ...

    def held_at(self, thread_id: str, epoch: int) -> None:
        """After the held write committed: record a source position at or past it."""
        ...

    def holds(self, epoch: int) -> dict[str, int]:
        """Every thread held in ``epoch`` with its position."""
        ...

    def clear_holds(self, before_epoch: int) -> None: ...

    def fence(self, timeout: float) -> AbstractContextManager[Fence]:
        """Raises ``replicator.migration.Refused`` when in-flight writes outlast ``timeout``."""
        ...

    def changed(self, since_id: str) -> set[tuple[str, str]]:
        """(thread, namespace) pairs with a checkpoint or write whose id sorts after ``since_id``."""
        ...

    def namespaces(self, threads: list[str]) -> list[tuple[str, str]]:
        """(thread, namespace) pairs of ``threads``; ``(thread, "")`` for a thread with none."""
        ...

    def drop(self) -> list[str]: ...

    def close(self) -> None: ...
