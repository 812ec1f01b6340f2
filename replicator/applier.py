"""Kafka to one sink. A consumer offset is committed only after the sink made the batch
durable (invariant 2); a crash replays the batch, and the idempotent sink makes the replay
invisible (invariant 3).

Each target has its own consumer group, so targets advance independently. After each commit
the applied position of every partition touched (the source position everything below which
is applied) is saved, one state row per partition so that several appliers of one group can share
the work: ``replicator status`` reads them, and the publisher confirms the slot only up to what
every target applied, so a broker that loses its log can be refilled from the slot.

Poison events: a record that cannot be decoded, or an event the sink refuses for good, goes to
the dead-letter topic ``<topic>.dlq`` with the reason, and its thread is paused: every later
event of that thread goes to the dead-letter topic too (held in order, never applied out of
order), while other threads go on. Paused threads are persisted, so a restart keeps them held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.base import Sink
from replicator import kafka
from replicator.codec import Reassembler
from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError, Retry
from replicator.events import Control, ControlKind, DataChange, thread_of
from replicator.faults import fault_point
from replicator.state import (
    StateStore,
    applier_partition_state_name,
    applier_positions,
    deadletter_state_name,
)

log = structlog.get_logger("replicator.applier")

_LOG_CHECK_S = 2.0
_DEADLETTER_KEEP = 100


@dataclass
class PartitionPosition:
    offset: int = 0  # next offset to apply (committed)
    position: int = 0  # every source change below this source position is applied
    commit_ts: float = 0.0  # commit time of the newest applied change
    applied_at: float = 0.0
    events: int = 0  # data events applied from this partition, ever


@dataclass
class ApplierStats:
    events: int = 0
    batches: int = 0
    dead_letters: int = 0
    log_resets: int = 0
    partitions: dict[int, PartitionPosition] = field(default_factory=dict)
    last_batch_seconds: float = 0.0
    last_lag_seconds: float = 0.0


@dataclass
class _Poison:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    thread_id: str | None
    partition: int
    offset: int
    reason: str


def applied_below(position: int, event: Control | DataChange) -> int:
    """The source position below which every change is applied, once ``event`` is.

    An event's own transaction may continue in the next batch, so a change proves only what lies
    strictly below its commit position; a control record (heartbeat, end of copy) proves its whole
    position. The initial copy stands for everything committed before the slot's consistent point,
    which its start marker and rows carry: only its end marker proves all of it applied, or a
    "caught up" taken mid-copy would be a lie.
    """
    if isinstance(event, Control):
        if event.kind == ControlKind.SNAPSHOT_START:
            return position
        return max(position, event.source.position)
    return position if event.source.snapshot else max(position, event.source.position - 1)


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: it must not call blocking consumer APIs."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:  # kafka-python also calls this, with nothing, before the first join
            fault_point("applier.on_rebalance")
        for tp in revoked:
            self.applier.reassemblers.pop(tp, None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        # The consumer restarts newly assigned partitions from their committed offsets (eager
        # rebalance); pieces of a split event held in memory belong to the previous assignment.
        for tp in assigned:
            self.applier.reassemblers.pop(tp, None)
        if assigned:
            self.applier.refresh_positions([tp.partition for tp in assigned])


class Applier:
    def __init__(
        self,
        sink: Sink,
        config: KafkaConfig,
        state: StateStore,
        *,
        batch_events: int = 2000,
        consumer_overrides: dict[str, Any] | None = None,
        on_batch: Any = None,
    ) -> None:
        self.sink = sink
        self.config = config
        self.state = state
        self.batch_events = batch_events
        self.group_id = f"{config.group_prefix}.{sink.name}"
        self.consumer_overrides = consumer_overrides or {}
        self.on_batch = on_batch  # metrics hook: (events, seconds, newest commit_ts)
        self.consumer: Any = None
        self._dlq_producer: Any = None
        self.reassemblers: dict[TopicPartition, Reassembler] = {}
        self.stats = ApplierStats()
        dead = state.get(deadletter_state_name(sink.name)) or {}
        self.paused: set[str] = set(dead.get("paused_threads") or [])
        self.dead_letters: list[dict[str, Any]] = list(dead.get("recent") or [])
        self.stats.dead_letters = int(dead.get("count", 0))
        for partition, saved in applier_positions(state, sink.name).items():
            self.stats.partitions[partition] = _position(saved)
        self._last_log_check = 0.0

    def refresh_positions(self, partitions: list[int]) -> None:
        """Take over what another applier of the group saved for partitions now assigned here.

        Positions only move forward in the store: a position remembered from before that
        applier moved the partition on would be refused there.
        """
        try:
            saved = applier_positions(self.state, self.sink.name)
        except ReplicatorError as exc:
            log.warning("applied positions not refreshed after a rebalance", error=str(exc))
            return
        for partition in partitions:
            if partition not in saved:
                continue
            stored = _position(saved[partition])
            current = self.stats.partitions.get(partition)
            if current is None or stored.position >= current.position:
                self.stats.partitions[partition] = stored

    @property
    def dlq_topic(self) -> str:
        return f"{self.config.topic}.dlq"

    def run(self, stop: threading.Event) -> None:
        self.sink.check()
        kafka.ensure_topic(self.config)
        self.consumer = kafka.consumer(self.config, self.group_id, **self.consumer_overrides)
        try:
            self.consumer.subscribe([self.config.topic], listener=_Rebalance(self))
            while not stop.is_set():
                try:
                    batch = self.consumer.poll(timeout_ms=200, max_records=self.batch_events)
                except KafkaError as exc:
                    raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"cannot consume: {exc}") from None
                if batch:
                    self._apply(batch)
                self._check_log_reset()
        finally:
            for client in (self.consumer, self._dlq_producer):
                try:
                    if client is self.consumer:
                        client.close(autocommit=False)
                    elif client is not None:
                        client.close(timeout=5)
                except Exception:
                    pass
            self.consumer = None
            self._dlq_producer = None

    # -- one batch ------------------------------------------------------------------------------

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.monotonic()
        events: list[DataChange] = []
        origins: list[tuple[int, int]] = []  # (partition, offset) of each event
        poison: list[_Poison] = []
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        moved: dict[int, PartitionPosition] = {}
        newest_commit_ts = 0.0
        for tp, records in batch.items():
            reassembler = self.reassemblers.setdefault(tp, Reassembler())
            position = self.stats.partitions.get(tp.partition, PartitionPosition())
            below, commit_ts = position.position, position.commit_ts
            applied_here = 0
            for record in records:
                thread = record.key.decode("utf-8", "replace") if record.key else None
                try:
                    event = reassembler.feed(record.offset, record.value, record.headers)
                except ReplicatorError as exc:
                    poison.append(self._poison(record, tp, thread, str(exc)))
                    continue
                if event is None:
                    continue
                below = applied_below(below, event)
                if isinstance(event, Control):
                    # A heartbeat says everything committed by its time is here: the partition
                    # is applied up to that time too (status's lag in seconds reads it).
                    if event.source.commit_ts:
                        commit_ts = max(commit_ts, event.source.commit_ts)
                    continue
                if event.source.commit_ts:
                    commit_ts = event.source.commit_ts
                    newest_commit_ts = max(newest_commit_ts, commit_ts)
                if thread_of(event) in self.paused:
                    poison.append(self._poison(record, tp, thread, "thread paused by an earlier dead letter"))
                    continue
                events.append(event)
                origins.append((tp.partition, record.offset))
                applied_here += 1
            offset = reassembler.safe_commit(records[-1].offset + 1)
            commits[tp] = OffsetAndMetadata(offset, "", -1)
            moved[tp.partition] = PartitionPosition(
                offset, below, commit_ts, time.time(), position.events + applied_here
            )
        if events:
            poison.extend(self._apply_isolating(events, origins))
        if poison:
            self._dead_letter(poison)
        fault_point("applier.after_apply")
        try:
            self.consumer.commit(commits)
        except CommitFailedError as exc:
            # A rebalance took the partitions away: the next owner replays this batch, which the
            # idempotent sink absorbs.
            log.warning("offset commit failed after a rebalance; batch will be replayed", error=str(exc))
            return
        except KafkaError as exc:
            raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"cannot commit offsets: {exc}") from None
        fault_point("applier.after_commit")
        self.stats.partitions.update(moved)
        self.stats.events += len(events)
        self.stats.batches += 1
        self.stats.last_batch_seconds = time.monotonic() - started
        if newest_commit_ts:
            self.stats.last_lag_seconds = max(0.0, time.time() - newest_commit_ts)
        self.state.put_many(
            {applier_partition_state_name(self.sink.name, p): asdict(pos) for p, pos in moved.items()}
        )
        if self.on_batch is not None:
            self.on_batch(len(events), self.stats.last_batch_seconds, newest_commit_ts)

    def _apply_isolating(self, events: list[DataChange], origins: list[tuple[int, int]]) -> list[_Poison]:
        """Apply the batch; if the sink refuses it for good, find the events it refuses.

        Retryable errors propagate (the supervisor backs off and the batch is replayed), and so does
        anything that is not a ``ReplicatorError`` (a bug: the daemon stops). A permanent refusal
        is narrowed down thread by thread, so one poison event cannot stop the other threads; the
        refused thread is paused from its first refused event on.
        """
        try:
            fault_point("applier.in_sink_apply")
            self.sink.apply(events)
            return []
        except ReplicatorError as exc:
            if exc.retry is Retry.TIMED:
                raise
            first_error = str(exc)
        # Any other exception is a bug, not a poison event: it propagates and stops the daemon
        # (replicator.errors.classify) rather than parking a conversation in the dead-letter topic.
        log.warning(
            "sink refused a batch; isolating the poison events", target=self.sink.name, error=first_error
        )
        by_thread: dict[str, list[int]] = {}
        for position, event in enumerate(events):
            by_thread.setdefault(thread_of(event) or "", []).append(position)
        refused: list[_Poison] = []
        for thread, positions in by_thread.items():
            failed_at = self._apply_one_by_one([events[i] for i in positions])
            if failed_at is None:
                continue
            first, reason = failed_at
            self.paused.add(thread)
            for n, position in enumerate(positions[first:]):
                partition, offset = origins[position]
                why = reason if n == 0 else "thread paused by an earlier dead letter"
                refused.append(
                    _Poison(
                        thread.encode(), _encode_event(events[position]), [], thread, partition, offset, why
                    )
                )
        return refused

    def _apply_one_by_one(self, events: Sequence[DataChange]) -> tuple[int, str] | None:
        for index, event in enumerate(events):
            try:
                self.sink.apply([event])
            except ReplicatorError as exc:
                if exc.retry is Retry.TIMED:
                    raise
                return index, str(exc)
        return None

    def _poison(self, record: Any, tp: TopicPartition, thread: str | None, reason: str) -> _Poison:
        if thread is not None:
            self.paused.add(thread)
        return _Poison(
            record.key, record.value, list(record.headers or []), thread, tp.partition, record.offset, reason
        )

    def _dead_letter(self, poison: list[_Poison]) -> None:
        """Durably park refused records in the dead-letter topic before their offsets commit."""
        if self._dlq_producer is None:
            kafka.ensure_topic(self.config, topic=self.dlq_topic, partitions=1)
            self._dlq_producer = kafka.producer(self.config)
        futures = []
        for item in poison:
            headers = [
                *[(k, v) for k, v in item.headers if k != "lgr-reason"],
                ("lgr-reason", item.reason.encode()[:4096]),
                ("lgr-target", self.sink.name.encode()),
                ("lgr-origin", f"{self.config.topic}/{item.partition}/{item.offset}".encode()),
            ]
            futures.append(
                self._dlq_producer.send(self.dlq_topic, key=item.key, value=item.value, headers=headers)
            )
        try:
            self._dlq_producer.flush(timeout=60)
        except KafkaError as exc:
            raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"cannot write dead letters: {exc}") from None
        for future in futures:
            if future.failed():
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"cannot write a dead letter: {future.exception}"
                )
        for item in poison:
            log.error(
                "event sent to the dead-letter topic; its thread is paused",
                target=self.sink.name,
                thread_id=item.thread_id,
                partition=item.partition,
                offset=item.offset,
                reason=item.reason,
                dlq=self.dlq_topic,
            )
            self.dead_letters.append(
                {
                    "thread_id": item.thread_id,
                    "partition": item.partition,
                    "offset": item.offset,
                    "reason": item.reason[:500],
                    "at": time.time(),
                }
            )
        self.stats.dead_letters += len(poison)
        self.dead_letters = self.dead_letters[-_DEADLETTER_KEEP:]
        self.state.put(
            deadletter_state_name(self.sink.name),
            {
                "count": self.stats.dead_letters,
                "paused_threads": sorted(self.paused),
                "recent": self.dead_letters,
                "topic": self.dlq_topic,
            },
        )

    # -- a broker that lost its log ---------------------------------------------------------------

    def _check_log_reset(self) -> None:
        """A committed position beyond the log's end means the topic was recreated or truncated.

        Kafka would answer OffsetOutOfRange; some brokers answer nothing at all, so compare with
        the high watermark of the last fetch instead. Start that partition over from its
        beginning: the publisher refills the new log from the slot, which keeps every change
        no target has applied yet.
        """
        now = time.monotonic()
        if now - self._last_log_check < _LOG_CHECK_S or self.consumer is None:
            return
        self._last_log_check = now
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            position = self.stats.partitions.get(tp.partition)
            if highwater is None or position is None or position.offset <= highwater:
                continue
            log.error(
                "Kafka log no longer holds what this target consumed: the topic was recreated or "
                "truncated. Starting the partition over from its beginning; the publisher refills it "
                "from the replication slot.",
                target=self.sink.name,
                partition=tp.partition,
                committed=position.offset,
                log_end=highwater,
            )
            self.stats.log_resets += 1
            self.consumer.seek_to_beginning(tp)
            self.reassemblers.pop(tp, None)
            self.stats.partitions[tp.partition] = PartitionPosition(
                0, position.position, position.commit_ts, time.time(), position.events
            )


def _position(saved: dict[str, Any]) -> PartitionPosition:
    return PartitionPosition(
        **{k: v for k, v in saved.items() if k in PartitionPosition.__dataclass_fields__}
    )


def _encode_event(event: DataChange) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(event)
