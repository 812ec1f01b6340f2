"""The publisher's per-partition logs of notable offsets, which status counts lag in events by."""

from __future__ import annotations

import random

from replicator.offset_log import OffsetLog


def test_weights_in_a_range_of_offsets() -> None:
    log = OffsetLog.of([(2, 36), (6, 4), (11, 9)])
    assert log.weight(0, 12) == 49
    assert log.weight(2, 6) == 36, "first is included, end is not"
    assert log.weight(3, 11) == 4
    assert log.weight(7, 11) == 0
    assert log.weight(12, 20) == 0
    assert log.weight(10, 2) == 0, "an empty range"


def test_only_the_newest_are_kept_and_their_weights_stay_exact() -> None:
    rng = random.Random(7)
    log = OffsetLog(keep=100)
    entries: list[tuple[int, int]] = []
    offset = 0
    for _ in range(1000):
        offset += rng.randint(1, 5)
        weight = rng.randint(1, 40)
        log.add(offset, weight)
        entries.append((offset, weight))
        assert 100 <= len(log) <= 125 or len(entries) < 100
        kept = entries[-len(log) :]
        assert log.items() == kept
        first = rng.randint(kept[0][0], offset + 1)
        end = rng.randint(first, offset + 2)
        assert log.weight(first, end) == sum(w for o, w in kept if first <= o < end)
    assert log.weight(0, entries[-len(log)][0]) == 0, "trimmed offsets count nothing"


def test_a_copy_does_not_change_with_its_original() -> None:
    log = OffsetLog.of([1, 4])
    copy = log.copy()
    log.add(9)
    assert copy.items() == [(1, 1), (4, 1)]
    assert log.weight(0, 10) == 3 and copy.weight(0, 10) == 2
