"""Snapshot and stage lifecycles: the allowed moves, the refused ones, the persisted strings."""

from __future__ import annotations

import pytest

from replicator.errors import ErrorKind, ReplicatorError
from replicator.lifecycle import SnapshotState, StageState, snapshot_transition, stage_transition


def test_snapshot_states_read_the_strings_earlier_versions_wrote() -> None:
    assert SnapshotState.parse(None) is SnapshotState.NOT_STARTED
    assert SnapshotState.parse("running") is SnapshotState.RUNNING
    assert SnapshotState.parse("done") is SnapshotState.DONE
    assert [s.value for s in SnapshotState] == ["not started", "running", "done"]
    with pytest.raises(ReplicatorError, match="unknown snapshot state 'paused'") as raised:
        SnapshotState.parse("paused")
    assert raised.value.kind is ErrorKind.INTERNAL


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (SnapshotState.NOT_STARTED, SnapshotState.RUNNING),
        (SnapshotState.RUNNING, SnapshotState.RUNNING),
        (SnapshotState.RUNNING, SnapshotState.DONE),
        (SnapshotState.DONE, SnapshotState.DONE),  # the last chunk, then the end of the copy
        (SnapshotState.DONE, SnapshotState.RUNNING),  # the broker lost the copy: start over
    ],
)
def test_snapshot_moves_allowed(current: SnapshotState, new: SnapshotState) -> None:
    assert snapshot_transition(current, new) is new


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (SnapshotState.NOT_STARTED, SnapshotState.DONE),
        (SnapshotState.DONE, SnapshotState.NOT_STARTED),
        (SnapshotState.RUNNING, SnapshotState.NOT_STARTED),
    ],
)
def test_snapshot_moves_refused(current: SnapshotState, new: SnapshotState) -> None:
    with pytest.raises(ReplicatorError) as raised:
        snapshot_transition(current, new)
    assert raised.value.kind is ErrorKind.INTERNAL
    assert f"from {current.value!r} to {new.value!r}" in str(raised.value)


def test_stage_lifecycle() -> None:
    state = StageState.STARTING
    for new in (StageState.RETRYING, StageState.RETRYING, StageState.RUNNING, StageState.RETRYING):
        state = stage_transition("publisher", state, new)
    assert stage_transition("publisher", state, StageState.FAILED) is StageState.FAILED
    assert stage_transition("x", StageState.RUNNING, StageState.STOPPED) is StageState.STOPPED
    for final in (StageState.STOPPED, StageState.FAILED):
        with pytest.raises(ReplicatorError, match="stage applier:dynamo cannot move from"):
            stage_transition("applier:dynamo", final, StageState.RUNNING)
    assert StageState.RUNNING == "running"  # the status JSON and metrics keep their strings
