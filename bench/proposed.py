"""Bench-side prototypes of the product changes results.md recommends, measured as "after".

Nothing here is used by the product, and no figure's headline number uses it: each prototype runs
next to the unchanged code in the same run, on the same WAL, so the "before/after" rows of
results.md compare like with like. They are the smallest code that shows the effect; the
recommendations in results.md say what the real change in ``connectors/`` and ``replicator/``
should be.

1. ``patch_source()``: the capture hot path (connectors/sources/postgres):
   - JSONB and JSON columns decoded with ``msgspec.json.decode`` instead of ``json.loads``
     (the checkpoint and metadata of every checkpoint row; same values, about 4x faster);
   - ``RawMessage`` (stream.py) and the per-row pgoutput messages (``Begin``, ``Commit``,
     ``Insert``, ``Update``, ``Delete``) as ``NamedTuple`` classes with the same fields instead of
     frozen dataclasses, whose ``__init__`` sets every field through ``object.__setattr__``.
2. ``FastPublisher``: the publisher's per-record cost in kafka-python (see the class).
"""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

import msgspec

from replicator.publisher import Publisher


def patch_source() -> None:
    """Swap the prototypes into the source modules of this process (call before using them)."""
    from connectors.sources.postgres import pgoutput, stream

    decode = msgspec.json.decode

    def jsonb_binary(data: bytes) -> object:
        if not data or data[0] != 1:
            raise ValueError(f"unsupported jsonb binary version {data[:1]!r}")
        return decode(data[1:])

    def json_any(data: bytes) -> object:
        return decode(data)

    converters: Any = pgoutput._BINARY_CONVERTERS
    converters[3802] = jsonb_binary
    converters[114] = json_any
    text_converters: Any = pgoutput._TEXT_CONVERTERS
    text_converters[3802] = json_any
    text_converters[114] = json_any

    class RawMessage(NamedTuple):
        payload: bytes
        data_start: int
        wal_end: int

    class Begin(NamedTuple):
        final_lsn: int
        commit_ts: float
        xid: int

    class Commit(NamedTuple):
        flags: int
        commit_lsn: int
        end_lsn: int
        commit_ts: float

    class Insert(NamedTuple):
        relation_oid: int
        new: tuple[Any, ...]
        xid: int | None = None

    class Update(NamedTuple):
        relation_oid: int
        old: tuple[Any, ...] | None
        new: tuple[Any, ...]
        old_is_key: bool = False
        xid: int | None = None

    class Delete(NamedTuple):
        relation_oid: int
        old: tuple[Any, ...]
        old_is_key: bool = True
        xid: int | None = None

    stream_module: Any = stream
    stream_module.RawMessage = RawMessage
    module: Any = pgoutput
    module.Begin, module.Commit = Begin, Commit
    module.Insert, module.Update, module.Delete = Insert, Update, Delete


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

    def _send(self, producer: Any, record: Any, partition: int | None) -> None:
        if partition is None and record.key is not None and self.stats.partitions:
            partition = self._partition_of.get(record.key)
            if partition is None:
                from kafka.partitioner.default import murmur2

                index = (murmur2(record.key) & 0x7FFFFFFF) % len(self.stats.partitions)
                partition = self._partition_of[record.key] = self.stats.partitions[index]
                if len(self._partition_of) > 100_000:
                    self._partition_of.clear()
        super()._send(producer, record, partition)
