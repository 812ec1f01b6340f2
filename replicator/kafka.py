"""Kafka clients built from config, and the topic the pipeline writes to.

Only the Kafka protocol is assumed. Where the embedded test broker deviates from Apache Kafka
(see ENVIRONMENT.md), the workaround is named here:

- it auto-creates topics with 4 partitions on any metadata request, so the topic is created
  explicitly before any producer or consumer exists, and clients never auto-create;
- its ListOffsets "latest" is wrong, so end offsets are taken from what the publisher
  produced (acks) or a fetch's high watermark, never from ``end_offsets``.
"""

from __future__ import annotations

from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError

log = structlog.get_logger("replicator.kafka")


def _unreachable(config: KafkaConfig, exc: Exception) -> ReplicatorError:
    return ReplicatorError(
        ErrorKind.BROKER_UNREACHABLE,
        f"cannot reach Kafka at {config.bootstrap_servers}: {type(exc).__name__}: {exc}",
    )


def admin(config: KafkaConfig) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(**config.client_options())
    except (KafkaError, OSError) as exc:
        raise _unreachable(config, exc) from None


def ensure_topic(config: KafkaConfig, topic: str | None = None, partitions: int | None = None) -> int:
    """Create the topic (default: the data topic) when missing; return its partition count."""
    topic = topic or config.topic
    wanted = partitions or config.partitions
    client = admin(config)
    try:
        try:
            client.create_topics([NewTopic(topic, wanted, config.replication_factor)], timeout_ms=30_000)
            log.info("topic created", topic=topic, partitions=wanted)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            if "already exists" not in str(exc).lower() and "TopicAlreadyExists" not in type(exc).__name__:
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"cannot create topic {topic!r}: {exc}"
                ) from None
        described = client.describe_topics([topic])
        partitions = len(described[0].get("partitions") or []) if described else 0
    except OSError as exc:
        raise _unreachable(config, exc) from None
    finally:
        client.close()
    if partitions <= 0:
        raise ReplicatorError(ErrorKind.BROKER_UNREACHABLE, f"topic {topic!r} has no partitions")
    if partitions != wanted:
        log.warning(
            "topic partition count differs from config; using the topic's",
            topic=topic,
            configured=wanted,
            actual=partitions,
        )
    return partitions


def producer(config: KafkaConfig) -> KafkaProducer:
    options: dict[str, Any] = {
        **config.client_options(),
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 2,
        "batch_size": 256 * 1024,
        "max_request_size": config.max_message_bytes + 64 * 1024,
        "allow_auto_create_topics": False,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "max_block_ms": 60_000,
    }
    if config.compression_type:
        options["compression_type"] = config.compression_type
    try:
        return KafkaProducer(**options)
    except (KafkaError, OSError) as exc:
        raise _unreachable(config, exc) from None


def consumer(config: KafkaConfig, group_id: str, **overrides: Any) -> KafkaConsumer:
    options: dict[str, Any] = {
        **config.client_options(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "allow_auto_create_topics": False,
        "session_timeout_ms": config.session_timeout_ms,
        "heartbeat_interval_ms": max(1000, config.session_timeout_ms // 4),
        "max_poll_records": config.max_poll_records,
        "max_poll_interval_ms": 600_000,
        "max_partition_fetch_bytes": max(1024 * 1024, config.max_message_bytes + 64 * 1024),
        "fetch_max_bytes": 64 * 1024 * 1024,
        "isolation_level": "read_committed",
        **overrides,
    }
    try:
        return KafkaConsumer(**options)
    except (KafkaError, OSError) as exc:
        raise _unreachable(config, exc) from None


def partition_of(key: str, partitions: list[int] | tuple[int, ...]) -> int:
    """The partition the default partitioner (murmur2 of the key, as the Java client and
    kafka-python do) gives a keyed record: where a thread's changes go."""
    from kafka.partitioner.default import murmur2

    ordered = sorted(partitions)
    return ordered[(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % len(ordered)]
