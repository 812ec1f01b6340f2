"""Kafka to one sink. A consumer offset is committed only after the sink made the batch
durable (invariant 2); a crash replays the batch, and the idempotent sink makes the replay
invisible (invariant 3).

Each target has its own consumer group, so targets advance independently. After each commit
the applied position of every partition touched (the source position everything below which
is applied) is saved, one state row per partition so that several appliers of one group can share
the work: ``replicator status`` reads them, and the publisher confirms the slot only up to what
every target applied, so a broker that loses its log can be refilled from the slot.

Several apply processes in one group (``replicator run --role apply``), partitions moving between
them on every rebalance (eager protocol: every member gives up its partitions, in its own poll,
after its last batch was applied, committed and its positions saved, before anyone gets them):

- a partition's position is written only by its owner, after Kafka accepted the offset commit
  (the group coordinator refuses the commit of a member that lost the partition); a write the
  store refuses because another member of the same topic moved that partition further (this
  process stalled past its session and was replaced) keeps the stored, higher position;
- a member taking a partition over reads its position, and the threads paused by dead letters,
  from the state store in its own thread, before it applies a record of it (a failed read
  restarts the stage, never applies with what it remembered);
- what this process cached about threads of partitions that changed hands (the sink's blob
  cache) is dropped: another member may have deleted or rewritten them meanwhile;
- dead letters are kept per partition (one writer each), and the per-target summary that
  ``status`` and the cutover gate read is rebuilt from them;
- each process records itself (member id, host, partitions) in the state store every few
  seconds (``member:<target>:<process>``), which ``status`` lists as the group's members.

Poison events: a record that cannot be decoded, or an event the sink refuses for good, goes to
the dead-letter topic ``<topic>.dlq`` with the reason, and its thread is paused: every later
event of that thread goes to the dead-letter topic too (held in order, never applied out of
order), while other threads go on. Paused threads are persisted, so a restart keeps them held.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
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
_MEMBER_PRUNE_S = 600.0  # member documents older than this are deleted by any live member


def member_state_name(target: str, member: str) -> str:
    """The state document one apply process keeps about itself in a target's consumer group."""
    return f"member:{target}:{member}"


def deadletter_partition_state_name(target: str, partition: int) -> str:
    """Dead letters of one partition: written only by that partition's owner."""
    return f"{deadletter_state_name(target)}:{partition}"


def member_timing(session_timeout_ms: int) -> tuple[float, float]:
    """(refresh, ttl) of member documents, in seconds: a member refreshes its document a few times
    per session timeout, and one not refreshed for a session timeout plus two refreshes is gone
    (the broker has evicted it by then too)."""
    session = session_timeout_ms / 1000
    refresh = min(5.0, max(1.0, session / 3))
    return refresh, session + 2 * refresh


def group_members(state: StateStore, target: str, now: float | None = None) -> list[dict[str, Any]]:
    """The apply processes of one target's consumer group, as each last recorded itself.

    Only members whose document is fresh (refreshed within its own ``ttl_s``) count: a process
    killed without a goodbye drops out about when the broker evicts it. Clocks of the hosts are
    compared, so they should be synchronised (NTP) to within a few seconds.
    """
    now = time.time() if now is None else now
    prefix = member_state_name(target, "")
    members = []
    for name, doc in state.prefixed(prefix).items():
        age = now - float(doc.get("updated_at") or 0)
        if age > float(doc.get("ttl_s") or 30):
            continue
        members.append(
            {
                "member": name[len(prefix) :],
                "member_id": doc.get("member_id", ""),
                "client_id": doc.get("client_id", ""),
                "host": doc.get("host", ""),
                "pid": doc.get("pid"),
                "partitions": list(doc.get("partitions") or []),
                "generation": doc.get("generation", -1),
                "state": doc.get("state", ""),
                "seen_s_ago": round(max(0.0, age), 1),
            }
        )
    return sorted(members, key=lambda m: (str(m["host"]), str(m["pid"]), str(m["member"])))


def stored_paused_threads(state: StateStore, target: str) -> set[str]:
    """Every thread a dead letter paused for ``target``, whichever member paused it."""
    summary = deadletter_state_name(target)
    paused: set[str] = set()
    for name, doc in state.prefixed(summary).items():
        if name == summary or name.startswith(summary + ":"):
            paused.update(doc.get("paused_threads") or [])
    return paused


