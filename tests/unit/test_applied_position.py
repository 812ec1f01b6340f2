"""Which source position an applied event proves: the base of ``status``' caught_up."""

from __future__ import annotations

from replicator.applier import applied_below
from replicator.events import Control, ControlKind, SourceMeta, ThreadDeletion

CONSISTENT_POINT = 1000


def test_the_initial_copy_proves_nothing_until_its_end_marker() -> None:
    copy = SourceMeta(position=CONSISTENT_POINT, snapshot=True)
    lsn = applied_below(0, Control(kind=ControlKind.SNAPSHOT_START, source=copy))
    assert lsn == 0
    lsn = applied_below(lsn, ThreadDeletion(thread_id="t", source=copy))  # a row of the copy
    assert lsn == 0, "a half-applied copy must not count as everything below the consistent point"
    assert applied_below(lsn, Control(kind=ControlKind.SNAPSHOT_END, source=copy)) == CONSISTENT_POINT


def test_a_change_proves_below_its_commit_and_a_heartbeat_its_whole_position() -> None:
    change = ThreadDeletion(thread_id="t", source=SourceMeta(position=2000))
    assert applied_below(CONSISTENT_POINT, change) == 1999  # its transaction may go on next batch
    beat = Control(kind=ControlKind.HEARTBEAT, source=SourceMeta(position=2500))
    assert applied_below(1999, beat) == 2500
    assert applied_below(3000, change) == 3000  # never backwards
