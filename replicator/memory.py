"""``WriteThroughSaver``: live capture of an ``InMemorySaver``, inside the app that owns it.

    from langgraph.checkpoint.memory import InMemorySaver
    from replicator.memory import WriteThroughSaver

    with WriteThroughSaver.from_config("replicator.toml", inner=InMemorySaver()) as saver:
        graph = builder.compile(checkpointer=saver)

An in-memory saver has no log and dies with its process, so nothing outside the app can capture
it: the wrapper is the source (``[source] kind = "memory"``), and ``replicator run`` only applies.

- On entry it publishes everything the inner saver already holds, thread by thread (a deletion,
  then every checkpoint whole and every pending write with its stored idx).
- ``put``, ``put_writes`` and ``delete_thread`` (and their async forms) compute the events the
  call would store, publish them and wait for the broker's acknowledgement, and only then apply
  the call to the inner saver and return. An acknowledged write is in Kafka before the app sees
  it succeed; an unacknowledged one raises ``WriteNotAcknowledged`` (a ``ReplicatorError`` of kind
  ``broker_unreachable`` naming the broker) and leaves the inner saver as it was. The thread is
  then republished whole by its next call, in case the lost ack hid a delivered record.
- Reads and ``get_next_version`` are the inner saver's.

Order: one lock per thread holds a call from publish to apply, so a thread's events reach its
partition (key = thread id) in the order the saver applies them. Other threads run in parallel.
Positions: see ``replicator.memory_events.PositionClock``; status: see ``replicator.memory_status``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.memory import InMemorySaver

from connectors.sources.memory.config import MemorySourceConfig
from replicator import memory_events
from replicator.config import Config, KafkaConfig, load_config
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import DataChange, ThreadDeletion
from replicator.memory_publish import AckedPublisher, WriteNotAcknowledged
from replicator.threaded_writes import ThreadedAsyncWrites

__all__ = ["WriteNotAcknowledged", "WriteThroughSaver"]

log = structlog.get_logger("replicator.memory")

_INITIAL_BATCH_BYTES = 8 * 1024 * 1024  # the initial publish waits for acks this often


class _ThreadLocks:
    """One lock per thread id: a thread's calls are published and applied one at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, thread_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(thread_id, threading.Lock())


class WriteThroughSaver(ThreadedAsyncWrites):
    """An ``InMemorySaver`` whose writes are in Kafka before they are in memory (see module doc)."""

    def __init__(self, inner: InMemorySaver, publisher: AckedPublisher) -> None:
        if not isinstance(inner, InMemorySaver):
            raise ReplicatorError(
                ErrorKind.CONFIG,
                f"WriteThroughSaver wraps an InMemorySaver, got {type(inner).__name__}: other savers "
                "have their own source kinds (postgres, sqlite)",
            )
        super().__init__(serde=inner.serde)
        self.inner = inner
        self._publisher = publisher
        self._clock = memory_events.PositionClock()
        self._locks = _ThreadLocks()
        self._dirty: set[str] = set()  # threads whose last call failed after sending (see memory_publish)

    @classmethod
    @contextmanager
    def from_config(cls, config: str | Path | Config, *, inner: InMemorySaver) -> Iterator[WriteThroughSaver]:
        """Wrap ``inner`` for the broker and topic of a config whose ``[source] kind = "memory"``:
        publish what it holds now, then yield the saver; the producer closes when the block ends."""
        cfg = config if isinstance(config, Config) else load_config(config)
        if not isinstance(cfg.source, MemorySourceConfig):
            raise ReplicatorError(
                ErrorKind.CONFIG,
                f'WriteThroughSaver needs [source] kind = "memory", the config has {cfg.source.kind!r}',
            )
        saver = cls.open(inner, cfg.kafka, ack_timeout_s=cfg.source.ack_timeout_s)
        try:
            yield saver
        finally:
            saver.close()

    @classmethod
    def open(
        cls, inner: InMemorySaver, kafka: KafkaConfig, *, ack_timeout_s: float = 10.0
    ) -> WriteThroughSaver:
        """The saver, with ``inner``'s present contents published; ``close()`` it when done."""
        saver = cls(inner, AckedPublisher(kafka, ack_timeout_s))
        try:
            saver.publish_existing()
        except BaseException:
            saver.close()
            raise
        return saver

    def close(self) -> None:
        self._publisher.close()

    def __enter__(self) -> WriteThroughSaver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- publishing -------------------------------------------------------------------------------

    def publish_existing(self) -> int:
        """Publish every thread the inner saver holds now; the number of threads."""
        self._publisher.connect("the initial publish of the in-memory saver")
        threads = memory_events.thread_ids(self.inner)
        batch: list[DataChange] = []
        size = 0
        for thread in threads:
            stamp = memory_events.stamper(self._clock.next())
            for event in memory_events.thread_state(self.inner, thread, stamp):
                batch.append(event)
                size += len(getattr(event, "data", None) or b"")
            if size >= _INITIAL_BATCH_BYTES:
                self._publisher.publish(batch, "the initial publish of the in-memory saver")
                batch, size = [], 0
        self._publisher.publish(batch, "the initial publish of the in-memory saver")
        log.info("in-memory saver published", threads=len(threads))
        return len(threads)

    def _through(self, thread: Any, what: str, build: Any, apply: Any) -> Any:
        """Publish ``build(stamp)``'s events, then ``apply()``: both under the thread's lock."""
        thread_id = str(thread)
        with self._locks(thread_id):
            stamp = memory_events.stamper(self._clock.next())
            events: list[DataChange] = []
            repair = thread_id in self._dirty
            if repair:
                events.extend(memory_events.thread_state(self.inner, thread, stamp))
            events.extend(build(stamp))
            self._dirty.add(thread_id)  # until applied: a record may be in Kafka from here on
            self._publisher.publish(events, f"{what} of thread {thread_id!r}")
            result = apply()
            self._dirty.discard(thread_id)
            if repair:
                log.info("thread republished after an earlier failed call", thread_id=thread_id)
            return result

    # -- writes -----------------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        result: RunnableConfig = self._through(
            config["configurable"]["thread_id"],
            "a checkpoint",
            lambda stamp: memory_events.put_events(
                self.inner, config, checkpoint, metadata, new_versions, stamp
            ),
            lambda: self.inner.put(config, checkpoint, metadata, new_versions),
        )
        return result

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._through(
            config["configurable"]["thread_id"],
            "pending writes",
            lambda stamp: memory_events.put_writes_events(
                self.inner, config, writes, task_id, task_path, stamp
            ),
            lambda: self.inner.put_writes(config, writes, task_id, task_path),
        )

    def delete_thread(self, thread_id: str) -> None:
        self._through(
            thread_id,
            "a thread deletion",
            lambda stamp: [ThreadDeletion(str(thread_id), stamp("thread"))],
            lambda: self.inner.delete_thread(thread_id),
        )

    # -- reads: the inner saver's -----------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.inner.aget_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)