def summarize_dead_letters(state: StateStore, target: str, topic: str) -> None:
    """Rebuild ``deadletters:<target>`` (what ``status`` and the cutover gate read) from the
    per-partition documents. A summary written before there were any (one process per
    pipeline) is kept inside it as ``legacy`` and counted too. ``count`` is what is unresolved:
    ``replicator deadletters --release`` moves a document's count to ``released_count`` once
    none of its threads is paused any more."""
    summary_name = deadletter_state_name(target)
    documents = state.prefixed(summary_name)
    summary = documents.get(summary_name) or {}
    legacy = summary.get("legacy") if summary.get("per_partition") else summary
    parts = [legacy or {}] + [doc for name, doc in documents.items() if name.startswith(summary_name + ":")]
    recent = sorted(
        (entry for doc in parts for entry in doc.get("recent") or []),
        key=lambda entry: float(entry.get("at") or 0),
    )
    state.put(
        summary_name,
        {
            "count": sum(int(doc.get("count", 0)) for doc in parts),
            "released_count": sum(int(doc.get("released_count", 0)) for doc in parts),
            "paused_threads": sorted({t for doc in parts for t in doc.get("paused_threads") or []}),
            "recent": recent[-_DEADLETTER_KEEP:],
            "topic": topic,
            "per_partition": True,
            "legacy": legacy or {},
        },
    )


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
    """Runs on kafka-python's IO thread (inside ``poll``): no I/O here, or heartbeats wait. It only
    notes the new assignment; the applier's own thread takes it over (``_take_assignment``)
    before it applies anything of it."""

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
        self.applier.assignment_changed(tp.partition for tp in assigned)


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
        # A record holds one or more events (a thread's run of changes): records are polled so
        # that a batch holds about ``batch_events`` events, by the ratio the last batches showed
        # (the first poll takes few records, before any ratio is known).
        self._events_per_record = 16.0
        self.group_id = f"{config.group_prefix}.{sink.name}"
        self.consumer_overrides = consumer_overrides or {}
        self.on_batch = on_batch  # metrics hook: (events, seconds, newest commit_ts)
        self.consumer: Any = None
        self._dlq_producer: Any = None
        self.reassemblers: dict[TopicPartition, Reassembler] = {}
        # The offset the consumer must hand over next, per partition: Kafka skipping past it
        # means records this target never applied are gone (``_check_contiguous``).
        self._next_offsets: dict[TopicPartition, int] = {}
        self.stats = ApplierStats()
        dead = state.get(deadletter_state_name(sink.name)) or {}
        self.paused: set[str] = stored_paused_threads(state, sink.name)
        self.stats.dead_letters = int(dead.get("count", 0))
        for partition, saved in applier_positions(state, sink.name).items():
            self.stats.partitions[partition] = _position(saved)
        self._last_log_check = 0.0
        # This process in the group: who it is, what it owns, when it last said so.
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.member_id = ""
        self.generation = -1
        self.group_state = "unjoined"
        self.owned: set[int] = set()
        self.joined = False  # took an assignment (maybe empty) at least once: readiness
        self.started_at = time.time()
        self.member_refresh_s, self.member_ttl_s = member_timing(config.session_timeout_ms)
        self._assignment_lock = threading.Lock()
        self._new_assignment: list[int] | None = None
        self._member_wake = threading.Event()

    def assignment_changed(self, partitions: Iterable[int]) -> None:
        """The group gave this member ``partitions`` (called on the consumer's IO thread)."""
        with self._assignment_lock:
            self._new_assignment = sorted(partitions)

    def _take_assignment(self) -> None:
        """Take over a new assignment, in the applier's thread, before applying any of it.

        Partitions this member did not own until now get their position and the paused threads
        from the state store (their last owner saved both before it gave them up); a failed read
        raises, so that nothing is applied with a stale view. The sink's blob cache is dropped
        when partitions changed hands: while another member owned them, it may have deleted or
        rewritten threads whose blobs this process still remembers.
        """
        if self.consumer is not None:
            meta = self.consumer.group_metadata()
            self.member_id = str(meta.member_id or "")
            self.generation = int(meta.generation_id)
            self.group_state = str(getattr(meta, "state", "") or "joined").strip("<>")  # kafka-python 3
        with self._assignment_lock:
            assigned, self._new_assignment = self._new_assignment, None
        if assigned is None:
            return
        self._next_offsets.clear()  # every assigned partition restarts from its committed offset
        new = set(assigned)
        gained = new - self.owned
        if gained:
            for partition in gained:  # the store says where a partition taken over stands
                self.stats.partitions.pop(partition, None)
            self.refresh_positions(sorted(gained), strict=True)
            self.paused |= stored_paused_threads(self.state, self.sink.name)
        if self.joined and new != self.owned:
            self._forget_cached_blobs()
        self.stats.partitions = {p: pos for p, pos in self.stats.partitions.items() if p in new}
        if new != self.owned or not self.joined:
            log.info(
                "partitions assigned",
                target=self.sink.name,
                partitions=sorted(new),
                gained=sorted(gained),
                given_up=sorted(self.owned - new),
                generation=self.generation,
            )
        self.owned = new
        self.joined = True
        self._member_wake.set()

    def _forget_cached_blobs(self) -> None:
        from connectors.langgraph.blobs import BlobCache

        cache = getattr(self.sink, "cache", None)
        if isinstance(cache, BlobCache) and len(cache):
            self.sink.cache = BlobCache(cache.capacity)  # type: ignore[attr-defined]

    def refresh_positions(self, partitions: list[int], *, strict: bool = False) -> None:
        """Take over what another applier of the group saved for partitions now assigned here.

        Positions only move forward in the store: a position remembered from before that
        applier moved the partition on would be refused there. ``strict``: a failed read raises
        (the stage restarts) instead of keeping what this applier remembered.
        """
        try:
            saved = applier_positions(self.state, self.sink.name)
        except ReplicatorError as exc:
            if strict:
                raise
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
        self._next_offsets.clear()  # a new consumer starts from the committed offsets
        done = threading.Event()
        beat = threading.Thread(
            target=self._member_beat, args=(done,), name=f"member:{self.sink.name}", daemon=True
        )
        try:
            self.consumer.subscribe([self.config.topic], listener=_Rebalance(self))
            beat.start()
            while not stop.is_set():
                try:
                    batch = self.consumer.poll(timeout_ms=200, max_records=self._max_records())
                except KafkaError as exc:
                    raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"cannot consume: {exc}") from None
                self._take_assignment()
                if batch:
                    self._apply(batch)
                self._check_log_reset()
        finally:
            done.set()
            self._member_wake.set()
            if beat.is_alive():
                beat.join(timeout=10)
            try:  # a clean goodbye; a killed process drops out of status after its ttl
                self.state.delete(member_state_name(self.sink.name, self.member))
            except Exception:
                pass
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

    # -- this process in the group ------------------------------------------------------------------

    def member_doc(self) -> dict[str, Any]:
        return {
            "target": self.sink.name,
            "group": self.group_id,
            "topic": self.config.topic,
            "member_id": self.member_id,
            "generation": self.generation,
            "state": self.group_state,
            "client_id": self.config.client_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "partitions": sorted(self.owned),
            "joined": self.joined,
            "events": self.stats.events,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "ttl_s": self.member_ttl_s,
        }

    def _member_beat(self, done: threading.Event) -> None:
        """Record this process in the state store every few seconds, and at once on a new
        assignment, until the applier stops; delete documents of members long gone."""
        pruned_at = 0.0
        while not done.is_set():
            self._member_wake.clear()
            try:
                self.state.put(member_state_name(self.sink.name, self.member), self.member_doc())
                now = time.time()
                if now - pruned_at > _MEMBER_PRUNE_S / 10:
                    pruned_at = now
                    prefix = member_state_name(self.sink.name, "")
                    for name, doc in self.state.prefixed(prefix).items():
                        if now - float(doc.get("updated_at") or 0) > max(
                            _MEMBER_PRUNE_S, 10 * float(doc.get("ttl_s") or 0)
                        ):
                            self.state.delete(name)
            except Exception as exc:  # the stage itself notices a state store that is gone
                log.warning("could not record this applier in the state store", error=str(exc))
            self._member_wake.wait(self.member_refresh_s)

    def _max_records(self) -> int:
        return max(1, round(self.batch_events / self._events_per_record))

    def _learn_events_per_record(self, records: int, events: int) -> None:
        """Learn from the records that held data changes, and their changes, only.

        Control records (heartbeats go to every partition) cost next to nothing; counted, a poll
        of a partition's run of heartbeats taught "one event per record", and the next poll took
        every buffered data record of the other partitions at once: at the end of a long backlog,
        whose partitions end in thousands of heartbeats, bench figure 4's daemon went from 183
        to 243 MiB. A poll of control records only teaches nothing."""
        if records:
            ratio = max(1.0, events / records)
            self._events_per_record = (self._events_per_record + ratio) / 2

    # -- one batch ------------------------------------------------------------------------------

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.monotonic()
        events: list[DataChange] = []
        origins: list[tuple[int, int]] = []  # (partition, offset) of each event
        poison: list[_Poison] = []
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        moved: dict[int, PartitionPosition] = {}
        newest_commit_ts = 0.0
        data_records = data_events = 0  # records holding data changes (not only controls), their changes
        for tp, records in batch.items():
            self._check_contiguous(tp, records[0].offset)
            self._next_offsets[tp] = records[-1].offset + 1
            reassembler = self.reassemblers.setdefault(tp, Reassembler())
            position = self.stats.partitions.get(tp.partition, PartitionPosition())
            below, commit_ts = position.position, position.commit_ts
            applied_here = 0
            for record in records:
                thread = record.key.decode("utf-8", "replace") if record.key else None
                try:
                    decoded = reassembler.feed(record.offset, record.value, record.headers)
                except ReplicatorError as exc:
                    poison.append(self._poison(record, tp, thread, str(exc)))
                    continue
                changes: list[DataChange] = []
                for event in decoded:
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
                    changes.append(event)
                if not changes:
                    continue
                data_records += 1
                data_events += len(changes)
                if any(thread_of(event) in self.paused for event in changes):
                    # A record holds one thread's changes: it is parked whole.
                    poison.append(self._poison(record, tp, thread, "thread paused by an earlier dead letter"))
                    continue
                events.extend(changes)
                origins.extend([(tp.partition, record.offset)] * len(changes))
                applied_here += len(changes)
            offset = reassembler.safe_commit(records[-1].offset + 1)
            commits[tp] = OffsetAndMetadata(offset, "", -1)
            moved[tp.partition] = PartitionPosition(
                offset, below, commit_ts, time.time(), position.events + applied_here
            )
        self._learn_events_per_record(data_records, data_events)
        if events:
            poison.extend(self._apply_isolating(events, origins))
        if poison:
            self._dead_letter(poison)
        fault_point("applier.after_apply")
        generation = int(self.consumer.group_metadata().generation_id)
        try:
            self.consumer.commit(commits)
        except CommitFailedError as exc:
            # A rebalance took the partitions away: the next owner replays this batch, which the
            # idempotent sink absorbs. Nothing of it is recorded here: its positions are the new
            # owner's to write.
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
        self._save_positions(moved, generation)
        if self.on_batch is not None:
            self.on_batch(len(events), self.stats.last_batch_seconds, newest_commit_ts)

    def _save_positions(self, moved: dict[int, PartitionPosition], generation: int) -> None:
        """Save the positions of a committed batch: Kafka accepted the commit, so this member
        owned these partitions in ``generation`` (the coordinator refuses a stale member's).

        The store refuses a position that would move back. Between members of one group reading
        one topic that means this process was replaced after its commit (it stalled past its
        session) and the new owner already applied further: the stored position is the truer
        one and stays. Any other refusal (this member's own position going back, or a position
        saved for another topic: a second pipeline writing this state store) is still a bug.
        """
        docs = {
            applier_partition_state_name(self.sink.name, p): {
                **asdict(pos),
                "member": self.member,
                "generation": generation,
                "topic": self.config.topic,
            }
            for p, pos in moved.items()
        }
        try:
            self.state.put_many(docs)
            return
        except ReplicatorError as exc:
            if exc.kind is not ErrorKind.INTERNAL:
                raise
            refused = exc
        superseded: dict[int, dict[str, Any]] = {}
        for partition in moved:
            stored = self.state.get(applier_partition_state_name(self.sink.name, partition))
            if _superseded(stored, docs[applier_partition_state_name(self.sink.name, partition)]):
                assert stored is not None
                superseded[partition] = stored
        if not superseded:
            raise refused
        log.warning(
            "another member of the group applied these partitions further since this one committed "
            "(this process was replaced after a stall); keeping its positions",
            target=self.sink.name,
            partitions=sorted(superseded),
            generation=generation,
        )
        for partition, stored in superseded.items():
            del docs[applier_partition_state_name(self.sink.name, partition)]
            self.stats.partitions[partition] = _position(stored)
        self.state.put_many(docs)

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
            if exc.kind is not ErrorKind.MALFORMED_EVENT:
                # A setup refusal may be the whole target's (table dropped, permission revoked):
                # then the check fails too, and that stops the daemon with its fix, instead of
                # dead-lettering every conversation one batch at a time. If the target checks
                # fine, the refusal is this event's (a value too large without an s3_bucket).
                self.sink.check()
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
        by_partition: dict[int, list[_Poison]] = {}
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
            by_partition.setdefault(item.partition, []).append(item)
        self.stats.dead_letters += len(poison)
        # One document per partition, written by its owner alone: members of the group never
        # overwrite each other's dead letters or paused threads.
        docs = {}
        for partition, items in by_partition.items():
            name = deadletter_partition_state_name(self.sink.name, partition)
            stored = self.state.get(name) or {}
            recent = [
                *(stored.get("recent") or []),
                *(
                    {
                        "thread_id": item.thread_id,
                        "partition": item.partition,
                        "offset": item.offset,
                        "reason": item.reason[:500],
                        "at": time.time(),
                    }
                    for item in items
                ),
            ]
            docs[name] = {
                "count": int(stored.get("count", 0)) + len(items),
                "paused_threads": sorted(
                    set(stored.get("paused_threads") or []) | {i.thread_id for i in items if i.thread_id}
                ),
                "recent": recent[-_DEADLETTER_KEEP:],
                "topic": self.dlq_topic,
            }
        self.state.put_many(docs)
        self._summarize_dead_letters()

    def _summarize_dead_letters(self) -> None:
        summarize_dead_letters(self.state, self.sink.name, self.dlq_topic)

    # -- records deleted before this target applied them --------------------------------------------

    def _check_contiguous(self, tp: TopicPartition, first: int) -> None:
        """Stop when Kafka hands over a partition past offsets this target never applied.

        Offsets of the replicator's topic are contiguous (no compaction, refused in config; no
        transactions). A consumer whose next offset was deleted (retention, delete-records) gets
        OffsetOutOfRange and ``auto_offset_reset`` moves it silently to the earliest offset left:
        applying from there would skip changes for good while status says caught up. The
        expected offset is the last one handed over plus one, or, after a (re)assignment, the
        group's committed offset (Kafka's, which the commit writes before the state store).
        """
        expected = self._next_offsets.get(tp)
        if expected is None:
            expected = self._committed(tp)
        if expected is None or first <= expected:
            return
        raise ReplicatorError(ErrorKind.SOURCE_LOST, _gap_message(self.sink.name, tp, expected, first))

    def _committed(self, tp: TopicPartition) -> int | None:
        try:
            offset = self.consumer.committed(tp)
        except KafkaError as exc:  # unknown for now: the next batch's own offsets are checked
            log.warning(
                "committed offset not read", target=self.sink.name, partition=tp.partition, error=str(exc)
            )
            return None
        return offset if isinstance(offset, int) and offset >= 0 else None

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
            self._next_offsets.pop(tp, None)
            self.reassemblers.pop(tp, None)
            self.stats.partitions[tp.partition] = PartitionPosition(
                0, position.position, position.commit_ts, time.time(), position.events
            )


def _gap_message(target: str, tp: TopicPartition, expected: int, first: int) -> str:
    return (
        f"Kafka no longer holds offsets {expected}-{first - 1} of partition {tp.partition} of topic "
        f"{tp.topic!r}, which target {target!r} had not applied: they were deleted (the topic's "
        "retention is shorter than this target was behind, or records were deleted by hand), so "
        "the target lacks those changes. Applying stopped before anything after the gap. Raise the "
        "topic's retention.ms, then start over with a full copy: `replicator reset --config FILE "
        "--yes` and `replicator run` (see the runbook, 'Kafka deleted records')"
    )


def _superseded(stored: dict[str, Any] | None, ours: dict[str, Any]) -> bool:
    """Whether ``stored`` is a position another member of the same group saved, on the same
    topic, for a partition ``ours`` (refused as going back) was applied by this member before."""
    return (
        stored is not None
        and stored.get("topic") == ours["topic"]
        and stored.get("member") not in (None, ours["member"])
    )


def _position(saved: dict[str, Any]) -> PartitionPosition:
    return PartitionPosition(
        **{k: v for k, v in saved.items() if k in PartitionPosition.__dataclass_fields__}
    )


def _encode_event(event: DataChange) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(event)
