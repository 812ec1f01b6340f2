"""The Postgres and SQLite layouts are pure: the rows and statements of a planned batch, and
what an error code means. (Their I/O runs in the contract suite against real servers.)"""

from __future__ import annotations

import json

import msgspec
import pytest

from connectors.langgraph.batch import DurableOps, WholeCheckpoint, Write
from connectors.sinks import postgres_layout, sqlite_layout
from connectors.sinks.postgres import error_kind as postgres_error_kind
from connectors.sinks.sqlite import error_kind as sqlite_error_kind
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import CheckpointChange, CheckpointKey, Op, SourceMeta

SKELETON = {"v": 4, "id": "c1", "channel_values": {"n": 1}, "channel_versions": {"n": "1.0"}}


def _split_ops() -> DurableOps:
    key = CheckpointKey("t", "ns", "c1")
    return DurableOps(
        deleted_threads=["gone"],
        checkpoints={
            ("t", "ns", "c1"): CheckpointChange(
                Op.UPSERT, key, SourceMeta(1), "c0", checkpoint=SKELETON, metadata={"step": 1}
            ),
            ("t", "ns", "c0"): None,
        },
        blobs={("t", "ns", "ch", "2.0"): ("msgpack", b"\x91\x01"), ("t", "ns", "old", "1.0"): None},
        writes={
            ("t", "ns", "c1", "task", -3): Write("__interrupt__", "msgpack", b"\x90", "~a"),
            ("t", "ns", "c1", "task", 0): Write("messages", "msgpack", b"\x91", "~a"),
            ("t", "ns", "c1", "task", 1): None,
        },
    )


def test_postgres_rows_follow_postgres_saver_statements() -> None:
    statements = postgres_layout.rows(_split_ops(), "pg").statements()
    sqls = [sql for sql, _ in statements]
    # thread deletions first (all three tables), then per-row deletes, then the puts
    assert sqls[:3] == list(postgres_layout.DELETE_THREADS)
    assert statements[0][1] == [(["gone"],)]
    by_sql = dict(statements)
    assert by_sql[postgres_layout.DELETE_CHECKPOINT] == [("t", "ns", "c0")]
    assert by_sql[postgres_layout.DELETE_BLOB] == [("t", "ns", "old", "1.0")]
    assert by_sql[postgres_layout.DELETE_WRITE] == [("t", "ns", "c1", "task", 1)]
    assert by_sql[postgres_layout.INSERT_BLOB] == [("t", "ns", "ch", "2.0", "msgpack", b"\x91\x01")]
    assert by_sql[postgres_layout.UPSERT_CHECKPOINT] == [("t", "ns", "c1", "c0", SKELETON, {"step": 1})]
    # a special write is overwritten, any other inserted only if absent (as put_writes does)
    assert [r[5] for r in by_sql[postgres_layout.UPSERT_WRITE]] == [-3]
    assert [r[5] for r in by_sql[postgres_layout.INSERT_WRITE]] == [0]
    assert "DO NOTHING" in postgres_layout.INSERT_BLOB and "DO NOTHING" in postgres_layout.INSERT_WRITE
    # bytea travels as a binary parameter, never as text
    for sql in (postgres_layout.INSERT_BLOB, postgres_layout.UPSERT_WRITE, postgres_layout.INSERT_WRITE):
        assert sql.count("%b") == 1


def test_postgres_refuses_a_whole_checkpoint() -> None:
    ops = DurableOps(checkpoints={("t", "", "c"): WholeCheckpoint(None, "msgpack", b"\x80", {})})
    with pytest.raises(ReplicatorError) as err:
        postgres_layout.rows(ops, "pg")
    assert err.value.kind is ErrorKind.INTERNAL and "'pg'" in str(err.value)


