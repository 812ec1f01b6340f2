"""Where every change is: positions of every stage and the distances between them.

Positions: source head and the source's own details (for Postgres: WAL flush position and
slot), produced (acked offsets per partition, as the publisher saw them: the embedded broker's
ListOffsets is wrong, and acks are exact everywhere), applied per target and partition
(committed offset and source position). Source positions are opaque integers: the source
formats them (``*_lsn`` keys, kept for the scripts that poll them) and the raw integers sit
beside them (``*_position``), so nothing here parses a position.

Works from persisted positions when no daemon runs; a running daemon passes its live view
(``Live``), which also knows which produced records were control records (heartbeats), so lag
in events counts data events only: it knows which records hold several events (one thread's
run of changes). Without a daemon, lag in events counts records (heartbeats and batches alike):
zero is exact, other counts are approximate. A target has caught up when, on every
partition, it applied everything below the head the source had when the status was taken;
heartbeats carry that promise onto idle partitions. A source captured in the app (``kind = "memory"``) has no
position comparable across its app processes: its head is the topic's end offset per partition
(``replicator.memory_status``), and caught up means every record in the topic then is applied.

Members: each target's ``members`` lists the apply processes of its consumer group (member and
client id, host, pid, assigned partitions), as each recorded itself in the state store a few
seconds ago (``replicator.applier.group_members``). The broker is not asked: DescribeGroups is
not portable enough (the embedded test broker answers it without hosts or assignments, and
kafka-python cannot parse its answer), and the state store is where ``status`` reads everything
else, with or without a daemon running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Source, Switchboard
from connectors.registry import captured_in_app, make_source, make_switchboard, position_format
from replicator.applier import group_members
from replicator.config import Config
from replicator.errors import ErrorKind, ReplicatorError
from replicator.lifecycle import SnapshotState
from replicator.offset_log import OffsetLog
from replicator.state import (
    POSITION,
    PUBLISHER_STATE,
    SOURCE_STATE,
    MemoryStateStore,
    StateStore,
    applier_positions,
    deadletter_state_name,
)


@dataclass
class Live:
    """What only a running daemon knows."""

    produced: dict[int, int] = field(default_factory=dict)
    control_offsets: dict[int, OffsetLog] = field(default_factory=dict)  # recent heartbeats
    # recent records holding several events, weighed by the events beyond the first
    batch_offsets: dict[int, OffsetLog] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


def source_view(source: Source) -> tuple[int, dict[str, Any]]:
    """The source's head now, and its own details (for Postgres: the slot)."""
    return source.head(), source.describe()


def source_head(config: Config) -> tuple[int, dict[str, Any]]:
    """``source_view`` of the configured source, for callers that hold no source open."""
    source = make_source(config.source, MemoryStateStore())
    try:
        return source_view(source)
    finally:
        source.close()


def migration_view(board: Switchboard | None, state: StateStore | None = None) -> dict[str, Any]:
    """The migration record for ``status``: phase, which threads are on which store, last pause.

    ``board`` is None for a source that cannot be cut over; a record not created yet (no
    routing saver or switch command has run) reads as the start: replicating, on the source.
    With ``state``, also the threads still held on the source after the last cutover.
    """
    from replicator.cutover import held_behind
    from replicator.migration import MigrationRecord

    if board is None:
        return {"available": False}
    try:
        record = board.record()
        recorded = True
    except ReplicatorError as exc:
        if exc.kind is not ErrorKind.SOURCE_SETUP:
            raise
        record, recorded = MigrationRecord(), False
    if not record.on_target:
        on_target = "none"
    elif record.percent >= 100:
        on_target = "all"
    else:
        named = f" + {len(record.threads)} named" if record.threads else ""
        on_target = f"{record.percent}% (stable hash of thread_id){named}"
    last = record.history[-1] if record.history else None
    return {
        "available": True,
        "recorded": recorded,
        "phase": record.phase.value,
        "store": record.store.value,
        "target": record.target,
        "epoch": record.epoch,
        "threads_on_target": on_target,
        "percent_on_target": record.percent if record.on_target else 0,
        "named_threads_on_target": sorted(record.threads),
        "shadow_writes_to_source": record.shadow_to_source,
        # Threads on the target kept on the source until the target holds all their writes.
        "threads_held_on_source": (
            len(held_behind(board, state, record)) if state is not None and recorded else None
        ),
        "last_pause_ms": record.pause_ms,
        "switched_at": record.switched_at,
        "last_change": last,
        "history": list(record.history),
    }


