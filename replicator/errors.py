"""One error type with a kind, and the policy that maps a kind to a retry decision.

Retry is decided by type, never by message text. Every message names what is wrong and, where
we know it, how to fix it: the operator reading it may be at 3 a.m. with a half-migrated
database.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ErrorKind(enum.StrEnum):
    CONFIG = "config"  # bad or missing configuration
    SOURCE_UNREACHABLE = "source_unreachable"
    SOURCE_SETUP = "source_setup"  # wal_level, missing tables, privileges
    SOURCE_LOST = "source_lost"  # slot dropped or invalidated
    BROKER_UNREACHABLE = "broker_unreachable"
    TARGET_UNREACHABLE = "target_unreachable"
    TARGET_SETUP = "target_setup"  # table or bucket missing
    TARGET_THROTTLED = "target_throttled"
    MALFORMED_EVENT = "malformed_event"
    INTERNAL = "internal"


class Retry(enum.Enum):
    NO = "no"  # stop and report: retrying cannot help
    TIMED = "timed"  # back off and try again


_POLICY: dict[ErrorKind, Retry] = {
    ErrorKind.CONFIG: Retry.NO,
    ErrorKind.SOURCE_UNREACHABLE: Retry.TIMED,
    ErrorKind.SOURCE_SETUP: Retry.NO,
    ErrorKind.SOURCE_LOST: Retry.NO,
    ErrorKind.BROKER_UNREACHABLE: Retry.TIMED,
    ErrorKind.TARGET_UNREACHABLE: Retry.TIMED,
    ErrorKind.TARGET_SETUP: Retry.NO,
    ErrorKind.TARGET_THROTTLED: Retry.TIMED,
    ErrorKind.MALFORMED_EVENT: Retry.NO,
    ErrorKind.INTERNAL: Retry.NO,
}


class ReplicatorError(Exception):
    """An error the operator can act on; ``str(err)`` is the whole message."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def retry(self) -> Retry:
        return policy(self.kind)


def policy(kind: ErrorKind) -> Retry:
    return _POLICY[kind]


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ReplicatorError) and exc.retry is Retry.TIMED


def _io_families() -> tuple[type[BaseException], ...]:
    """Exception families of the clients we drive whose members are I/O trouble, not bugs."""
    import botocore.exceptions
    import kafka.errors
    import psycopg

    return (
        OSError,  # connection refused or reset, timeouts (socket.timeout, TimeoutError)
        psycopg.OperationalError,
        kafka.errors.KafkaError,
        botocore.exceptions.BotoCoreError,  # connection, endpoint and read-timeout errors
    )


def classify(exc: BaseException) -> ReplicatorError:
    """One rule for every stage: what an exception that stopped a stage means.

    A ``ReplicatorError`` says itself (its kind decides: retry or stop). An I/O error a client
    raised without our wrapping is transient: retried after a backoff like any lost connection.
    Anything else (``TypeError``, ``KeyError``, ...) is a bug in the replicator: the daemon stops
    loudly with the traceback in its log, instead of retrying it forever or dead-lettering a
    user's conversation for it. Nothing is lost by stopping: positions trail durability, so the
    next run resumes where the pipeline really was.
    """
    if isinstance(exc, ReplicatorError):
        return exc
    if isinstance(exc, _io_families()):
        return ReplicatorError(ErrorKind.TARGET_UNREACHABLE, f"{type(exc).__name__}: {exc}")
    return ReplicatorError(
        ErrorKind.INTERNAL,
        f"internal error (a bug in the replicator, please report it): {type(exc).__name__}: {exc}. "
        "The daemon stopped; nothing is lost, a restart resumes from the last confirmed positions",
    )


@contextmanager
def translated(
    family: type[BaseException] | tuple[type[BaseException], ...],
    convert: Callable[[Any], ReplicatorError],
) -> Iterator[None]:
    """A client's exceptions of ``family`` raised inside the block become ``convert(exc)``, without
    the client's traceback; a ``ReplicatorError`` passes through as it is."""
    try:
        yield
    except ReplicatorError:
        raise
    except family as exc:
        raise convert(exc) from None
