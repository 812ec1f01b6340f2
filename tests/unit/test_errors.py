"""The one rule for exceptions that stop a stage (replicator.errors.classify)."""

from __future__ import annotations

import botocore.exceptions
import kafka.errors
import psycopg

from replicator.errors import ErrorKind, ReplicatorError, Retry, classify
from replicator.faults import InjectedBug


def test_a_replicator_error_says_itself() -> None:
    err = ReplicatorError(ErrorKind.SOURCE_LOST, "slot dropped")
    assert classify(err) is err


def test_io_errors_of_the_clients_are_transient() -> None:
    for exc in (
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
        psycopg.OperationalError("server closed the connection"),
        kafka.errors.KafkaConnectionError("broker away"),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ):
        assert classify(exc).retry is Retry.TIMED, exc


def test_anything_else_is_a_bug_that_stops() -> None:
    for exc in (KeyError("PK"), TypeError("unhashable"), InjectedBug("fault injected at x")):
        classified = classify(exc)
        assert classified.kind is ErrorKind.INTERNAL and classified.retry is Retry.NO
        assert type(exc).__name__ in str(classified) and "a bug" in str(classified)
