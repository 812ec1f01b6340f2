"""The migration record: which store the app uses, where the migration is in its lifecycle.

One record per migration, kept by the source's ``Switchboard`` (for Postgres: one row in the
replicator's schema of the source database) where every app instance (through
``RoutingSaver``) and every command reads it. This module is the record and its rules only; how
it is stored and fenced is the switchboard's job.

``store`` (which store the app reads and writes) is kept apart from ``phase`` (where the
migration is) because ``finished`` can end on either store. ``fencing`` and ``rolling_back``
are committed *before* the fence is taken, so ``status`` shows a switch in progress and a
killed switch leaves a visible trace; routing in those phases stays on the store of the phase
they came from, so a switch that died changes nothing for the app.

A canary moves only some threads: ``threads`` (explicit ids) and ``percent`` (a stable hash of
``thread_id``) say which are on the target while ``store`` is ``target``; a full cutover is
``percent = 100``.

Dual write (``dual_writing``) is for a source whose log cannot be read (no logical
replication): the routing saver itself keeps the target equal, writing every call to the
source and then to the target, while a back-fill copies the history. ``dual_write`` stays set
for the rest of the migration, so that leaving the target (a rollback, an aborted cutover)
returns to dual writing rather than to a pipeline that is not there.
"""

from __future__ import annotations

import enum
import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Any

from replicator.errors import ErrorKind, ReplicatorError

HISTORY_KEPT = 20


class Phase(enum.StrEnum):
    REPLICATING = "replicating"  # the app uses the source; the pipeline keeps the target equal
    DUAL_WRITING = "dual_writing"  # the app reads the source and writes the source, then the target
    FENCING = "fencing"  # a cutover is under way (or died: the app still uses the source)
    CUT_OVER = "cut_over"  # the app uses the target; its writes are shadowed onto the source
    ROLLING_BACK = "rolling_back"  # a rollback is under way (or died: the app still uses the target)
    ROLLED_BACK = "rolled_back"  # back on the source; a later cutover is possible
    FINISHED = "finished"  # rollback window closed: no more shadow writes


class Store(enum.StrEnum):
    SOURCE = "source"
    TARGET = "target"


# The one table of allowed transitions. A phase may go to itself where a command that died
# mid-way is run again (fencing, rolling_back), and cut_over may go to fencing to widen a canary.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.REPLICATING: frozenset({Phase.FENCING, Phase.DUAL_WRITING, Phase.FINISHED}),
    Phase.DUAL_WRITING: frozenset({Phase.FENCING, Phase.FINISHED}),
    Phase.FENCING: frozenset({Phase.FENCING, Phase.CUT_OVER, Phase.REPLICATING, Phase.DUAL_WRITING}),
    Phase.CUT_OVER: frozenset({Phase.FENCING, Phase.ROLLING_BACK, Phase.FINISHED}),
    Phase.ROLLING_BACK: frozenset(
        {Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.DUAL_WRITING, Phase.CUT_OVER}
    ),
    Phase.ROLLED_BACK: frozenset({Phase.FENCING, Phase.FINISHED}),
    Phase.FINISHED: frozenset(),
}

# Where each phase sends the app when a switch is not (or no longer) in progress; fencing
# keeps the store it started from (a canary widened from cut_over stays on the target).
_STORE_OF: dict[Phase, Store] = {
    Phase.REPLICATING: Store.SOURCE,
    Phase.DUAL_WRITING: Store.SOURCE,
    Phase.CUT_OVER: Store.TARGET,
    Phase.ROLLING_BACK: Store.TARGET,
    Phase.ROLLED_BACK: Store.SOURCE,
}


def can_move(current: Phase, new: Phase) -> bool:
    return new in TRANSITIONS[current]


def check_move(current: Phase, new: Phase) -> None:
    if not can_move(current, new):
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (the migration is finished)"
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"the migration is in phase {current.value!r}, which cannot move to {new.value!r}; "
            f"from {current.value!r} it can move to: {allowed}",
        )


def bucket(thread_id: str) -> int:
    """A stable 0..99 bucket of a thread id: the same on every app host, in every release."""
    return int.from_bytes(hashlib.blake2b(thread_id.encode(), digest_size=8).digest(), "big") % 100


