"""The app-side producer of write-through capture: send a call's events, wait for Kafka's ack.

Every record goes out with ``acks="all"`` on an idempotent producer, keyed by thread id (one
thread, one partition, in order). ``publish`` returns only when the broker acknowledged every
record of the call; otherwise it raises ``WriteNotAcknowledged`` and the caller leaves its saver
unchanged. A split event's pieces are handed to the producer back to back under one lock, so
within this process no other event lands between them in a partition.

A failed call may still have reached the log (the ack was lost, or the request was in flight when
the time ran out). The producer is then force-closed, failing whatever it still holds, and the
caller marks the thread for repair: its next call first republishes the thread whole (a
deletion, then what the saver holds), so the target converges on the app's saver either way.

Known limit: pieces of split events from *several* app processes can interleave in a shared
partition, and ``codec.Reassembler`` keeps one pending set per partition, so it would abandon
one of them. Until the reassembler keys pending sets by set id, keep events under
``kafka.max_message_bytes`` when several processes write, or run one app process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from replicator import codec, kafka
from replicator.config import KafkaConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import DataChange

log = structlog.get_logger("replicator.memory")


class WriteNotAcknowledged(ReplicatorError):
    """Kafka did not acknowledge a write-through call: the app's saver was left unchanged."""

    def __init__(self, bootstrap: str, topic: str, what: str, reason: str) -> None:
        super().__init__(
            ErrorKind.BROKER_UNREACHABLE,
            f"write-through capture: Kafka at {bootstrap} (topic {topic!r}) did not acknowledge "
            f"{what}: {reason}. The in-memory saver was NOT changed. Check that the broker is running "
            "and reachable from this process (kafka.bootstrap_servers), then run the step again "
            "(a graph resumes from its last checkpoint)",
        )
        self.bootstrap = bootstrap
        self.topic = topic


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


class AckedPublisher:
    """One producer per app process, reopened after a failure."""

    def __init__(self, config: KafkaConfig, ack_timeout_s: float) -> None:
        self.config = config
        self.ack_timeout_s = ack_timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()  # producer swaps, and a call's records handed over together

    def _fail(self, what: str, reason: str) -> WriteNotAcknowledged:
        return WriteNotAcknowledged(self.config.bootstrap_servers, self.config.topic, what, reason)

    def _open(self, what: str) -> KafkaProducer:
        if self._producer is not None:
            return self._producer
        timeout_ms = int(self.ack_timeout_s * 1000)
        try:
            kafka.ensure_topic(self.config)
            self._producer = KafkaProducer(
                **{
                    **self.config.client_options(),
                    "bootstrap_timeout_ms": min(self.config.bootstrap_timeout_ms, timeout_ms),
                },
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=0,  # every call waits for its own ack: nothing to gain by lingering
                max_request_size=self.config.max_message_bytes + 64 * 1024,
                allow_auto_create_topics=False,
                retries=2**31 - 1,
                max_block_ms=timeout_ms,
                compression_type=self.config.compression_type,
            )
        except ReplicatorError as exc:
            raise self._fail(what, str(exc)) from None
        except (KafkaError, OSError) as exc:
            raise self._fail(what, _reason(exc)) from None
        return self._producer

    def connect(self, what: str) -> None:
        """Create the topic if missing and open the producer: fail before the app starts."""
        with self._lock:
            self._open(what)

    def publish(self, events: Sequence[DataChange], what: str) -> int:
        """Send ``events`` in order and wait until Kafka acknowledged each; the records sent."""
        records = [r for event in events for r in codec.encode(event, self.config.max_message_bytes)]
        if not records:
            return 0
        deadline = time.monotonic() + self.ack_timeout_s
        with self._lock:
            producer = self._open(what)
            try:
                futures = [
                    producer.send(self.config.topic, key=r.key, value=r.value, headers=r.headers)
                    for r in records
                ]
            except (KafkaError, OSError) as exc:
                self._abort(producer)
                raise self._fail(what, _reason(exc)) from None
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except (KafkaError, OSError) as exc:
                with self._lock:
                    self._abort(producer)
                reason = f"no acknowledgement within {self.ack_timeout_s:g}s ({_reason(exc)})"
                raise self._fail(what, reason) from None
        return len(records)

    def _abort(self, producer: KafkaProducer) -> None:
        """Force-close ``producer`` (under the lock): records it still holds fail, none is sent later."""
        if self._producer is producer:
            self._producer = None
        sender: Any = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()  # kafka-python's close(0) flushes first and raises on a dead broker
        try:
            producer.close(timeout=0)
        except Exception:
            pass
        log.warning(
            "Kafka producer closed after a failed write-through call", bootstrap=self.config.bootstrap_servers
        )

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=self.ack_timeout_s)
            except Exception:
                pass
