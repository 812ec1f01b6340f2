"""Shared fixtures: real, throwaway services started lazily (a test that uses none starts none).

Fixture names are a contract other test modules code against: ``pg``, ``pg_dsn``, ``broker``,
``kafka_topic``, ``moto``, ``dynamo_table``, ``s3_bucket``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from replicator.embedded import (
    EmbeddedBroker,
    EmbeddedMoto,
    EmbeddedPostgres,
    create_dynamodb_table,
    create_s3_bucket,
)
from tests.services.dynalite import EmbeddedDynalite
from tests.services.redis import EmbeddedRedis

# The fault tests' and the soak's fixtures (services, daemons, writers).
pytest_plugins = ["tests.integration.faultfixtures"]

_MEASURED = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_MEASURED] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect measured lines from each test's report: under pytest-xdist the tests run in
    worker processes, and a report's user properties are what reaches the main one."""
    if report.when == "teardown":
        for name, line in report.user_properties:
            if name == "measured":
                _CONFIG[0].stash[_MEASURED].append(str(line))


_CONFIG: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG[:] = [session.config]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """What the soak and the memory test measured, in every CI log (no ``-s`` needed)."""
    lines = config.stash.get(_MEASURED, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test appends here are printed in the "measured" section of the run's summary."""
    lines: list[str] = []
    yield lines
    request.node.user_properties.extend(("measured", line) for line in lines)


def _unique(prefix: str, sep: str = "_") -> str:
    return f"{prefix}{sep}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    """One Postgres cluster (wal_level=logical) for the session; tests get their own databases."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def pg_dsn(pg: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database for this test; dropped afterwards together with its replication slots."""
    name = _unique("t")
    dsn = pg.create_database(name)
    try:
        yield dsn
    finally:
        pg.drop_database(name)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Kafka-protocol broker (Tansu, memory storage) for the session."""
    with EmbeddedBroker() as server:
        yield server


@pytest.fixture
def kafka_topic() -> str:
    """A unique topic name, not created: the code under test (or auto-creation) makes it."""
    return _unique("t", "-")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """Debian's redis-server for the session (in memory): the generic target's Redis."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[EmbeddedMoto]:
    """moto's server for the session, with dummy AWS credentials in os.environ while it runs."""
    with EmbeddedMoto() as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.aws_env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture(scope="session")
def dynalite() -> Iterator[EmbeddedDynalite]:
    """dynalite's server for the session (in memory): a second DynamoDB, faster per request than
    moto, whose Query sorts the whole table each time."""
    with EmbeddedDynalite() as server:
        yield server


@pytest.fixture
def dynalite_table(dynalite: EmbeddedDynalite) -> str:
    """A new DynamoDB table (PK hash, SK range, strings) on dynalite."""
    return _new_table(dynalite.endpoint_url)


@pytest.fixture
def dynamo_table(moto: EmbeddedMoto) -> str:
    """A new DynamoDB table (PK hash, SK range, strings) on moto."""
    return _new_table(moto.endpoint_url)


def _new_table(endpoint: str) -> str:
    name = _unique("t", "-")
    create_dynamodb_table(endpoint, name)
    return name


@pytest.fixture
def s3_bucket(moto: EmbeddedMoto) -> str:
    """A new, empty S3 bucket on moto."""
    name = _unique("t", "-")
    create_s3_bucket(moto.endpoint_url, name)
    return name
