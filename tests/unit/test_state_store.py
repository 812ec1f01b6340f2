"""One contract, run against every state store: documents, forward-only positions, clear, version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from replicator.errors import ErrorKind, ReplicatorError
from replicator.state import (
    SCHEMA_VERSION,
    STATE_SCHEMA,
    MemoryStateStore,
    PostgresStateStore,
    SqliteStateStore,
    StateStore,
)


def contract(open_store: Callable[[], StateStore]) -> None:
    """What every store keeps. ``open_store`` opens the same store again (for durability)."""
    store = open_store()
    assert store.get("publisher") is None and store.all() == {}
    store.put("publisher", {"position": 10, "produced": {"0": 5}})
    store.put_many({"applier:t:0": {"position": 3, "offset": 7}, "applier:t:1": {"position": 4, "offset": 1}})
    assert store.get("publisher") == {"position": 10, "produced": {"0": 5}}
    assert set(store.all()) == {"publisher", "applier:t:0", "applier:t:1"}
    store.put("applier:t_x:0", {"position": 1})  # "_" and "%" are not patterns in a prefix
    assert set(store.prefixed("applier:t:")) == {"applier:t:0", "applier:t:1"}
    assert store.prefixed("applier:t:1") == {"applier:t:1": {"position": 4, "offset": 1}}
    assert store.prefixed("nothing") == {}
    store.delete("applier:t_x:0")

    # Forward, equal, and an offset going back with the position kept: all allowed.
    store.put("publisher", {"position": 12})
    store.put("publisher", {"position": 12, "produced": {}})
    store.put("applier:t:0", {"position": 3, "offset": 0})
    store.put("deadletters:t", {"count": 1})  # no position: nothing to check
    store.put("deadletters:t", {"count": 2})

    with pytest.raises(ReplicatorError) as raised:
        store.put("publisher", {"position": 11})
    assert raised.value.kind is ErrorKind.INTERNAL
    assert "'publisher'" in str(raised.value) and "from 12 to 11" in str(raised.value)
    assert store.get("publisher") == {"position": 12, "produced": {}}

    # A batch with one document moving back writes none of them.
    with pytest.raises(ReplicatorError, match=r"'applier:t:1'.*from 4 to 2"):
        store.put_many({"applier:t:0": {"position": 9, "offset": 9}, "applier:t:1": {"position": 2}})
    assert store.get("applier:t:0") == {"position": 3, "offset": 0}

    store.delete("deadletters:t")
    assert store.get("deadletters:t") is None

    # Blobs a target keeps here: per target, insert-only, deleted by key or by thread.
    a, b, c = ("t1", "", "messages", "2"), ("t1", "sub:1", "notes", "3"), ("t2", "", "messages", "2")
    store.blob_apply(
        "redis", put=[(a, ("msgpack", b"\x91\x01")), (b, ("bytes", b"\x00")), (c, ("null", None))]
    )
    store.blob_apply("other", put=[(a, ("msgpack", b"other target"))])
    store.blob_apply("redis", put=[(a, ("msgpack", b"changed"))])  # a key holds its first value
    assert store.blob_get_many("redis", [a, b, c, ("t3", "", "x", "1")]) == {
        a: ("msgpack", b"\x91\x01"),
        b: ("bytes", b"\x00"),
        c: ("null", None),
    }
    store.blob_apply("redis", delete=[b], delete_threads=["t2"])
    assert store.blob_get_many("redis", [a, b, c]) == {a: ("msgpack", b"\x91\x01")}
    assert store.blob_get_many("other", [a]) == {a: ("msgpack", b"other target")}
    store.close()

    again = open_store()
    assert again.get("applier:t:1") == {"position": 4, "offset": 1}
    assert again.blob_get_many("redis", [a]) == {a: ("msgpack", b"\x91\x01")}  # durable
    again.clear()  # reset: the one way back
    assert again.all() == {}
    assert again.blob_get_many("redis", [a]) == {} and again.blob_get_many("other", [a]) == {}
    again.put("publisher", {"position": 1})
    assert again.get("publisher") == {"position": 1}
    again.close()


def test_memory_store_keeps_the_contract() -> None:
    store = MemoryStateStore()
    contract(lambda: store)


def test_sqlite_store_keeps_the_contract(tmp_path: Path) -> None:
    contract(lambda: SqliteStateStore(tmp_path / "state.db"))


def test_sqlite_store_refuses_a_newer_layout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStateStore(path)
    store.put("publisher", {"position": 1})
    store.close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(ReplicatorError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as raised:
        SqliteStateStore(path).get("publisher")
    assert raised.value.kind is ErrorKind.CONFIG


@pytest.mark.integration
def test_postgres_store_keeps_the_contract(pg_dsn: str) -> None:
    contract(lambda: PostgresStateStore(pg_dsn))


@pytest.mark.integration
def test_postgres_store_migrates_version_1_and_refuses_a_newer_layout(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what version 1 left behind
        conn.execute(f"CREATE SCHEMA {STATE_SCHEMA}")
        conn.execute(
            f"CREATE TABLE {STATE_SCHEMA}.state (name text PRIMARY KEY, value jsonb NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            f"""INSERT INTO {STATE_SCHEMA}.state (name, value) VALUES
                ('applier:t:0', '{{"lsn": 5, "offset": 2}}'), ('publisher', '{{"confirmed_lsn": 7}}'),
                ('source', '{{"snapshot": "done", "position": 3}}')"""
        )
    store = PostgresStateStore(pg_dsn)
    assert store.get("applier:t:0") == {"position": 5, "offset": 2}
    assert store.get("publisher") == {"position": 7}
    assert store.get("source") == {"snapshot": "done", "position": 3}
    with pytest.raises(ReplicatorError, match="from 5 to 4"):
        store.put("applier:t:0", {"position": 4})
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {STATE_SCHEMA}.meta SET value = %s", (str(SCHEMA_VERSION + 1),))
    for create in (True, False):
        with pytest.raises(ReplicatorError, match="newer than this replicator") as raised:
            PostgresStateStore(pg_dsn, create=create).get("publisher")
        assert raised.value.kind is ErrorKind.CONFIG


def test_sqlite_store_read_only_does_not_create_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    store = SqliteStateStore(path, create=False)
    assert store.get("publisher") is None and store.all() == {}
    store.clear()
    assert not path.exists()
    store.put("publisher", {"position": 1})  # a write creates it
    assert SqliteStateStore(path, create=False).get("publisher") == {"position": 1}
