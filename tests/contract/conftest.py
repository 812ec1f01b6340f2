"""The targets the contract suite (``suite.py``) runs on. A new target adds a ``*_target``
fixture here and its name to ``TARGETS``; the suite's tests come with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Plain asserts in the shared suite report their values like those in test modules.
pytest.register_assert_rewrite("tests.contract.suite", "tests.contract.recording")

from replicator.embedded import EmbeddedMoto, EmbeddedPostgres  # noqa: E402
from tests.contract.suite import SinkTarget  # noqa: E402
from tests.contract.targets import DynamoDBTarget, PostgresTarget, SqliteTarget  # noqa: E402
from tests.services.dynalite import EmbeddedDynalite  # noqa: E402

TARGETS = ["dynamodb-moto", "dynamodb-dynalite", "postgres", "sqlite"]


@pytest.fixture(scope="session")
def dynalite() -> Iterator[EmbeddedDynalite]:
    """dynalite's server for the session (in memory)."""
    with EmbeddedDynalite() as server:
        yield server


@pytest.fixture
def dynamodb_moto_target(moto: EmbeddedMoto) -> DynamoDBTarget:
    return DynamoDBTarget("dynamodb-moto", moto.endpoint_url, moto.endpoint_url)


@pytest.fixture
def dynamodb_dynalite_target(moto: EmbeddedMoto, dynalite: EmbeddedDynalite) -> DynamoDBTarget:
    """DynamoDB on dynalite; S3 (offload) on moto, which also sets the dummy AWS credentials."""
    return DynamoDBTarget("dynamodb-dynalite", dynalite.endpoint_url, moto.endpoint_url)


@pytest.fixture
def postgres_target(pg: EmbeddedPostgres) -> Iterator[PostgresTarget]:
    """PostgresSaver's tables, a fresh database per store on the session's Postgres."""
    target = PostgresTarget("postgres", pg)
    yield target
    target.drop_all()


@pytest.fixture
def sqlite_target(tmp_path: Path) -> SqliteTarget:
    """SqliteSaver's file, a fresh one per store."""
    return SqliteTarget("sqlite", tmp_path)


@pytest.fixture(params=TARGETS)
def sink_target(request: pytest.FixtureRequest) -> SinkTarget:
    """Each target in turn (its services start only when one of its tests runs)."""
    target: SinkTarget = request.getfixturevalue(request.param.replace("-", "_") + "_target")
    return target
