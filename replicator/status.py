"""Where every change is, from persisted positions: works with or without a running daemon.

Positions per stage: source head (WAL flush LSN), confirmed (slot), produced (acked offsets per
partition, as the publisher saw them: the embedded broker's ListOffsets is wrong, and acks are
exact everywhere), applied per target and partition (committed offset and source LSN).
A target has caught up when, on every partition, it applied everything below the head that
the source had when the status was taken; heartbeats carry that promise onto idle partitions.
"""

from __future__ import annotations

import time
from typing import Any

from connectors.sources.postgres.setup import connect, format_lsn, parse_lsn, slot_info
from replicator.config import Config
from replicator.state import PUBLISHER_STATE, SOURCE_STATE, StateStore, applier_state_name


def source_head(config: Config) -> tuple[int, dict[str, Any]]:
    """The source's WAL flush position now, and its slot as Postgres reports it."""
    with connect(config.source.dsn.get_secret_value(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        head = parse_lsn(row[0] if row else None) or 0
        info = slot_info(conn, config.source.slot)
    slot: dict[str, Any] = {"name": config.source.slot, "exists": info is not None}
    if info is not None:
        confirmed = info.confirmed_flush_lsn or 0
        slot.update(
            active=info.active,
            wal_status=info.wal_status,
            confirmed_flush_lsn=format_lsn(confirmed),
            retained_bytes=max(0, head - (info.restart_lsn or head)),
            lag_bytes=max(0, head - confirmed),
        )
    return head, slot


def collect(config: Config, state: StateStore, head: int, slot: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    source = state.get(SOURCE_STATE) or {}
    publisher = state.get(PUBLISHER_STATE) or {}
    produced = {int(k): int(v) for k, v in (publisher.get("produced") or {}).items()}
    partitions = [int(p) for p in publisher.get("partitions") or sorted(produced)]
    targets: dict[str, Any] = {}
    caught_up = bool(partitions) and source.get("snapshot") == "done"
    for target in config.targets:
        applied = (state.get(applier_state_name(target.name)) or {}).get("partitions") or {}
        positions = {int(p): v for p, v in applied.items()}
        lag_events = sum(
            max(0, produced.get(p, 0) - int(positions.get(p, {}).get("offset", 0))) for p in partitions
        )
        applied_lsn = min((int(positions.get(p, {}).get("lsn", 0)) for p in partitions), default=0)
        behind = [p for p in partitions if int(positions.get(p, {}).get("lsn", 0)) < head]
        oldest = min(
            (float(positions[p].get("commit_ts") or 0) for p in behind if p in positions), default=0.0
        )
        target_caught_up = bool(partitions) and not behind
        caught_up = caught_up and target_caught_up
        targets[target.name] = {
            "kind": target.kind,
            "caught_up": target_caught_up,
            "applied_lsn": format_lsn(applied_lsn),
            "events_applied": int((state.get(applier_state_name(target.name)) or {}).get("events", 0)),
            "lag": {
                "events": lag_events,
                "bytes": max(0, head - applied_lsn),
                "seconds": round(max(0.0, now - oldest), 3) if behind and oldest else 0.0,
            },
            "partitions": {
                str(p): {
                    "produced": produced.get(p, 0),
                    "applied": int(positions.get(p, {}).get("offset", 0)),
                    "lag_events": max(0, produced.get(p, 0) - int(positions.get(p, {}).get("offset", 0))),
                }
                for p in partitions
            },
        }
    confirmed_lsn = int(publisher.get("confirmed_lsn") or 0)
    return {
        "caught_up": caught_up,
        "taken_at": now,
        "source": {
            "kind": config.source.kind,
            "head_lsn": format_lsn(head),
            "slot": slot,
            "snapshot": {
                "state": source.get("snapshot", "not started"),
                "rows": source.get("rows", 0),
                "total_estimate": source.get("total", 0),
            },
        },
        "lag": {
            "capture": {"bytes": slot.get("lag_bytes", max(0, head - confirmed_lsn))},
            "publish": {"events": sum(produced.values()), "confirmed_lsn": format_lsn(confirmed_lsn)},
            "apply": {name: t["lag"] for name, t in targets.items()},
        },
        "targets": targets,
    }
