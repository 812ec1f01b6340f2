"""A bench-side prototype of a publisher change that is not in the product, measured in figure 2.

Nothing here is used by the product, and no figure's headline number uses it: the prototype runs
next to the unchanged publisher in the same run, on the same WAL (its own slot created at the same
LSN), so its row of results.md compares like with like. It is the smallest code that shows the
effect.

``FastPublisher``: the publisher's per-record cost in kafka-python (see the class).

(The source-side prototype that was here, msgspec JSON/JSONB decoding and tuple messages in
pgoutput, is in the product since commit 20f128c, as msgspec decoding and ``msgspec.Struct``
messages; figure 2 measures it as the source itself.)
"""

from __future__ import annotations

import os
import threading
from typing import Any

from replicator.publisher import Publisher


class FastPublisher(Publisher):
    """The publisher with a partition cache and a producer that batches longer.

    * Partition per thread id computed once (kafka-python's default partitioner runs a pure-Python
      murmur2 for every record) and passed explicitly: the same partition Java's and
      kafka-python's default partitioner pick, so per-thread order and placement do not change.
    * ``linger_ms`` (default 2, here ``LINGER_MS``): with 2 ms, kafka-python starts a new batch per
      partition every couple of milliseconds and wakes its sender thread for each one, which
      contends for the GIL with the publisher thread. The publisher already flushes on every idle
      moment and at least every ``flush_interval_s``, so a longer linger adds no latency at rest.
    """

    LINGER_MS = int(os.environ.get("LGR_BENCH_LINGER_MS", "20"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partition_of: dict[bytes, int] = {}

    def run(self, stop: threading.Event) -> None:
        from kafka import KafkaProducer

        from replicator import kafka as kafka_module

        linger = self.LINGER_MS
        module: Any = kafka_module
        original = module.KafkaProducer
        module.KafkaProducer = lambda **options: KafkaProducer(**{**options, "linger_ms": linger})
        try:
            super().run(stop)
        finally:
            module.KafkaProducer = original

    def _send(
        self, producer: Any, record: Any, partition: int | None, unit: Any = None, events: int = 1
    ) -> None:
        if partition is None and record.key is not None and self.stats.partitions:
            partition = self._partition_of.get(record.key)
            if partition is None:
                from kafka.partitioner.default import murmur2

                index = (murmur2(record.key) & 0x7FFFFFFF) % len(self.stats.partitions)
                partition = self._partition_of[record.key] = self.stats.partitions[index]
                if len(self._partition_of) > 100_000:
                    self._partition_of.clear()
        super()._send(producer, record, partition, unit, events)