@dataclass(frozen=True)
class MigrationRecord:
    phase: Phase = Phase.REPLICATING
    store: Store = Store.SOURCE
    target: str | None = None  # name of the target the app is (or was last) switched to
    epoch: int = 0  # incremented by every committed switch
    percent: int = 100  # share of threads (by ``bucket``) on the target while store is target
    threads: frozenset[str] = frozenset()  # threads on the target besides ``percent``'s
    switched_at: float | None = None
    pause_ms: float | None = None
    # Set by a cutover's flip: a thread reaches the target only once its partition applied the
    # source up to here (the fence's marker), so it waits only for its own partition's backlog.
    drain_position: int | None = None
    drain_partitions: tuple[int, ...] = ()
    dual_write: bool = False  # the routing saver, not a pipeline, keeps the target equal
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def on_target(self) -> bool:
        """Some (or all) threads read and write the target."""
        return self.store is Store.TARGET

    @property
    def partial(self) -> bool:
        return self.on_target and self.percent < 100

    def routes_to_target(self, thread_id: str) -> bool:
        if not self.on_target:
            return False
        return self.percent >= 100 or thread_id in self.threads or bucket(thread_id) < self.percent

    def copies_to_target(self, thread_id: str) -> bool:
        """Dual write: a write of a thread on the source also goes to the target."""
        return self.dual_write and self.phase is not Phase.FINISHED and not self.routes_to_target(thread_id)

    @property
    def source_phase(self) -> Phase:
        """Where leaving the target ends: dual writing again, or rolled back (the pipeline
        goes on keeping the target equal)."""
        return Phase.DUAL_WRITING if self.dual_write else Phase.ROLLED_BACK

    @property
    def shadow_to_source(self) -> bool:
        """Writes on the target are copied onto the source until the rollback window closes."""
        return self.on_target and self.phase is not Phase.FINISHED

    def moved(
        self,
        phase: Phase,
        *,
        target: str | None = None,
        percent: int | None = None,
        threads: frozenset[str] | None = None,
        pause_ms: float | None = None,
        drain_position: int | None = None,
        drain_partitions: tuple[int, ...] = (),
        note: str = "",
        now: float | None = None,
    ) -> MigrationRecord:
        """The record after moving to ``phase`` (checked against the table).

        A change of store or of the threads on the target is a switch: it bumps the epoch and
        stamps the time and the pause.
        """
        check_move(self.phase, phase)
        store = _STORE_OF.get(phase, self.store)
        percent = self.percent if percent is None else percent
        threads = self.threads if threads is None else threads
        if store is Store.SOURCE:
            percent, threads = 100, frozenset()
        drain: tuple[int | None, tuple[int, ...]] = (drain_position, drain_partitions)
        if drain_position is None:
            drain = (None, ()) if store is Store.SOURCE else (self.drain_position, self.drain_partitions)
        switched = (store, percent, threads) != (self.store, self.percent, self.threads)
        now = time.time() if now is None else now
        entry: dict[str, Any] = {"at": round(now, 3), "from": self.phase.value, "to": phase.value}
        if pause_ms is not None:
            entry["pause_ms"] = round(pause_ms, 3)
        if store is Store.TARGET and (percent < 100 or threads):
            entry["percent"], entry["threads"] = percent, len(threads)
        if note:
            entry["note"] = note
        return replace(
            self,
            phase=phase,
            store=store,
            target=target if target is not None else self.target,
            epoch=self.epoch + 1 if switched else self.epoch,
            percent=percent,
            threads=threads,
            switched_at=now if switched else self.switched_at,
            pause_ms=pause_ms if switched else self.pause_ms,
            drain_position=drain[0],
            drain_partitions=tuple(drain[1]),
            dual_write=self.dual_write or phase is Phase.DUAL_WRITING,
            history=(*self.history, entry)[-HISTORY_KEPT:],
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form, for the switchboard's storage and for ``status``."""
        return {
            "phase": self.phase.value,
            "store": self.store.value,
            "target": self.target,
            "epoch": self.epoch,
            "percent": self.percent,
            "threads": sorted(self.threads),
            "switched_at": self.switched_at,
            "pause_ms": self.pause_ms,
            "drain_position": self.drain_position,
            "drain_partitions": list(self.drain_partitions),
            "dual_write": self.dual_write,
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationRecord:
        return cls(
            phase=Phase(data.get("phase", Phase.REPLICATING.value)),
            store=Store(data.get("store", Store.SOURCE.value)),
            target=data.get("target"),
            epoch=int(data.get("epoch", 0)),
            percent=int(data.get("percent", 100)),
            threads=frozenset(data.get("threads") or ()),
            switched_at=data.get("switched_at"),
            pause_ms=data.get("pause_ms"),
            drain_position=data.get("drain_position"),
            drain_partitions=tuple(data.get("drain_partitions") or ()),
            dual_write=bool(data.get("dual_write", False)),
            history=tuple(data.get("history") or ()),
        )


class Refused(Exception):
    """A switch did not happen; the message says why (the record is as it was)."""
