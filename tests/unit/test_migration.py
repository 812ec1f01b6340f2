"""Migration phases: the transition table, where each phase routes each thread, shadow writes."""

from __future__ import annotations

import pytest

from replicator.cutover import Scope
from replicator.errors import ReplicatorError
from replicator.migration import TRANSITIONS, MigrationRecord, Phase, Store, bucket, can_move, check_move


def test_every_phase_has_a_row() -> None:
    assert set(TRANSITIONS) == set(Phase)
    for targets in TRANSITIONS.values():
        assert targets <= set(Phase)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (Phase.REPLICATING, Phase.FENCING),
        (Phase.FENCING, Phase.CUT_OVER),
        (Phase.FENCING, Phase.REPLICATING),  # a refused cutover
        (Phase.FENCING, Phase.FENCING),  # a cutover killed mid-way is run again
        (Phase.CUT_OVER, Phase.FENCING),  # a canary widened
        (Phase.CUT_OVER, Phase.ROLLING_BACK),
        (Phase.ROLLING_BACK, Phase.ROLLED_BACK),
        (Phase.ROLLING_BACK, Phase.CUT_OVER),  # a refused rollback
        (Phase.ROLLED_BACK, Phase.FENCING),  # cut over again later
        (Phase.CUT_OVER, Phase.FINISHED),
        (Phase.ROLLED_BACK, Phase.FINISHED),
        (Phase.REPLICATING, Phase.DUAL_WRITING),
        (Phase.DUAL_WRITING, Phase.FENCING),
        (Phase.FENCING, Phase.DUAL_WRITING),  # a refused cutover of a dual-write migration
        (Phase.ROLLING_BACK, Phase.DUAL_WRITING),
        (Phase.DUAL_WRITING, Phase.FINISHED),  # abandoned: the app stays on the source
    ],
)
def test_allowed(current: Phase, new: Phase) -> None:
    assert can_move(current, new)
    check_move(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (Phase.REPLICATING, Phase.CUT_OVER),  # never without the fence
        (Phase.REPLICATING, Phase.ROLLING_BACK),
        (Phase.CUT_OVER, Phase.ROLLED_BACK),  # never without the fence
        (Phase.FINISHED, Phase.REPLICATING),
        (Phase.FINISHED, Phase.FENCING),
        (Phase.DUAL_WRITING, Phase.CUT_OVER),  # never without the fence
        (Phase.CUT_OVER, Phase.DUAL_WRITING),
    ],
)
def test_refused_with_a_reason(current: Phase, new: Phase) -> None:
    assert not can_move(current, new)
    with pytest.raises(ReplicatorError, match=f"phase '{current.value}'.*cannot move to '{new.value}'"):
        check_move(current, new)
    with pytest.raises(ReplicatorError):
        store = Store.TARGET if current is Phase.CUT_OVER else Store.SOURCE
        MigrationRecord(phase=current, store=store).moved(new)


def _walk(*phases: Phase, **changes: object) -> MigrationRecord:
    record = MigrationRecord()
    for phase in phases:
        record = record.moved(phase, now=1.0, **changes)  # type: ignore[arg-type]
    return record


def test_each_move_routes_the_app_and_counts_switches() -> None:
    fencing = _walk(Phase.FENCING)
    assert (fencing.store, fencing.epoch) == (Store.SOURCE, 0)  # fencing: still the source
    cut = fencing.moved(Phase.CUT_OVER, target="dynamo", pause_ms=3.5)
    assert (cut.store, cut.target, cut.epoch, cut.pause_ms) == (Store.TARGET, "dynamo", 1, 3.5)
    rolling = cut.moved(Phase.ROLLING_BACK)
    assert (rolling.store, rolling.epoch) == (Store.TARGET, 1)  # rolling back: still the target
    back = rolling.moved(Phase.ROLLED_BACK, pause_ms=1.0)
    assert (back.store, back.epoch, back.target) == (Store.SOURCE, 2, "dynamo")
    assert cut.moved(Phase.FINISHED).store is Store.TARGET  # finish keeps the store
    assert back.moved(Phase.FINISHED).store is Store.SOURCE
    aborted = fencing.moved(Phase.REPLICATING, note="aborted: lag")
    assert aborted.epoch == 0 and aborted.history[-1]["note"] == "aborted: lag"
    assert [h["to"] for h in back.history] == ["fencing", "cut_over", "rolling_back", "rolled_back"]


