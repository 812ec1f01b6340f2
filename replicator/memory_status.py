"""The head of a source captured in the app: how far the topic reaches, per partition.

Several app processes publish to the topic, each with its own clock, and none keeps its last
position where the others (or ``replicator status``) could read it. What every process can read
is the topic itself: its end offset per partition is everything any app had published when it
was read, and an applier's committed offset says how much of it a target applied. So for such a
source ``status`` compares offsets, not source positions (``replicator.status.collect``).

The end offset is the high watermark of a fetch, not ``end_offsets``: the embedded test broker
answers ListOffsets "latest" wrongly (ENVIRONMENT.md), a fetch's high watermark is right on
every broker. The consumer seeks to the reported end first, so the fetch reads at most the last
batch (none on Apache Kafka).
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError

_FETCH_BYTES = 64 * 1024


def topic_end(config: KafkaConfig, timeout_s: float = 10.0) -> dict[int, int]:
    """Partition -> next offset to be written (the high watermark); {} when the topic is missing."""
    try:
        consumer = KafkaConsumer(
            **config.client_options(),
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            fetch_max_bytes=_FETCH_BYTES,
            max_partition_fetch_bytes=_FETCH_BYTES,
            isolation_level="read_uncommitted",
        )
    except (KafkaError, OSError) as exc:
        raise ReplicatorError(
            ErrorKind.BROKER_UNREACHABLE, f"cannot reach Kafka at {config.bootstrap_servers}: {exc}"
        ) from None
    try:
        partitions = consumer.partitions_for_topic(config.topic) or set()
        tps = [TopicPartition(config.topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        consumer.assign(tps)
        consumer.seek_to_end()
        deadline = time.monotonic() + timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE,
                    f"Kafka at {config.bootstrap_servers} did not answer a fetch of {config.topic!r} "
                    f"within {timeout_s:g}s",
                )
            consumer.poll(timeout_ms=100, max_records=1)
        return {tp.partition: int(consumer.highwater(tp) or 0) for tp in tps}
    except KafkaError as exc:
        raise ReplicatorError(
            ErrorKind.BROKER_UNREACHABLE, f"cannot read the end of topic {config.topic!r}: {exc}"
        ) from None
    finally:
        consumer.close(autocommit=False)
