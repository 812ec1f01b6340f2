"""``partition_of`` gives a thread the partition the producer's default partitioner gives its
records: the routing saver waits on that partition after a cutover, so they must agree."""

from __future__ import annotations

from typing import Any

from kafka.partitioner.default import DefaultPartitioner

from replicator.kafka import partition_of


class _Cluster:
    """The two questions DefaultPartitioner asks of the cluster metadata."""

    def __init__(self, partitions: list[int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions)


def test_the_same_partition_as_the_producer() -> None:
    partitioner: Any = DefaultPartitioner()
    for partitions in ([0], [0, 1, 2, 3], list(range(12)), [3, 1, 2, 0]):
        cluster = _Cluster(partitions)
        for thread_id in [f"thread-{i}" for i in range(500)] + ["ünïcode 👋", ""]:
            key = thread_id.encode("utf-8")
            expected = partitioner.partition("t", thread_id, key, None, None, cluster)
            assert partition_of(thread_id, partitions) == expected, (thread_id, partitions)