def test_history_is_bounded() -> None:
    record = MigrationRecord()
    for _ in range(30):
        record = record.moved(Phase.FENCING).moved(Phase.REPLICATING)
    assert len(record.history) == 20


def test_record_survives_its_json_form() -> None:
    record = _walk(Phase.FENCING).moved(
        Phase.CUT_OVER, target="t", percent=10, threads=frozenset({"a", "b"}), pause_ms=2.0
    )
    assert MigrationRecord.from_dict(record.as_dict()) == record


def test_shadow_writes_only_while_a_rollback_is_possible() -> None:
    assert not MigrationRecord().on_target
    assert not MigrationRecord().shadow_to_source
    on_target = MigrationRecord(phase=Phase.CUT_OVER, store=Store.TARGET)
    assert on_target.on_target and on_target.shadow_to_source
    rolling = MigrationRecord(phase=Phase.ROLLING_BACK, store=Store.TARGET)
    assert rolling.shadow_to_source
    done = MigrationRecord(phase=Phase.FINISHED, store=Store.TARGET)
    assert done.on_target and not done.shadow_to_source


def test_a_canary_routes_a_stable_share_of_threads() -> None:
    threads = [f"thread-{i}" for i in range(10_000)]
    assert [bucket(t) for t in threads[:50]] == [bucket(t) for t in threads[:50]]  # stable
    ten = _walk(Phase.FENCING).moved(Phase.CUT_OVER, target="t", percent=10)
    fifty = ten.moved(Phase.FENCING).moved(Phase.CUT_OVER, percent=50)
    on_ten = {t for t in threads if ten.routes_to_target(t)}
    on_fifty = {t for t in threads if fifty.routes_to_target(t)}
    assert 800 < len(on_ten) < 1200 and 4500 < len(on_fifty) < 5500
    assert on_ten <= on_fifty  # widening never moves a thread back
    assert fifty.epoch == 2 and fifty.partial
    named = _walk(Phase.FENCING).moved(Phase.CUT_OVER, target="t", percent=0, threads=frozenset({"vip"}))
    assert named.routes_to_target("vip") and not any(named.routes_to_target(t) for t in threads)
    back = fifty.moved(Phase.ROLLING_BACK).moved(Phase.ROLLED_BACK)
    assert not any(back.routes_to_target(t) for t in threads)
    assert (back.percent, back.threads) == (100, frozenset())


def test_a_scope_only_widens() -> None:
    ten = _walk(Phase.FENCING).moved(Phase.CUT_OVER, target="t", percent=10, threads=frozenset({"a"}))
    assert Scope(5, frozenset({"b"})).widen(ten) == Scope(10, frozenset({"a", "b"}))
    assert Scope(50).widen(MigrationRecord()) == Scope(50)
    with pytest.raises(ReplicatorError, match=r"0\.\.100"):
        Scope(101)
    with pytest.raises(ReplicatorError, match="nothing to cut over"):
        Scope(0)


def test_dual_write_copies_source_threads_to_the_target_until_finished() -> None:
    dual = _walk(Phase.DUAL_WRITING, target="t")
    assert dual.dual_write and dual.store is Store.SOURCE and dual.copies_to_target("any")
    assert not MigrationRecord().copies_to_target("any")  # the pipeline keeps the target equal
    canary = dual.moved(Phase.FENCING).moved(Phase.CUT_OVER, percent=10)
    moved = next(f"t{i}" for i in range(1000) if bucket(f"t{i}") < 10)
    stays = next(f"t{i}" for i in range(1000) if bucket(f"t{i}") >= 10)
    assert canary.routes_to_target(moved) and not canary.copies_to_target(moved)
    assert canary.copies_to_target(stays) and canary.shadow_to_source
    # Leaving the target returns to dual writing: there is no pipeline to keep the target equal.
    assert canary.source_phase is Phase.DUAL_WRITING
    back = canary.moved(Phase.ROLLING_BACK).moved(canary.source_phase)
    assert (back.phase, back.store, back.copies_to_target(moved)) == (Phase.DUAL_WRITING, Store.SOURCE, True)
    assert MigrationRecord.from_dict(back.as_dict()) == back
    assert not back.moved(Phase.FINISHED).copies_to_target(moved)
    assert MigrationRecord().source_phase is Phase.ROLLED_BACK
