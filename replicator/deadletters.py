"""Dead-lettered threads: list them, and release one once its cause is fixed.

An event a target refuses pauses its thread (replicator/applier.py): every later event of the
thread goes to the dead-letter topic too, so the target keeps the thread as it was, never half
updated. Releasing a thread makes it whole again and lets it flow:

1. it is refused while an applier of the target runs (each keeps its paused threads in memory and
   would go on diverting the thread): the target's group must have no live member;
2. the thread is copied whole from the source (``replicator copy``'s path: a thread deletion
   first, so the target's thread becomes exactly the source's); a thread the target still
   refuses stays paused, with the reason;
3. only then is it removed from every paused list of the target (the per-partition documents and
   the summary; the dead letters stay counted, with a ``released`` entry), so the appliers apply
   its later events when they start. Events of it still in the topic replay whole rows over the
   copy, which converges like any replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from replicator.applier import deadletter_state_name, group_members, summarize_dead_letters
from replicator.config import Config
from replicator.migration import Refused
from replicator.state import StateStore


@dataclass
class Released:
    target: str
    released: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # thread -> why it stays paused
    not_paused: list[str] = field(default_factory=list)


def paused(state: StateStore, target: str) -> dict[str, Any]:
    """The target's dead-letter summary: count, paused threads, recent entries with reasons."""
    return state.get(deadletter_state_name(target)) or {"count": 0, "paused_threads": [], "recent": []}


def _documents(state: StateStore, target: str) -> dict[str, dict[str, Any]]:
    summary = deadletter_state_name(target)
    return {
        name: doc
        for name, doc in state.prefixed(summary).items()
        if name == summary or name.startswith(summary + ":")
    }


def _unpause(state: StateStore, target: str, gone: set[str], topic: str) -> None:
    """Remove ``gone`` from every paused list of the target; a partition document left with no
    paused thread has its dead letters resolved (``count`` moves to ``released_count``)."""
    now = time.time()
    summary = deadletter_state_name(target)
    updated = {}
    for name, doc in _documents(state, target).items():
        if name == summary:
            continue  # rebuilt below from the partition documents
        before = list(doc.get("paused_threads") or [])
        if not gone & set(before):
            continue
        left = [t for t in before if t not in gone]
        changed = {
            **doc,
            "paused_threads": left,
            "released": [
                *(doc.get("released") or []),
                *({"thread_id": t, "at": now} for t in sorted(gone & set(before))),
            ][-100:],
        }
        if not left:
            changed["released_count"] = int(doc.get("released_count", 0)) + int(doc.get("count", 0))
            changed["count"] = 0
        updated[name] = changed
    current = state.get(summary) or {}
    legacy_doc = (current.get("legacy") if current.get("per_partition") else current) or {}
    if gone & set(legacy_doc.get("paused_threads") or []):  # written before per-partition documents
        left = [t for t in legacy_doc.get("paused_threads") or [] if t not in gone]
        legacy_doc = {**legacy_doc, "paused_threads": left}
        if not left:
            legacy_doc["released_count"] = int(legacy_doc.get("released_count", 0)) + int(
                legacy_doc.get("count", 0)
            )
            legacy_doc["count"] = 0
        updated[summary] = {**current, "legacy": legacy_doc, "per_partition": True}
    state.put_many(updated)
    summarize_dead_letters(state, target, topic)


def release(config: Config, state: StateStore, target: str, threads: list[str]) -> Released:
    """Copy ``threads`` whole to ``target`` and un-pause those it accepted (module doc)."""
    from replicator.copy import copy

    chosen = config.target(target)
    live = group_members(state, chosen.name)
    if live:
        hosts = ", ".join(f"{m['host']}:{m['pid']}" for m in live)
        raise Refused(
            f"appliers of {chosen.name!r} are running ({hosts}): each keeps its paused threads in "
            "memory; stop `replicator run` (every apply process of this target) and release again"
        )
    result = Released(chosen.name)
    held = set(paused(state, chosen.name).get("paused_threads") or [])
    result.not_paused = sorted(set(threads) - held)
    wanted = sorted(set(threads) & held)
    if not wanted:
        return result
    only = config.model_copy(update={"targets": [chosen]})
    (report,) = copy(only, state, thread_ids=wanted, force=True)
    result.refused = dict(report.failed)
    result.released = [t for t in wanted if t not in report.failed]
    if result.released:
        _unpause(state, chosen.name, set(result.released), f"{config.kafka.topic}.dlq")
    return result


__all__ = ["Released", "paused", "release"]