def open_switchboard(config: Config, *, autocreate: bool = False) -> Switchboard | None:
    """The source's switchboard, or None when the source kind has none."""
    try:
        return make_switchboard(config.source, autocreate=autocreate)
    except ReplicatorError as exc:
        if exc.kind is ErrorKind.CONFIG:
            return None
        raise


def _progress(source: dict[str, Any], now: float) -> dict[str, Any]:
    """Rate and ETA of a running initial copy, from its persisted progress."""
    rows, total = int(source.get("rows", 0)), int(source.get("total", 0))
    started, updated = float(source.get("started_at") or 0), float(source.get("updated_at") or 0)
    running = SnapshotState.parse(source.get("snapshot")) is SnapshotState.RUNNING
    if not running or not started or updated <= started or not rows:
        return {"rows_per_second": None, "eta_seconds": None}
    rate = rows / (updated - started)
    return {"rows_per_second": round(rate, 1), "eta_seconds": round(max(0, total - rows) / rate, 1)}


def _applied(positions: dict[int, dict[str, Any]], partition: int) -> int:
    return int((positions.get(partition) or {}).get(POSITION) or 0)


def _data_events(first: int, end: int, controls: OffsetLog | None, batches: OffsetLog | None = None) -> int:
    """Data events in the records [first, end): the records that are not control records, plus
    the events beyond the first of those known to hold several."""
    if end <= first:
        return 0
    records = (end - first) - (controls.weight(first, end) if controls is not None else 0)
    return records + (batches.weight(first, end) if batches is not None else 0)


def applied_floor(state: StateStore, config: Config, partitions: list[int]) -> int:
    """The source position below which every target applied everything, everywhere (0: unknown)."""
    if not partitions:
        return 0
    floor: int | None = None
    for target in config.targets:
        positions = applier_positions(state, target.name)
        for partition in partitions:
            applied = _applied(positions, partition)
            floor = applied if floor is None else min(floor, applied)
    return floor or 0


