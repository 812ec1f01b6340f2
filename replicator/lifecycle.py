"""The lifecycles of the pipeline as enums, with every allowed transition in one table each.

A state that is persisted keeps the string it always had (``"not started"``, ``"running"``,
``"done"``), so documents written by earlier versions still read back. A move the table does
not allow is a bug in the caller, reported as ``ReplicatorError(INTERNAL)`` naming both ends.
"""

from __future__ import annotations

import enum

from replicator.errors import ErrorKind, ReplicatorError


class SnapshotState(enum.StrEnum):
    """The source's initial copy. Persisted by the source in its own state document."""

    NOT_STARTED = "not started"  # no copy yet (no document, or after a reset)
    RUNNING = "running"  # copying; resumable from the saved cursor
    DONE = "done"  # copied; the source streams from its log

    @classmethod
    def parse(cls, value: object) -> SnapshotState:
        """A persisted value (absent: not started); an unknown one is an error naming it."""
        if value is None:
            return cls.NOT_STARTED
        try:
            return cls(str(value))
        except ValueError:
            raise ReplicatorError(
                ErrorKind.INTERNAL, f"unknown snapshot state {value!r} in the state store"
            ) from None


class StageState(enum.StrEnum):
    """A supervised stage of the daemon (publisher, one applier per target). Not persisted."""

    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"  # failed with a retryable error; rebuilt after a backoff
    STOPPED = "stopped"  # stopped on request
    FAILED = "failed"  # failed for good; the daemon stops


_SNAPSHOT: dict[SnapshotState, frozenset[SnapshotState]] = {
    SnapshotState.NOT_STARTED: frozenset({SnapshotState.RUNNING}),
    # RUNNING -> RUNNING: a chunk confirmed, or the copy started over after the broker lost it.
    SnapshotState.RUNNING: frozenset({SnapshotState.RUNNING, SnapshotState.DONE}),
    # DONE -> DONE: the last chunk and the end of the copy are both confirmed as done.
    # DONE -> RUNNING: the broker lost the copy before any target applied it (see publisher).
    SnapshotState.DONE: frozenset({SnapshotState.DONE, SnapshotState.RUNNING}),
}

_STAGE: dict[StageState, frozenset[StageState]] = {
    StageState.STARTING: frozenset({StageState.RUNNING, StageState.RETRYING, StageState.FAILED}),
    StageState.RUNNING: frozenset({StageState.STOPPED, StageState.RETRYING, StageState.FAILED}),
    StageState.RETRYING: frozenset({StageState.RUNNING, StageState.RETRYING, StageState.FAILED}),
    StageState.STOPPED: frozenset(),
    StageState.FAILED: frozenset(),
}


def snapshot_transition(current: SnapshotState, new: SnapshotState) -> SnapshotState:
    """``new`` when the copy may move there from ``current``; otherwise an INTERNAL error."""
    if new not in _SNAPSHOT[current]:
        raise ReplicatorError(
            ErrorKind.INTERNAL, f"initial copy cannot move from {current.value!r} to {new.value!r}"
        )
    return new


def stage_transition(stage: str, current: StageState, new: StageState) -> StageState:
    """``new`` when stage ``stage`` may move there from ``current``; otherwise an INTERNAL error."""
    if new not in _STAGE[current]:
        raise ReplicatorError(
            ErrorKind.INTERNAL, f"stage {stage} cannot move from {current.value!r} to {new.value!r}"
        )
    return new
