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
from tests.contract.targets import (  # noqa: E402
    CosmosTarget,
    DynamoDBTarget,
    PostgresTarget,
    SaverTarget,
    SqliteTarget,
    dump_memory_saver,
    dump_redis,
    dump_sqlite,
)
from tests.savers import redis_saver, sqlite_saver  # noqa: E402
from tests.services.dynalite import EmbeddedDynalite  # noqa: E402
from tests.services.redis import EmbeddedRedis  # noqa: E402

TARGETS = [
    "dynamodb-moto",
    "dynamodb-dynalite",
    "postgres",
    "sqlite",
    "saver-memory",
    "saver-sqlite",
    "saver-redis",
    "cosmos-in-memory-container-not-a-live-account",
]


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


@pytest.fixture
def saver_memory_target(tmp_path: Path) -> SaverTarget:
    """The generic target over InMemorySaver (one instance per store)."""
    from langgraph.checkpoint.memory import InMemorySaver

    return SaverTarget("saver-memory", tmp_path, lambda _: InMemorySaver(), dump_memory_saver)


@pytest.fixture
def saver_sqlite_target(tmp_path: Path) -> SaverTarget:
    """The generic target over SqliteSaver (a file per store), through its API only."""

    def make(store_id: str) -> object:
        return sqlite_saver(str(tmp_path / f"saver-{store_id}.sqlite"))

    return SaverTarget("saver-sqlite", tmp_path, make, lambda saver: dump_sqlite(_sqlite_path(saver)))


@pytest.fixture
def saver_redis_target(tmp_path: Path, redis_server: EmbeddedRedis) -> SaverTarget:
    """The generic target over the plain-Redis saver on a real redis-server (a key prefix per
    store)."""
    return SaverTarget(
        "saver-redis",
        tmp_path,
        lambda store_id: redis_saver(redis_server.url, f"c{store_id}"),
        lambda saver: dump_redis(redis_server.url, saver.prefix),
        delete_thread_keeps_orphan_writes=True,
    )


def _sqlite_path(saver: object) -> Path:
    conn = saver.conn  # type: ignore[attr-defined]
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


@pytest.fixture
def cosmos_in_memory_container_not_a_live_account_target(tmp_path: Path) -> CosmosTarget:
    """CosmosDBSaver's documents in an in-memory container, read back by CosmosDBSaver itself.
    No Cosmos DB runs here: the service's own behaviour is not verified (cosmos_container.py)."""
    return CosmosTarget("cosmos", tmp_path)


@pytest.fixture(params=TARGETS)
def sink_target(request: pytest.FixtureRequest) -> SinkTarget:
    """Each target in turn (its services start only when one of its tests runs)."""
    target: SinkTarget = request.getfixturevalue(request.param.replace("-", "_") + "_target")
    return target
