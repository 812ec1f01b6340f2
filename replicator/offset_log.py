"""The offsets of one partition's notable records (heartbeats, batched records), each weighed.

Status counts lag in events, not records: it subtracts the heartbeats between the applied offset
and the head and adds the events beyond the first of each batched record. The publisher keeps
the newest of those offsets per partition. Kept as two flat integer arrays, tens of thousands of
them cost a few hundred kilobytes and no Python object each: a list of tuples cost ~100 bytes
per entry, lived for minutes among short-lived objects and kept the allocator's pages from being
returned (bench figure 4), and was copied object by object for every status round.
"""

from __future__ import annotations

import bisect
from array import array


class OffsetLog:
    """Ascending offsets with running totals of their weights; the newest ``keep`` are kept."""

    __slots__ = ("_base", "_offsets", "_totals", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = max(1, keep)
        self._offsets = array("q")
        self._totals = array("q")  # sum of the weights up to and including each offset
        self._base = 0  # sum of the weights of the offsets no longer kept

    def __len__(self) -> int:
        return len(self._offsets)

    def add(self, offset: int, weight: int = 1) -> None:
        """Append ``offset`` (greater than every offset so far) with its weight."""
        self._offsets.append(offset)
        self._totals.append((self._totals[-1] if self._totals else self._base) + weight)
        if len(self._offsets) > self.keep + self.keep // 4:  # trim in steps, not at every add
            drop = len(self._offsets) - self.keep
            self._base = self._totals[drop - 1]
            del self._offsets[:drop]
            del self._totals[:drop]

    def weight(self, first: int, end: int) -> int:
        """The sum of the weights of the kept offsets in ``[first, end)``."""
        low = bisect.bisect_left(self._offsets, first)
        high = bisect.bisect_left(self._offsets, end)
        if high <= low:
            return 0
        return self._totals[high - 1] - (self._totals[low - 1] if low else self._base)

    def items(self) -> list[tuple[int, int]]:
        """(offset, weight) of every kept offset, oldest first: for tests and debugging."""
        previous = [self._base, *self._totals[:-1]]
        return [(o, t - p) for o, t, p in zip(self._offsets, self._totals, previous, strict=True)]

    def copy(self) -> OffsetLog:
        other = OffsetLog(self.keep)
        other._offsets = array("q", self._offsets)
        other._totals = array("q", self._totals)
        other._base = self._base
        return other

    @classmethod
    def of(cls, items: list[tuple[int, int]] | list[int], keep: int = 1 << 62) -> OffsetLog:
        """A log of ``(offset, weight)`` pairs or of offsets of weight 1."""
        log = cls(keep)
        for item in items:
            offset, weight = item if isinstance(item, tuple) else (item, 1)
            log.add(offset, weight)
        return log
