"""The stores the contract suite runs on: one class per target kind, one fixture per deployment.

A DynamoDB store is a fresh table (on moto or dynalite) plus a fresh S3 bucket on moto for the
values over the item limit; its dump is every item of the table and every object of the bucket.
A Postgres store is a fresh database (PostgresSaver's tables in a schema of it), a SQLite store
a fresh file; their dumps are every row of every table, keyed by table and primary key.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from connectors.sinks.cosmos import CosmosLayout, CosmosSink
from connectors.sinks.dynamodb import DynamoDBSink
from connectors.sinks.postgres import PostgresSink
from connectors.sinks.saver import SaverSink
from connectors.sinks.sqlite import SqliteSink
from replicator.embedded import EmbeddedPostgres, create_dynamodb_table, create_s3_bucket
from replicator.state import SqliteStateStore
from tests.contract.cosmos_container import InMemoryContainer
from tests.savers import bind

REGION = "us-east-1"
S3_KEY_PREFIX = "app/lg"


def scan_table(endpoint_url: str, table: str) -> list[dict[str, Any]]:
    """Every item of a table (consistent reads), sorted by key."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    client.close()
    return sorted(items, key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def bucket_objects(endpoint_url: str, bucket: str | None) -> dict[str, bytes]:
    """Every object of a bucket, by key."""
    if not bucket:
        return {}
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    objects = {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    client.close()
    return objects


@dataclass(frozen=True)
class DynamoDBStore:
    ddb_endpoint: str
    s3_endpoint: str
    table: str
    bucket: str

    def sink(self) -> DynamoDBSink:
        return DynamoDBSink(
            "contract",
            self.table,
            REGION,
            endpoint_url=self.ddb_endpoint,
            s3_bucket=self.bucket,
            s3_key_prefix=S3_KEY_PREFIX,
            s3_endpoint_url=self.s3_endpoint,
        )

    def dump(self) -> dict[str, Any]:
        items = {
            f"dynamodb {i['PK']['S']} | {i['SK']['S']}": i for i in scan_table(self.ddb_endpoint, self.table)
        }
        objects = {f"s3 {k}": v for k, v in bucket_objects(self.s3_endpoint, self.bucket).items()}
        return {**items, **objects}


@dataclass(frozen=True)
class DynamoDBTarget:
    """DynamoDB at ``ddb_endpoint`` with S3 offload to a bucket at ``s3_endpoint``."""

    name: str
    ddb_endpoint: str
    s3_endpoint: str
    own_state_in_target: bool = True  # blob state and write index items (suite.OWN_STATE_MARKERS)

    def new_store(self) -> DynamoDBStore:
        table, bucket = f"c-{uuid.uuid4().hex[:12]}", f"c-{uuid.uuid4().hex[:12]}"
        create_dynamodb_table(self.ddb_endpoint, table, REGION)
        create_s3_bucket(self.s3_endpoint, bucket, REGION)
        return DynamoDBStore(self.ddb_endpoint, self.s3_endpoint, table, bucket)


# --------------------------------------------------------------------------- Postgres


@dataclass(frozen=True)
class PostgresStore:
    """A fresh database with an empty schema; PostgresSaver's tables appear when a sink needs them.
    Its dump is every row of every table of that schema but the saver's migration versions
    (schema bookkeeping, there before the first event)."""

    dsn: str
    schema: str

    def sink(self) -> PostgresSink:
        return PostgresSink("contract", self.dsn, self.schema)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name <> 'checkpoint_migrations' ORDER BY 1",
                    (self.schema,),
                )
            ]
            for table in tables:
                keys = [
                    r[0]
                    for r in conn.execute(
                        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                        "ORDER BY array_position(i.indkey, a.attnum)",
                        (f'"{self.schema}"."{table}"',),
                    )
                ]
                query = sql.SQL("SELECT * FROM {}.{}").format(
                    sql.Identifier(self.schema), sql.Identifier(table)
                )
                with conn.cursor(row_factory=dict_row) as cur:
                    for row in cur.execute(query):
                        out[f"{table} " + " | ".join(str(row[k]) for k in keys)] = row
        return out


@dataclass
class PostgresTarget:
    """PostgresSaver's tables in schema ``lg`` of a fresh database per store, on the session's
    cluster; the databases are dropped by the fixture."""

    name: str
    pg: EmbeddedPostgres
    databases: list[str] = field(default_factory=list)

    def new_store(self) -> PostgresStore:
        database = f"c_{uuid.uuid4().hex[:12]}"
        dsn = self.pg.create_database(database)
        self.databases.append(database)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA lg")
        return PostgresStore(dsn, "lg")

    def drop_all(self) -> None:
        for database in self.databases:
            self.pg.drop_database(database)


# --------------------------------------------------------------------------- SQLite


def dump_sqlite(path: Path) -> dict[str, Any]:
    """Every row of every table of a SQLite file, keyed by table and primary key."""
    if not path.exists():
        return {}
    out: dict[str, Any] = {}
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            )
        ]
        for table in tables:
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            columns = [c[1] for c in info]
            keys = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5] > 0]
            for values in conn.execute(f'SELECT * FROM "{table}"'):
                row = dict(zip(columns, values, strict=True))
                out[f"{table} " + " | ".join(str(row[k]) for k in keys)] = row
    return out


@dataclass(frozen=True)
class SqliteStore:
    """A SQLite file not yet created; its dump is every row of every table in it."""

    path: Path

    def sink(self) -> SqliteSink:
        return SqliteSink("contract", str(self.path))

    def dump(self) -> dict[str, Any]:
        return dump_sqlite(self.path)


