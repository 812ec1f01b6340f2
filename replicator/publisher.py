"""Source to Kafka. A source position is confirmed only after Kafka acknowledged every event
before it (invariant 2), so a crash anywhere replays from the source and never skips.

Stricter still, the slot is confirmed only up to what every target has applied (when the
daemon passes ``applied_position``): the slot, not the broker, is the durable buffer of
everything not yet in a target. A broker that loses its log (restarted on memory storage, a
recreated topic) is then refilled from the slot, deletes included, at the cost of the slot
retaining WAL while a target lags (a warning over ``source.max_slot_lag_bytes``).

Events are keyed by thread id, so one thread's changes share a partition in commit order;
control events (heartbeat, snapshot start and end) go to every partition, so each partition's
consumer learns how far the source has been read. Memory is bounded: at most
``max_pending_bytes`` of unacknowledged records exist before the publisher waits for acks.

Acks are collected without stopping the source: each source unit (a transaction, a snapshot
chunk) keeps its records' futures, and units are confirmed in order once all of theirs are
acknowledged. Waiting for every ack (a flush) stalled decoding for a broker round trip every
50 ms; while streaming, the publisher now waits only when the unacknowledged bytes reach the
bound, when the source is idle, and on stop. A unit with its own resume token (a chunk of the
initial copy) is still confirmed at once, so that a restart resumes the copy after it.

A thread's consecutive changes travel as one record (``codec.batch_record``): kafka-python's
cost is per record, and one record per row took over half of the capture thread. Events wait
in a per-thread batch for at most ``record_linger_s`` (or until the source is idle, a control
event, a unit with a resume token, or the batch's size bound), and every settle sends every
batch first, so a unit is never confirmed with one of its events still unsent. A batch's record
is counted in the earliest unit it holds events of: units are confirmed in order, so no unit
after it is confirmed before that record is acknowledged either.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka.errors import KafkaError

from connectors.base import Source
from replicator import codec, kafka
from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import Committed, Control
from replicator.faults import fault_point
from replicator.lifecycle import SnapshotState
from replicator.offset_log import OffsetLog
from replicator.state import POSITION, PUBLISHER_STATE, StateStore

log = structlog.get_logger("replicator.publisher")

_CONTROL_OFFSETS_KEPT = 20_000
# A batch record's size bound: well under the broker's default limit and kafka-python's batch.
_BATCH_RECORD_BYTES = 128 * 1024


@dataclass
class PublisherStats:
    events: int = 0
    records: int = 0
    bytes: int = 0
    confirmed_position: int = 0
    confirmed_commit_ts: float = 0.0
    produced: dict[int, int] = field(default_factory=dict)  # partition -> next offset (from acks)
    partitions: list[int] = field(default_factory=list)
    control_offsets: dict[int, OffsetLog] = field(default_factory=dict)  # recent heartbeat offsets
    # Recent records holding more than one event, weighed by the events beyond the first, per
    # partition, so that lag in events counts events, not records (status.Live).
    batch_offsets: dict[int, OffsetLog] = field(default_factory=dict)
    log_resets: int = 0


@dataclass
class _Unit:
    """The records of one source unit, produced, and its end (None while it is still open)."""

    futures: list[tuple[Any, int]] = field(default_factory=list)  # (future, events in it; 0: control)
    bytes: int = 0
    commit: Committed | None = None
    checked: int = 0  # futures[:checked] are known done

    def acked(self) -> bool:
        futures = self.futures
        while self.checked < len(futures) and futures[self.checked][0].is_done:
            self.checked += 1
        return self.checked == len(futures)


@dataclass
class _ThreadBatch:
    """Encoded events of one thread not sent yet, and the earliest unit they belong to."""

    unit: _Unit
    values: list[bytes] = field(default_factory=list)
    bytes: int = 0


class Publisher:
    def __init__(
        self,
        source: Source,
        config: KafkaConfig,
        state: StateStore,
        *,
        flush_interval_s: float = 0.05,
        max_pending_bytes: int = 32 * 1024 * 1024,
        state_interval_s: float = 0.25,
        applied_position: Callable[[list[int]], int] | None = None,
        record_linger_s: float = 0.01,
    ) -> None:
        self.source = source
        self.config = config
        self.state = state
        self.flush_interval_s = flush_interval_s
        self.max_pending_bytes = max_pending_bytes
        self.state_interval_s = state_interval_s
        self.stats = PublisherStats()
        saved = state.get(PUBLISHER_STATE) or {}
        self.stats.produced = {int(k): int(v) for k, v in (saved.get("produced") or {}).items()}
        self._previous_log_end = dict(self.stats.produced)  # what the log held before this run
        self.applied_position = applied_position
        self._applied_cache = (0.0, 0)
        # Positions only move forward in the store: start from the one saved, not from 0.
        self.stats.confirmed_position = self._confirmed_to_source = int(saved.get(POSITION) or 0)
        self._open = _Unit()  # records of the unit being read
        self._closed: deque[_Unit] = deque()  # whole units, oldest first, not yet confirmed
        self._unacked_bytes = 0
        self.record_linger_s = record_linger_s
        self._batches: dict[bytes | None, _ThreadBatch] = {}  # thread key -> its unsent events
        self._batched_bytes = 0
        self._batched_since = 0.0
        self._last_settle = time.monotonic()
        self._last_state_write = 0.0

    def run(self, stop: threading.Event) -> None:
        kafka.ensure_topic(self.config)
        producer = kafka.producer(self.config)
        try:
            partitions = producer.partitions_for(self.config.topic)
            if not partitions:
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"topic {self.config.topic!r} has no partitions"
                )
            self.stats.partitions = sorted(partitions)
            for item in self.source.stream():
                if item is None:
                    if self._closed or self._open.futures or self._batches:
                        self._settle(producer, wait=True)  # idle: nothing to overlap with
                    if stop.is_set():
                        break
                    continue
                if isinstance(item, Committed):
                    self._open.commit = item
                    self._closed.append(self._open)
                    self._open = _Unit()
                    if stop.is_set():
                        self._settle(producer, wait=True)
                        break
                    now = time.monotonic()
                    if item.token is not None:
                        # A unit with its own resume token (a snapshot chunk, the copy's end) is
                        # confirmed at once, as the copy's progress is: a restart resumes after it.
                        self._settle(producer, wait=True)
                    elif now - self._last_settle >= self.flush_interval_s:
                        self._settle(producer, wait=False)
                    elif self._batches and now - self._batched_since >= self.record_linger_s:
                        self._send_batches(producer)
                    continue
                fault_point("publisher.before_produce")
                if isinstance(item, Control):
                    # Every change read before it must be in its partition first.
                    self._send_batches(producer)
                    for record in codec.encode(item, self.config.max_message_bytes):
                        for partition in self.stats.partitions:
                            self._send(producer, record, partition, events=0)
                else:
                    self.stats.events += 1
                    self._add(producer, item)
                fault_point("publisher.after_send")
                if self._unacked_bytes >= self.max_pending_bytes:
                    self._settle(producer, wait=True)
            self._settle(producer, wait=True)
        finally:
            self._write_state(force=True)
            try:
                producer.close(timeout=5)
            except Exception:
                pass

    def _add(self, producer: Any, event: Any) -> None:
        """Queue a data event in its thread's batch (an event too large for one record is sent
        at once, in pieces, after what its thread has queued)."""
        key = codec.key_of(event)
        value = codec.encode_value(event)
        room = codec.budget(self.config.max_message_bytes, key)
        limit = min(room, _BATCH_RECORD_BYTES)
        batch = self._batches.get(key)
        if batch is not None and batch.bytes + len(value) > limit:
            self._send_batch(producer, key)
            batch = None
        if len(value) > limit:
            for record in codec.single_records(key, value, room):
                self._send(producer, record, None)
            return
        if batch is None:
            if not self._batches:
                self._batched_since = time.monotonic()
            batch = self._batches[key] = _ThreadBatch(self._open)
        batch.values.append(value)
        batch.bytes += len(value)
        self._batched_bytes += len(value)
        if self._batched_bytes >= _BATCH_RECORD_BYTES * 8:
            self._send_batches(producer)

    def _send_batch(self, producer: Any, key: bytes | None) -> None:
        batch = self._batches.pop(key)
        self._batched_bytes -= batch.bytes
        self._send(producer, codec.batch_record(key, batch.values), None, batch.unit, len(batch.values))

    def _send_batches(self, producer: Any) -> None:
        for key in list(self._batches):
            self._send_batch(producer, key)

    def _send(
        self,
        producer: Any,
        record: codec.Record,
        partition: int | None,
        unit: _Unit | None = None,
        events: int = 1,
    ) -> None:
        """Produce one record; ``events``: the events it holds (0: a control record)."""
        try:
            future = producer.send(
                self.config.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                partition=partition,
            )
        except KafkaError as exc:
            raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"cannot produce to Kafka: {exc}") from None
        unit = unit if unit is not None else self._open
        unit.futures.append((future, events))
        unit.bytes += len(record.value)
        self._unacked_bytes += len(record.value)
        self.stats.records += 1
        self.stats.bytes += len(record.value)

    @property
    def unacknowledged_bytes(self) -> int:
        """Bytes produced that Kafka has not acknowledged yet, as far as this publisher knows."""
        return self._unacked_bytes

    def _settle(self, producer: Any, *, wait: bool) -> None:
        """Confirm every whole unit whose records Kafka acknowledged, oldest first. ``wait``:
        first wait for every ack (the bound on unacknowledged bytes, an idle source, stop).
        Every batch is sent first: a unit with an event still in one must not look acknowledged."""
        self._send_batches(producer)
        self._last_settle = time.monotonic()
        if wait:
            try:
                producer.flush(timeout=self.config.request_timeout_ms / 1000 * 4)
            except KafkaError as exc:
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"Kafka did not acknowledge: {exc}"
                ) from None
        elif not (self._closed and self._closed[0].acked()):
            return
        settled: list[_Unit] = []
        while self._closed and (wait or self._closed[0].acked()):
            settled.append(self._closed.popleft())
        if wait:  # an open unit's acked records need not be kept until its end
            settled.append(self._open)
            self._open = _Unit()
        if not any(unit.futures for unit in settled) and not any(unit.commit for unit in settled):
            return
        fault_point("publisher.after_produce")
        latest: Committed | None = None
        for unit in settled:
            self._record_acks(unit.futures)
            self._unacked_bytes -= unit.bytes
            if unit.commit is None:
                continue
            latest = unit.commit
            if latest.token is not None:
                # A unit with its own resume token (a snapshot chunk) must be confirmed
                # itself: a later position would not carry its token.
                fault_point("publisher.before_confirm")
                self._confirm(latest)
                latest = None
        if latest is not None:
            fault_point("publisher.before_confirm")
            self._confirm(latest)
        self._write_state()

    def _record_acks(self, futures: list[tuple[Any, int]]) -> None:
        for future, events in futures:
            if not future.is_done:
                raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, "Kafka did not acknowledge in time")
            if future.failed():
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"Kafka refused a record: {future.exception!r}"
                )
            meta = future.value
            self._check_log_reset(meta.partition, meta.offset)
            if meta.offset + 1 > self.stats.produced.get(meta.partition, 0):
                self.stats.produced[meta.partition] = meta.offset + 1
            if events == 0:
                _recent(self.stats.control_offsets, meta.partition).add(meta.offset)
            elif events > 1:
                _recent(self.stats.batch_offsets, meta.partition).add(meta.offset, events - 1)

    def _confirm(self, commit: Committed) -> None:
        if commit.token is not None or self.applied_position is None:
            self.source.confirm(commit)
            position = commit.position
        else:
            position = min(commit.position, self._applied())
            if position <= self._confirmed_to_source:
                return
            self.source.confirm(Committed(position=position, commit_ts=commit.commit_ts))
        self._confirmed_to_source = max(self._confirmed_to_source, position)
        self.stats.confirmed_position = max(self.stats.confirmed_position, position)
        if commit.commit_ts:
            self.stats.confirmed_commit_ts = commit.commit_ts

    def _applied(self) -> int:
        """Every target's applied floor, read at most twice a second."""
        read_at, value = self._applied_cache
        now = time.monotonic()
        if self.applied_position is not None and now - read_at >= 0.5:
            value = self.applied_position(self.stats.partitions)
            self._applied_cache = (now, value)
        return value

    def _check_log_reset(self, partition: int, offset: int) -> None:
        """An ack below what the log already held: the topic was recreated or truncated."""
        previous_end = self._previous_log_end.pop(partition, None)
        if previous_end is None or offset + 1 >= previous_end:
            return
        self.stats.log_resets += 1
        self._previous_log_end.clear()
        self.stats.produced = {}
        self.stats.control_offsets = {}
        self.stats.batch_offsets = {}
        log.error(
            "Kafka log lost records this replicator had produced (topic recreated or broker restarted "
            "without its data). Refilling from the replication slot, which holds every change no "
            "target has applied; the appliers start the partitions over.",
            partition=partition,
            log_end_before=previous_end,
            ack_now=offset,
        )
        if self.source.snapshot_state() is not SnapshotState.DONE:
            self.source.restart_snapshot()
            raise ReplicatorError(
                ErrorKind.BROKER_UNREACHABLE,
                "Kafka lost records during the initial copy: starting the copy over",
            )

    def _write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_state_write < self.state_interval_s:
            return
        self._last_state_write = now
        try:
            self.state.put(
                PUBLISHER_STATE,
                {
                    "produced": {str(p): o for p, o in self.stats.produced.items()},
                    "partitions": self.stats.partitions,
                    POSITION: self.stats.confirmed_position,
                    "confirmed_commit_ts": self.stats.confirmed_commit_ts,
                    "events": self.stats.events,
                    "updated_at": time.time(),
                },
            )
        except ReplicatorError as exc:
            if force:
                log.warning("could not save publisher position", error=str(exc))
            else:
                raise


def _recent(logs: dict[int, OffsetLog], partition: int) -> OffsetLog:
    """A partition's offset log, keeping its newest ``_CONTROL_OFFSETS_KEPT`` entries."""
    offsets = logs.get(partition)
    if offsets is None:
        offsets = logs[partition] = OffsetLog(_CONTROL_OFFSETS_KEPT)
    return offsets
