"""Kafka clients built from config, and the topic the pipeline writes to.

Only the Kafka protocol is assumed. Where the embedded test broker deviates from Apache Kafka
(see ENVIRONMENT.md), the workaround is named here:

- it auto-creates topics with 4 partitions on any metadata request, so the topic is created
  explicitly before any producer or consumer exists, and clients never auto-create;
- its ListOffsets "latest" is wrong, so end offsets are taken from what the publisher
  produced (acks) or a fetch's high watermark, never from ``end_offsets``;
- its DescribeConfigs drops the connection when the request names config keys (the broker logs
  ``StringWithoutLength``) and reports every topic config as a default, so kafka-python's
  default filter ("modified") returns nothing: a topic's configs are asked for unfiltered, with
  ``config_filter="all"``. It reports only the configs the topic was created with; when the
  answer has no ``cleanup.policy`` (a topic it auto-created), the compaction check is skipped
  with a warning that says so, never passed silently.

Production topic settings (docs/kafka.md): the data topic is never compacted (refused in config
and checked on an existing topic), replication factor 3 with ``min.insync.replicas`` 2 (warned
when a remote cluster's topic has fewer replicas), retention longer than the longest outage.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
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
    """Create the topic (default: the data topic) when missing, with ``config.topic_config``;
    check an existing one is not compacted; return its partition count."""
    topic = topic or config.topic
    wanted = partitions or config.partitions
    client = admin(config)
    created = False
    try:
        try:
            new = NewTopic(topic, wanted, config.replication_factor, topic_configs=dict(config.topic_config))
            client.create_topics([new], timeout_ms=30_000)
            created = True
            log.info("topic created", topic=topic, partitions=wanted, configs=config.topic_config)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            if "already exists" not in str(exc).lower() and "TopicAlreadyExists" not in type(exc).__name__:
                raise ReplicatorError(
                    ErrorKind.BROKER_UNREACHABLE, f"cannot create topic {topic!r}: {exc}"
                ) from None
        described = client.describe_topics([topic])
        partition_list = (described[0].get("partitions") or []) if described else []
        partitions = len(partition_list)
        if not created:
            _check_existing_topic(client, config, topic)
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
    _check_replication(config, topic, partition_list)
    return partitions


# Each production warning once per process and topic: ensure_topic runs for every stage.
_warned: set[tuple[str, ...]] = set()
_warned_lock = threading.Lock()


def _warn_once(key: tuple[str, ...], event: str, **fields: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(event, **fields)


def _is_local(bootstrap_servers: str) -> bool:
    """Every bootstrap address is this machine (a development broker, where one replica is fine)."""
    hosts = []
    for server in bootstrap_servers.split(","):
        server = server.strip()
        if not server:
            continue
        host = server[1:].split("]")[0] if server.startswith("[") else server.rsplit(":", 1)[0]
        hosts.append(host.lower())
    return bool(hosts) and all(h in ("localhost", "::1") or h.startswith("127.") for h in hosts)


def _check_replication(config: KafkaConfig, topic: str, partitions: list[dict[str, Any]]) -> None:
    replicas = [len(p.get("replica_nodes") or p.get("replicas") or []) for p in partitions]
    factor = min(replicas) if replicas else 0
    if 0 < factor < 3 and not _is_local(config.bootstrap_servers):
        _warn_once(
            ("replication", config.bootstrap_servers, topic),
            "topic has fewer than 3 replicas: losing one broker can lose or stop the replication stream",
            topic=topic,
            replication_factor=factor,
            advice="replication_factor = 3 with topic_config min.insync.replicas = '2' (docs/kafka.md)",
        )


def topic_configs(client: Any, topic: str) -> dict[str, str] | None:
    """The topic's configs as the broker reports them, ``None`` when it would not say.

    Asked unfiltered (no key names) with ``config_filter="all"``: see the module docstring.
    """
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    try:
        try:
            described = client.describe_configs([resource], config_filter="all")
        except TypeError:  # kafka-python 2.x: no config_filter, a list of responses
            described = client.describe_configs([resource])
    except (KafkaError, OSError) as exc:
        _warn_once(
            ("describe_configs", topic),
            "cannot read the topic's configs (DescribeConfigs refused or failed); "
            "its cleanup.policy is not checked",
            topic=topic,
            error=f"{type(exc).__name__}: {exc}",
        )
        return None
    if isinstance(described, dict):  # kafka-python 3: {"topic": {name: {key: {"value": ...}}}}
        entries = (described.get("topic") or {}).get(topic) or {}
        return {str(k): str(v.get("value")) for k, v in entries.items() if isinstance(v, dict)}
    values: dict[str, str] = {}
    for response in described or []:  # kafka-python 2.x DescribeConfigsResponse
        for resource_entry in getattr(response, "resources", []):
            if len(resource_entry) >= 5 and resource_entry[3] == topic:
                for entry in resource_entry[4]:
                    values[str(entry[0])] = str(entry[1])
    return values


def _check_existing_topic(client: Any, config: KafkaConfig, topic: str) -> None:
    """Refuse a compacted topic; warn about a min.insync.replicas that weakens acks=all."""
    values = topic_configs(client, topic)
    if values is None:
        return
    policy = values.get("cleanup.policy")
    if policy is None:
        _warn_once(
            ("cleanup.policy", config.bootstrap_servers, topic),
            "the broker reported no cleanup.policy for the topic, so it cannot be checked that it is "
            "not compacted (the embedded test broker, Tansu, reports only the configs a topic was "
            "created with)",
            topic=topic,
        )
    elif "compact" in policy.lower():
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"topic {topic!r} has cleanup.policy={policy!r}: a compacted topic keeps only the latest "
            "record of a key and drops a thread's earlier changes, and the appliers need every event. "
            f"Set cleanup.policy=delete on it (kafka-configs --alter --entity-type topics --entity-name "
            f"{topic} --add-config cleanup.policy=delete) or use another topic",
        )
    min_isr = values.get("min.insync.replicas")
    weak = min_isr is not None and min_isr.strip().isdigit() and int(min_isr) < 2
    if weak and not _is_local(config.bootstrap_servers):
        _warn_once(
            ("min.insync.replicas", config.bootstrap_servers, topic),
            "topic has min.insync.replicas = 1: an acknowledged write (acks=all) may live on one broker only",
            topic=topic,
            advice="min.insync.replicas = 2 with replication factor 3 (docs/kafka.md)",
        )


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