@dataclass(frozen=True)
class SqliteTarget:
    """A new SQLite file per store in ``directory``."""

    name: str
    directory: Path
    own_state_in_target: bool = True  # the blob table lgrepl_blobs

    def new_store(self) -> SqliteStore:
        return SqliteStore(self.directory / f"c-{uuid.uuid4().hex[:12]}.sqlite")


# --------------------------------------------------------------------------- any saver


def dump_memory_saver(saver: Any) -> dict[str, Any]:
    """Every entry of an InMemorySaver's three dicts."""
    out: dict[str, Any] = {}
    for t, by_ns in saver.storage.items():
        for ns, by_id in by_ns.items():
            for cid, value in by_id.items():
                out[f"storage {t} | {ns} | {cid}"] = value
    for (t, ns, cid), by_task in saver.writes.items():
        for (task, idx), (task_id, channel, value, _task_path) in by_task.items():
            # task_path left out: InMemorySaver keeps it but never reads it, and a target written
            # through a saver's API cannot read it back when it rebuilds a thread (see
            # connectors/sinks/saver.py)
            out[f"writes {t} | {ns} | {cid} | {task} | {idx}"] = (task_id, channel, value)
    for (t, ns, channel, version), value in saver.blobs.items():
        out[f"blobs {t} | {ns} | {channel} | {version}"] = value
    return out


def dump_redis(url: str, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix``: strings by value, hashes field by field, sorted sets as their
    members in score order (the plain-Redis saver's latest is the member put last; the scores
    are a global put counter, which a replay advances); the counter itself is left out."""
    import redis

    client = redis.Redis.from_url(url)
    out: dict[str, Any] = {}

    def strip(text: str) -> str:  # stores on one server differ by their prefix only
        return text[len(prefix) + 1 :] if text.startswith(prefix + ":") else text

    try:
        for raw in client.scan_iter(match=f"{prefix}:*", count=500):
            key = raw.decode()
            kind = client.type(raw).decode()
            if key == f"{prefix}:seq":
                continue
            name = strip(key)
            if kind == "string":
                out[f"redis {name}"] = client.get(raw)
            elif kind == "hash":
                for field, value in client.hgetall(raw).items():
                    out[f"redis {name} {strip(field.decode())}"] = value
            elif kind == "zset":
                out[f"redis {name}"] = [m.decode() for m in client.zrange(raw, 0, -1)]
            else:
                out[f"redis {name}"] = kind
    finally:
        client.close()
    return out


@dataclass(frozen=True)
class SaverStore:
    """A saver's store reached through its factory, with the state store its blobs live in.
    The dump is the saver's own store (by ``dump_saver``) and the target's rows of the state
    store's blob table."""

    factory: str
    state_path: Path
    dump_saver: Callable[[], dict[str, Any]]

    def sink(self) -> SaverSink:
        return SaverSink("contract", self.factory, SqliteStateStore(self.state_path))

    def dump(self) -> dict[str, Any]:
        state = dump_sqlite(self.state_path)
        mine = {
            f"state {key}": row
            for key, row in state.items()
            if key.startswith("blobs ") or key.startswith("state saver-deletes:")
        }
        return {**self.dump_saver(), **mine}


@dataclass
class SaverTarget:
    """``kind = "saver"`` over one saver class: ``make(store_id)`` builds a fresh store's saver
    and ``dump(saver)`` reads that saver's own store raw."""

    name: str
    directory: Path
    make: Callable[[str], Any]
    dump_saver: Callable[[Any], dict[str, Any]]
    # A thread holding only pending writes (no checkpoint yet) is listed by the saver's API
    # (``list``) only when the saver says so: none of these do.
    lists_threads_with_only_writes: bool = False
    # The saver's own delete_thread leaves writes whose checkpoint it never held (the plain-Redis
    # saver finds writes through its checkpoint index).
    delete_thread_keeps_orphan_writes: bool = False
    # A saver's API deletes whole threads only (connectors/sinks/saver.py).
    exact_partial_deletes: bool = False

    def new_store(self) -> SaverStore:
        store_id = uuid.uuid4().hex[:12]
        saver = self.make(store_id)
        return SaverStore(
            bind(lambda: saver),
            self.directory / f"state-{store_id}.sqlite",
            lambda: self.dump_saver(saver),
        )


# --------------------------------------------------------------------------- Cosmos DB


@dataclass(frozen=True)
class CosmosStore:
    """A fresh in-memory container (no Cosmos DB runs here: see cosmos_container.py) and the
    state store its blobs live in; the dump is every document and the target's blob rows."""

    container: InMemoryContainer
    state_path: Path

    def sink(self) -> CosmosSink:
        layout = CosmosLayout(
            "contract",
            "https://not-a-live-account.documents.azure.com:443/",
            "langgraph",
            "checkpoints",
            None,
            SqliteStateStore(self.state_path),
            container_client=self.container,
        )
        return CosmosSink(layout)

    def dump(self) -> dict[str, Any]:
        state = dump_sqlite(self.state_path)
        blobs = {f"state {key}": row for key, row in state.items() if key.startswith("blobs ")}
        return {**self.container.dump(), **blobs}


@dataclass
class CosmosTarget:
    """CosmosDBSaver's layout in an in-memory container: documents and reads, not the service."""

    name: str
    directory: Path
    # Cosmos DB ids cannot hold these, and CosmosDBSaver splits its ids on "$".
    forbidden_in_names: str = "/\\?#$"
    # CosmosDBSaver keeps a checkpoint in one item of at most 2 MB, values base64 (a third larger).
    value_scale: float = 0.5

    def new_store(self) -> CosmosStore:
        return CosmosStore(
            InMemoryContainer(), self.directory / f"cosmos-state-{uuid.uuid4().hex[:12]}.sqlite"
        )
