"""Kafka to one sink. A consumer offset is committed only after the sink made the batch
durable (invariant 2); a crash replays the batch, and the idempotent sink makes the replay
invisible (invariant 3).

Each target has its own consumer group, so targets advance independently. The applied
position per partition (the source LSN everything below which is applied) is saved after each
commit: ``replicator status`` reads it to decide whether a target has caught up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
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
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import Control, DataChange
from replicator.faults import fault_point
from replicator.state import StateStore, applier_state_name

log = structlog.get_logger("replicator.applier")


@dataclass
class PartitionPosition:
    offset: int = 0  # next offset to apply (committed)
    lsn: int = 0  # every source change below this LSN is applied
    commit_ts: float = 0.0  # commit time of the newest applied change
    applied_at: float = 0.0


@dataclass
class ApplierStats:
    events: int = 0
    batches: int = 0
    partitions: dict[int, PartitionPosition] = field(default_factory=dict)
    last_batch_seconds: float = 0.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.applier.reassemblers.pop(tp, None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        # The consumer restarts newly assigned partitions from their committed offsets (eager
        # rebalance); pieces of a split event held in memory belong to the previous assignment.
        # Runs on kafka-python's IO thread: it must not call blocking consumer APIs.
        for tp in assigned:
            self.applier.reassemblers.pop(tp, None)


class Applier:
    def __init__(
        self,
        sink: Sink,
        config: KafkaConfig,
        state: StateStore,
        *,
        batch_events: int = 2000,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.sink = sink
        self.config = config
        self.state = state
        self.batch_events = batch_events
        self.group_id = f"{config.group_prefix}.{sink.name}"
        self.consumer_overrides = consumer_overrides or {}
        self.consumer: Any = None
        self.reassemblers: dict[TopicPartition, Reassembler] = {}
        self.stats = ApplierStats()
        saved = state.get(applier_state_name(sink.name)) or {}
        for key, value in (saved.get("partitions") or {}).items():
            self.stats.partitions[int(key)] = PartitionPosition(**value)
        self.stats.events = int(saved.get("events", 0))

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
        finally:
            try:
                self.consumer.close(autocommit=False)
            except Exception:
                pass
            self.consumer = None

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.monotonic()
        events: list[DataChange] = []
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        moved: dict[int, PartitionPosition] = {}
        for tp, records in batch.items():
            reassembler = self.reassemblers.setdefault(tp, Reassembler())
            position = self.stats.partitions.get(tp.partition, PartitionPosition())
            lsn, commit_ts = position.lsn, position.commit_ts
            for record in records:
                try:
                    event = reassembler.feed(record.offset, record.value, record.headers)
                except ReplicatorError as exc:
                    raise ReplicatorError(
                        exc.kind,
                        f"{exc} (topic {tp.topic}, partition {tp.partition}, offset {record.offset})",
                    ) from None
                if event is None:
                    continue
                if isinstance(event, Control):
                    lsn = max(lsn, event.source.lsn)
                    continue
                events.append(event)
                # The event's own transaction may continue in the next batch: only what lies
                # strictly below its commit position is known to be complete.
                lsn = max(lsn, event.source.lsn - 1)
                if event.source.commit_ts:
                    commit_ts = event.source.commit_ts
            offset = reassembler.safe_commit(records[-1].offset + 1)
            commits[tp] = OffsetAndMetadata(offset, "", -1)
            moved[tp.partition] = PartitionPosition(offset, lsn, commit_ts, time.time())
        if events:
            self.sink.apply(events)
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
        self.state.put(
            applier_state_name(self.sink.name),
            {
                "partitions": {str(p): vars(pos) for p, pos in self.stats.partitions.items()},
                "events": self.stats.events,
                "updated_at": time.time(),
            },
        )