def collect(
    config: Config,
    state: StateStore,
    head: int,
    slot: dict[str, Any],
    live: Live | None = None,
    migration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole report; ``slot`` is the source's ``describe()`` (the key keeps its first name)."""
    now = time.time()
    fmt = position_format(config.source)
    source = state.get(SOURCE_STATE) or {}
    snapshot = SnapshotState.parse(source.get("snapshot"))
    publisher = state.get(PUBLISHER_STATE) or {}
    produced = {int(k): int(v) for k, v in (publisher.get("produced") or {}).items()}
    if live is not None:
        produced.update(live.produced)
    partitions = [int(p) for p in publisher.get("partitions") or sorted(produced)]
    in_app = captured_in_app(config.source)
    if in_app:  # the apps publish; the head is what the topic holds (replicator.memory_status)
        from replicator.memory_status import topic_end

        produced = topic_end(config.kafka)
        partitions, snapshot = sorted(produced), SnapshotState.DONE
        slot = {**slot, "log_end": {str(p): o for p, o in produced.items()}}
    controls = live.control_offsets if live is not None else {}
    batched = live.batch_offsets if live is not None else {}
    targets: dict[str, Any] = {}
    caught_up = bool(partitions) and snapshot is SnapshotState.DONE
    for target in config.targets:
        positions = applier_positions(state, target.name)
        per_partition: dict[str, Any] = {}
        lag_events = 0
        for p in partitions:
            applied_offset = int((positions.get(p) or {}).get("offset", 0))
            waiting = _data_events(applied_offset, produced.get(p, 0), controls.get(p), batched.get(p))
            lag_events += waiting
            per_partition[str(p)] = {
                "produced": produced.get(p, 0),
                "applied": applied_offset,
                "lag_events": waiting,
                "applied_lsn": fmt(_applied(positions, p)),
                "applied_position": _applied(positions, p),
            }
        applied = min((_applied(positions, p) for p in partitions), default=0)
        behind = [
            p
            for p in partitions
            if (
                int((positions.get(p) or {}).get("offset", 0)) < produced.get(p, 0)
                if in_app  # offsets: positions of several app processes are not comparable
                else _applied(positions, p) < head
            )
        ]
        oldest = min(
            (float(positions[p].get("commit_ts") or 0) for p in behind if p in positions), default=0.0
        )
        dead = state.get(deadletter_state_name(target.name)) or {}
        members = group_members(state, target.name, now)
        target_caught_up = bool(partitions) and not behind
        caught_up = caught_up and target_caught_up
        targets[target.name] = {
            "kind": target.kind,
            "caught_up": target_caught_up,
            "applied_lsn": fmt(applied),
            "applied_position": applied,
            "events_applied": sum(int(v.get("events", 0)) for v in positions.values()),
            "lag": {
                "events": lag_events,
                "bytes": max(0, head - applied),
                "seconds": round(max(0.0, now - oldest), 3) if behind and oldest else 0.0,
            },
            "dead_letters": {
                "count": int(dead.get("count", 0)),
                "paused_threads": dead.get("paused_threads", []),
                "recent": dead.get("recent", [])[-10:],
                "topic": dead.get("topic", f"{config.kafka.topic}.dlq"),
            },
            "partitions": per_partition,
            "members": members,
        }
    confirmed = int(publisher.get(POSITION) or 0)
    report: dict[str, Any] = {
        "caught_up": caught_up,
        "taken_at": now,
        "source": {
            "kind": config.source.kind,
            "head_lsn": fmt(head),
            "head_position": head,
            "slot": slot,
            "snapshot": {
                "state": snapshot.value,
                "rows": source.get("rows", 0),
                "total_estimate": source.get("total", 0),
                "bytes": source.get("bytes", 0),
                **_progress(source, now),
            },
        },
        "lag": {
            "capture": {"bytes": slot.get("lag_bytes", max(0, head - confirmed))},
            "publish": {"records": sum(produced.values()), "confirmed_lsn": fmt(confirmed)},
            "apply": {name: t["lag"] for name, t in targets.items()},
        },
        "targets": targets,
    }
    if migration is not None:
        report["migration"] = migration
    if live is not None:
        report["stages"] = live.stages
    return report


def judge_idle_source(report: dict[str, Any], source: Source) -> dict[str, Any]:
    """With no pipeline carrying the head marker (the daemon stopped), a target is still caught
    up when the source holds no change committed after what the target applied: asked of the
    source itself when it can tell (``PostgresSource.unapplied_after``, a peek at the idle slot)."""
    unapplied_after = getattr(source, "unapplied_after", None)
    if report["caught_up"] or unapplied_after is None:
        return report
    if report["source"]["snapshot"]["state"] != SnapshotState.DONE or not report["targets"]:
        return report
    all_caught_up = True
    for target in report["targets"].values():
        applied = [int(p["applied_position"]) for p in target["partitions"].values()]
        if not target["caught_up"] and applied and unapplied_after(min(applied)) is False:
            target["caught_up"] = True
            target["caught_up_by"] = "no daemon streams; the slot holds nothing newer than what was applied"
        all_caught_up = all_caught_up and bool(target["caught_up"])
    report["caught_up"] = all_caught_up
    return report


def recheck_caught_up(report: dict[str, Any], head: int, exact_backlog: bool = False) -> dict[str, Any]:
    """The same report, with ``caught_up`` judged against an earlier ``head``.

    A running daemon's report compares with the head it sampled; a command that started
    earlier asks whether everything committed when *it* started is applied. With
    ``exact_backlog`` (the daemon knows which records were heartbeats) a target with data
    records produced but not applied is never caught up, whatever the head says: the head
    was sampled a second ago and the backlog may be younger.
    """
    all_caught_up = report["source"]["snapshot"]["state"] == SnapshotState.DONE and bool(report["targets"])
    for target in report["targets"].values():
        partitions = target["partitions"].values()
        done = bool(partitions) and all(int(p["applied_position"]) >= head for p in partitions)
        # A source captured in the app (its head is the topic's end, "log_end") is judged by that.
        in_app = "log_end" in (report["source"].get("slot") or {})
        if (exact_backlog or in_app) and target["lag"]["events"] > 0:
            done = False
        target["caught_up"] = done
        all_caught_up = all_caught_up and done
    report["caught_up"] = all_caught_up
    return report