def test_sqlite_rows_follow_sqlite_saver_statements() -> None:
    ops = _split_ops()
    ops.checkpoints = {
        ("t", "ns", "c1"): WholeCheckpoint("c0", "msgpack", b"\x80", {"step": 1, "note": "ünï 🚀"}),
        ("t", "ns", "c0"): None,
    }
    by_sql = dict(sqlite_layout.rows(ops, "lite").statements())
    assert by_sql[sqlite_layout.DELETE_THREAD[2]] == [("gone",)]  # the blob table goes with the thread
    assert "lgrepl_blobs" in sqlite_layout.DELETE_THREAD[2]
    (row,) = by_sql[sqlite_layout.PUT_CHECKPOINT]
    assert row[:6] == ("t", "ns", "c1", "c0", "msgpack", b"\x80")
    # metadata exactly as SqliteSaver.put writes it: UTF-8 JSON, non-ASCII unescaped
    assert row[6] == json.dumps({"step": 1, "note": "ünï 🚀"}, ensure_ascii=False).encode()
    assert [r[5] for r in by_sql[sqlite_layout.REPLACE_WRITE]] == [-3]
    assert [r[5] for r in by_sql[sqlite_layout.INSERT_WRITE]] == [0]
    assert by_sql[sqlite_layout.INSERT_BLOB] == [("t", "ns", "ch", "2.0", "msgpack", b"\x91\x01")]
    assert by_sql[sqlite_layout.DELETE_BLOB] == [("t", "ns", "old", "1.0")]


def test_sqlite_metadata_kept_as_msgpack_is_written_as_json() -> None:
    raw = msgspec.Raw(msgspec.msgpack.encode({"step": 2}))
    assert sqlite_layout.metadata_bytes(raw, "here") == b'{"step": 2}'
    assert sqlite_layout.stored_metadata(b'{"step": 2}') == {"step": 2}


def test_sqlite_refuses_a_split_checkpoint() -> None:
    with pytest.raises(ReplicatorError) as err:
        sqlite_layout.rows(_split_ops(), "lite")
    assert err.value.kind is ErrorKind.INTERNAL and "'lite'" in str(err.value)


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        (None, ErrorKind.TARGET_UNREACHABLE),
        ("08006", ErrorKind.TARGET_UNREACHABLE),
        ("57P01", ErrorKind.TARGET_UNREACHABLE),
        ("28P01", ErrorKind.TARGET_SETUP),
        ("3D000", ErrorKind.TARGET_SETUP),
        ("42P01", ErrorKind.TARGET_SETUP),
        ("42501", ErrorKind.TARGET_SETUP),
        ("25006", ErrorKind.TARGET_SETUP),
        ("40001", ErrorKind.TARGET_THROTTLED),
        ("40P01", ErrorKind.TARGET_THROTTLED),
        ("53300", ErrorKind.TARGET_THROTTLED),
        ("57014", ErrorKind.TARGET_THROTTLED),
        ("22P05", ErrorKind.MALFORMED_EVENT),
        ("23502", ErrorKind.MALFORMED_EVENT),
        ("42601", ErrorKind.INTERNAL),
    ],
)
def test_postgres_errors_by_sqlstate(sqlstate: str | None, kind: ErrorKind) -> None:
    assert postgres_error_kind(sqlstate) is kind


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (5, ErrorKind.TARGET_THROTTLED),  # SQLITE_BUSY
        (517, ErrorKind.TARGET_THROTTLED),  # SQLITE_BUSY_SNAPSHOT (extended)
        (14, ErrorKind.TARGET_SETUP),  # SQLITE_CANTOPEN
        (8, ErrorKind.TARGET_SETUP),  # SQLITE_READONLY
        (26, ErrorKind.TARGET_SETUP),  # SQLITE_NOTADB
        (13, ErrorKind.TARGET_UNREACHABLE),  # SQLITE_FULL
        (10, ErrorKind.TARGET_UNREACHABLE),  # SQLITE_IOERR
        (18, ErrorKind.MALFORMED_EVENT),  # SQLITE_TOOBIG
        (1, ErrorKind.INTERNAL),  # SQLITE_ERROR (bad SQL: a bug)
        (None, ErrorKind.INTERNAL),
    ],
)
def test_sqlite_errors_by_result_code(code: int | None, kind: ErrorKind) -> None:
    assert sqlite_error_kind(code) is kind
