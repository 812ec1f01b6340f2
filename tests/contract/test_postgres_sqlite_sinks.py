"""Postgres- and SQLite-specific behaviour of their sinks on real servers: tables created by the
savers' own setup, one transaction per batch, bytea kept as is, WAL and one writer, and errors
classified into kinds that name the target. What every sink must do is in ``suite.py``."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.postgres.base import MIGRATIONS

from connectors.sinks.postgres import PostgresSink
from connectors.sinks.sqlite import SqliteSink
from replicator.embedded import EmbeddedPostgres
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import BlobChange, CheckpointChange, Op
from tests.contract.recording import hand_checkpoint, put_events, saver_config, src

pytestmark = pytest.mark.integration

ALL_BYTES = bytes(range(256)) + b"\\x41\\x00"  # every byte, and what a hex text form looks like


@pytest.fixture
def target_db(pg: EmbeddedPostgres) -> Iterator[str]:
    name = f"p_{uuid.uuid4().hex[:12]}"
    dsn = pg.create_database(name)
    yield dsn
    pg.drop_database(name)


def _blob_batch(thread_id: str, data: bytes) -> list[BlobChange | CheckpointChange]:
    conf, ckpt, new = hand_checkpoint(thread_id, "", {"raw": b"placeholder"})
    blob, checkpoint = put_events(conf, ckpt, {"step": 0}, new)
    assert isinstance(blob, BlobChange) and isinstance(checkpoint, CheckpointChange)
    return [BlobChange(Op.UPSERT, blob.key, src(), type="bytes", data=data), checkpoint]


# --------------------------------------------------------------------------- Postgres


def test_postgres_tables_come_from_the_savers_setup_and_bytea_stays_bytea(target_db: str) -> None:
    sink = PostgresSink("pg-target", target_db)
    sink.check()
    with psycopg.connect(target_db, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
        assert versions == list(range(len(MIGRATIONS)))
        sink.apply(_blob_batch("bytes-thread", ALL_BYTES))
        stored = conn.execute("SELECT blob, octet_length(blob) FROM checkpoint_blobs").fetchone()
        assert stored is not None and stored == (ALL_BYTES, len(ALL_BYTES))
    got = sink.saver().get_tuple(saver_config("bytes-thread"))
    assert got is not None and got.checkpoint["channel_values"]["raw"] == ALL_BYTES
    sink.check()  # a second check finds everything in place
    sink.close()


def test_postgres_schema_is_used_and_a_missing_one_named(target_db: str) -> None:
    with pytest.raises(ReplicatorError) as err:
        PostgresSink("pg-target", target_db, "elsewhere").check()
    assert err.value.kind is ErrorKind.TARGET_SETUP
    assert "'pg-target'" in str(err.value) and "CREATE SCHEMA elsewhere" in str(err.value)

    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA elsewhere")
        sink = PostgresSink("pg-target", target_db, "elsewhere")
        sink.apply(_blob_batch("in-schema", b"x"))
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'elsewhere'"
            )
        }
        assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= tables
        public = conn.execute("SELECT to_regclass('public.checkpoints')").fetchone()
        assert public == (None,)
    assert list(sink.thread_ids()) == ["in-schema"]
    sink.close()


def test_postgres_a_refused_row_rolls_back_its_whole_batch(target_db: str) -> None:
    sink = PostgresSink("pg-target", target_db)
    good = _blob_batch("kept-out", b"x")
    conf, ckpt, new = hand_checkpoint("nul", "", {"n": 1})
    (bad,) = put_events(conf, ckpt, {"step": 0}, new)
    assert isinstance(bad, CheckpointChange)
    bad = CheckpointChange(
        Op.UPSERT, bad.key, src(), checkpoint=bad.checkpoint, metadata={"note": "a\u0000b"}
    )
    with pytest.raises(ReplicatorError) as err:
        sink.apply([*good, bad])
    assert err.value.kind is ErrorKind.MALFORMED_EVENT
    assert "'pg-target'" in str(err.value) and "SQLSTATE 22P05" in str(err.value)
    assert list(sink.thread_ids()) == []
    with psycopg.connect(target_db) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoint_blobs").fetchone() == (0,)
    sink.apply(good)  # the connection is usable again
    assert list(sink.thread_ids()) == ["kept-out"]
    sink.close()


def test_postgres_lost_connection_is_transient_then_reconnects(target_db: str) -> None:
    sink = PostgresSink("pg-target", target_db)
    sink.apply(_blob_batch("first", b"1"))
    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(ReplicatorError) as err:
        sink.apply(_blob_batch("second", b"2"))
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE and "'pg-target'" in str(err.value)
    sink.apply(_blob_batch("second", b"2"))  # the applier's retry: a new connection
    assert list(sink.thread_ids()) == ["first", "second"]
    sink.close()


def test_postgres_unreachable_server_names_the_target_not_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    sink = PostgresSink("pg-target", f"postgresql://app:Sup3rSecret@127.0.0.1:{port}/app")
    with pytest.raises(ReplicatorError) as err:
        sink.check()
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE
    assert "'pg-target'" in str(err.value) and f"127.0.0.1:{port}/app" in str(err.value)
    assert "Sup3rSecret" not in str(err.value)


# --------------------------------------------------------------------------- SQLite


def test_sqlite_file_in_wal_mode_with_the_savers_tables_and_ours(tmp_path: Path) -> None:
    path = tmp_path / "lg.sqlite"
    sink = SqliteSink("lite", str(path))
    sink.check()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"checkpoints", "writes", "lgrepl_blobs"}
    sink.apply(_blob_batch("t", ALL_BYTES))
    got = sink.saver().get_tuple(saver_config("t"))
    assert got is not None and got.checkpoint["channel_values"]["raw"] == ALL_BYTES
    sink.close()


def test_sqlite_another_writer_holding_the_lock_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "lg.sqlite"
    sink = SqliteSink("lite", str(path))
    sink.sqlite.busy_timeout_s = 0.2
    sink.check()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes
    try:
        with pytest.raises(ReplicatorError) as err:
            sink.apply(_blob_batch("t", b"x"))
        assert err.value.kind is ErrorKind.TARGET_THROTTLED
        assert "'lite'" in str(err.value) and "SQLITE_BUSY" in str(err.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    sink.apply(_blob_batch("t", b"x"))  # retried once the lock is free: nothing half-written before
    assert list(sink.thread_ids()) == ["t"]
    sink.close()


def test_sqlite_setup_errors_name_the_target(tmp_path: Path) -> None:
    with pytest.raises(ReplicatorError) as err:
        SqliteSink("lite", str(tmp_path / "missing" / "lg.sqlite")).check()
    assert (
        err.value.kind is ErrorKind.TARGET_SETUP
        and "'lite'" in str(err.value)
        and "missing" in str(err.value)
    )

    not_a_db = tmp_path / "text.sqlite"
    not_a_db.write_bytes(b"this is not a database, just text that is long enough " * 40)
    with pytest.raises(ReplicatorError) as err:
        SqliteSink("lite", str(not_a_db)).check()
    assert err.value.kind is ErrorKind.TARGET_SETUP and "SQLITE_NOTADB" in str(err.value)
