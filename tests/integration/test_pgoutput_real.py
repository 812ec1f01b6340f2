"""Decode real pgoutput bytes from PostgreSQL 15 (binary and text formats) on LangGraph-shaped tables."""

from __future__ import annotations

import random
import select
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg2
import pytest
from psycopg.types.json import Json
from psycopg2.extras import LogicalReplicationConnection

from connectors.sources.postgres.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BinaryValue,
    Commit,
    Delete,
    Insert,
    Message,
    PgOutputDecoder,
    PgOutputMessage,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    TextValue,
    Truncate,
    Update,
)

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE checkpoint_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE TABLE checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    blob BYTEA NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
CREATE TABLE typed (
    id INT8 PRIMARY KEY,
    i2 INT2, i4 INT4, b BOOL, f4 FLOAT4, f8 FLOAT8, o OID,
    tz TIMESTAMPTZ, ts TIMESTAMP, u UUID, n NAME, c CHAR(5), vc VARCHAR(20), j JSON, jb JSONB, by BYTEA
);
CREATE PUBLICATION p FOR TABLE checkpoints, checkpoint_blobs, checkpoint_writes, typed;
"""

THREAD = "thread-ü-✓-🎉"
CHECKPOINT = {
    "v": 1,
    "id": "1ef-abc",
    "ts": "2024-11-05T09:29:37.123456+00:00",
    "channel_values": {"messages": [{"role": "user", "content": "héllo 日本語"}], "n": 3},
    "channel_versions": {"__start__": 2, "messages": "00000000000000000000000000000002.0.243"},
    "versions_seen": {"__input__": {}, "node": {"weights": [0.25, 1.5e-7, -3.75, 12345.678]}},
    "flags": [True, False, None],
}
METADATA = {"source": "loop", "step": 1, "writes": {"node": {"score": 0.5}}, "parents": {}}
BIG_BLOB = random.Random(7).randbytes(2 * 1024 * 1024)  # incompressible, so stored out of line (TOAST)
KEY_BLOBS = ("thread_id", "checkpoint_ns", "channel", "version")
KEY_WRITES = ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx")
KEY_CHECKPOINTS = ("thread_id", "checkpoint_ns", "checkpoint_id")


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(SCHEMA)
        for slot in ("s", "s_text"):
            connection.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        yield connection


def fetch(conn: psycopg.Connection[Any], slot: str, binary: bool) -> list[bytes]:
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
        "'publication_names', 'p', 'binary', %s, 'messages', 'true')",
        (slot, "true" if binary else "false"),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def decode_all(payloads: list[bytes]) -> tuple[PgOutputDecoder, list[PgOutputMessage]]:
    decoder = PgOutputDecoder()
    return decoder, [decoder.decode(p) for p in payloads]


def write_langgraph_workload(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(
            """INSERT INTO checkpoints
               (thread_id, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
               VALUES (%s, %s, NULL, NULL, %s::jsonb, %s::jsonb)""",
            (THREAD, "ck-1", Json(CHECKPOINT), Json(METADATA)),
        )
        conn.execute(
            "INSERT INTO checkpoint_blobs VALUES (%s, '', 'messages', '2', 'msgpack', %s)", (THREAD, BIG_BLOB)
        )
        conn.execute("INSERT INTO checkpoint_blobs VALUES (%s, 'ns', 'empty', '1', 'empty', NULL)", (THREAD,))
        for idx in (0, 1):
            conn.execute(
                "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, type, blob)"
                " VALUES (%s, 'ck-1', 'task-1', %s, 'messages', 'msgpack', %s)",
                (THREAD, idx, bytes([idx, 0, 255])),
            )
        conn.execute("SELECT pg_logical_emit_message(true, 'langgraph', 'marker')")
    # leaves the TOASTed blob untouched: it must arrive as unchanged-TOAST
    conn.execute("UPDATE checkpoint_blobs SET type = 'msgpack2' WHERE channel = 'messages'")
    # key change: the old key arrives as a 'K' tuple
    conn.execute("UPDATE checkpoint_writes SET idx = 5 WHERE idx = 1")
    with conn.transaction():
        conn.execute("DELETE FROM checkpoint_writes WHERE idx = 0")
        conn.execute("DELETE FROM checkpoint_blobs WHERE channel = 'messages'")
        conn.execute("DELETE FROM checkpoints")
    conn.execute("TRUNCATE checkpoint_writes")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_langgraph_tables_round_trip(conn: psycopg.Connection[Any], binary: bool) -> None:
    started = time.time()
    write_langgraph_workload(conn)
    slot = "s" if binary else "s_text"
    decoder, messages = decode_all(fetch(conn, slot, binary))
    value_type = BinaryValue if binary else TextValue

    # Transactions are bracketed and consistent.
    begins = [m for m in messages if isinstance(m, Begin)]
    commits = [m for m in messages if isinstance(m, Commit)]
    assert len(begins) == len(commits) == 5
    for begin, commit in zip(begins, commits, strict=True):
        assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
        assert begin.commit_ts == commit.commit_ts
        assert started - 5 < commit.commit_ts < time.time() + 5
        assert begin.xid > 0

    relations = {m.name: m for m in messages if isinstance(m, Relation)}
    assert set(relations) == {"checkpoints", "checkpoint_blobs", "checkpoint_writes"}
    for rel, key in (
        (relations["checkpoints"], KEY_CHECKPOINTS),
        (relations["checkpoint_blobs"], KEY_BLOBS),
        (relations["checkpoint_writes"], KEY_WRITES),
    ):
        assert rel.namespace == "public" and rel.replica_identity == "d"
        assert tuple(c.name for c in rel.columns if c.is_key) == key
    assert [(c.name, c.type_oid) for c in relations["checkpoints"].columns] == [
        ("thread_id", 25),
        ("checkpoint_ns", 25),
        ("checkpoint_id", 25),
        ("parent_checkpoint_id", 25),
        ("type", 25),
        ("checkpoint", 3802),
        ("metadata", 3802),
    ]
    oid_of = {name: rel.oid for name, rel in relations.items()}
    name_of = {oid: name for name, oid in oid_of.items()}

    def rows(kind: type[Insert] | type[Update] | type[Delete], table: str) -> list[Any]:
        return [m for m in messages if isinstance(m, kind) and m.relation_oid == oid_of[table]]

    # INSERTs: every value, including the 2 MB TOASTed bytea, arrives in full.
    (ck,) = rows(Insert, "checkpoints")
    assert all(type(v) is value_type for v in ck.new if v is not None)
    assert decoder.row(ck.relation_oid, ck.new) == {
        "thread_id": THREAD,
        "checkpoint_ns": "",
        "checkpoint_id": "ck-1",
        "parent_checkpoint_id": None,
        "type": None,
        "checkpoint": CHECKPOINT,
        "metadata": METADATA,
    }
    big, empty = rows(Insert, "checkpoint_blobs")
    assert decoder.row(big.relation_oid, big.new) == {
        "thread_id": THREAD,
        "checkpoint_ns": "",
        "channel": "messages",
        "version": "2",
        "type": "msgpack",
        "blob": BIG_BLOB,
    }
    assert decoder.row(empty.relation_oid, empty.new)["blob"] is None
    writes = [decoder.row(m.relation_oid, m.new) for m in rows(Insert, "checkpoint_writes")]
    assert writes == [
        {
            "thread_id": THREAD,
            "checkpoint_ns": "",
            "checkpoint_id": "ck-1",
            "task_id": "task-1",
            "idx": idx,
            "channel": "messages",
            "type": "msgpack",
            "blob": bytes([idx, 0, 255]),
            "task_path": "",
        }
        for idx in (0, 1)
    ]

    # The transactional logical message sits inside the first transaction.
    (marker,) = [m for m in messages if isinstance(m, Message)]
    assert marker.transactional and marker.prefix == "langgraph" and marker.content == b"marker"
    assert messages.index(marker) < messages.index(commits[0])

    # UPDATE that leaves the TOASTed blob alone: unchanged-TOAST marker, no old tuple (key unchanged).
    (upd,) = rows(Update, "checkpoint_blobs")
    assert upd.old is None
    assert upd.new[-1] is UNCHANGED_TOAST
    assert decoder.row(upd.relation_oid, upd.new) == {
        "thread_id": THREAD,
        "checkpoint_ns": "",
        "channel": "messages",
        "version": "2",
        "type": "msgpack2",
        "blob": UNCHANGED_TOAST,
    }

    # Key-changing UPDATE: the old key arrives as a 'K' tuple.
    (moved,) = rows(Update, "checkpoint_writes")
    assert moved.old_is_key and moved.old is not None
    assert decoder.row(moved.relation_oid, moved.old, key_only=True) == {
        "thread_id": THREAD,
        "checkpoint_ns": "",
        "checkpoint_id": "ck-1",
        "task_id": "task-1",
        "idx": 1,
    }
    assert decoder.row(moved.relation_oid, moved.new)["idx"] == 5

    # DELETEs carry only the primary key: every non-key column of the key tuple is NULL.
    deletes = [m for m in messages if isinstance(m, Delete)]
    assert [name_of[d.relation_oid] for d in deletes] == [
        "checkpoint_writes",
        "checkpoint_blobs",
        "checkpoints",
    ]
    for delete in deletes:
        rel = decoder.relations.get(delete.relation_oid)
        assert delete.old_is_key
        assert len(delete.old) == len(rel.columns)
        assert all(v is None for v, c in zip(delete.old, rel.columns, strict=True) if not c.is_key)
        assert all(type(v) is value_type for v, c in zip(delete.old, rel.columns, strict=True) if c.is_key)
    assert [decoder.row(d.relation_oid, d.old, key_only=True) for d in deletes] == [
        {"thread_id": THREAD, "checkpoint_ns": "", "checkpoint_id": "ck-1", "task_id": "task-1", "idx": 0},
        {"thread_id": THREAD, "checkpoint_ns": "", "channel": "messages", "version": "2"},
        {"thread_id": THREAD, "checkpoint_ns": "", "checkpoint_id": "ck-1"},
    ]

    (trunc,) = [m for m in messages if isinstance(m, Truncate)]
    assert trunc.relation_oids == (oid_of["checkpoint_writes"],) and trunc.options == 0


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_every_supported_type_matches_server_output(conn: psycopg.Connection[Any], binary: bool) -> None:
    # A non-UTC session zone proves text timestamptz offsets are honoured (text output uses it).
    conn.execute("SET TimeZone = 'Asia/Kolkata'")
    when = datetime(2024, 11, 5, 9, 29, 37, 123456, tzinfo=UTC)
    doc = {"a": [1, 2.5, None], "b": {"c": "ü"}}
    conn.execute(
        "INSERT INTO typed VALUES (1, -32768, 2147483647, true, 0.1, -2.5e-300, 4294967295, %s, %s,"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a_name', 'ab', 'vär', %s::json, %s::jsonb, '\\x00ff')",
        (when, when.replace(tzinfo=None), '{"x": [1, 2.5]}', Json(doc)),
    )
    conn.execute(
        "INSERT INTO typed (id, f4, f8, tz, ts, b) VALUES"
        " (-9223372036854775808, 'NaN', '-Infinity', 'infinity', '-infinity', false)"
    )
    decoder, messages = decode_all(fetch(conn, "s" if binary else "s_text", binary))
    inserts = [m for m in messages if isinstance(m, Insert)]
    assert len(inserts) == 2
    first = decoder.row(inserts[0].relation_oid, inserts[0].new)
    assert first == {
        "id": 1,
        "i2": -32768,
        "i4": 2147483647,
        "b": True,
        "f4": 0.1,
        "f8": -2.5e-300,
        "o": 4294967295,
        "tz": when,
        "ts": when,
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "n": "a_name",
        "c": "ab   ",
        "vc": "vär",
        "j": {"x": [1, 2.5]},
        "jb": doc,
        "by": b"\x00\xff",
    }
    tz = first["tz"]
    assert isinstance(tz, datetime) and tz.utcoffset() == timedelta(0)
    second = decoder.row(inserts[1].relation_oid, inserts[1].new)
    assert second["id"] == -(2**63)
    assert second["b"] is False
    f4 = second["f4"]
    assert isinstance(f4, float) and f4 != f4
    assert second["f8"] == float("-inf")
    assert second["tz"] == datetime.max.replace(tzinfo=UTC)
    assert second["ts"] == datetime.min.replace(tzinfo=UTC)
    assert second["u"] is None and second["jb"] is None


STREAM_WRITE = (
    "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, idx, channel, type, blob)"
    " SELECT %s, 'ck', 'task', g, 'ch', 'msgpack', decode(repeat('ab', 200), 'hex')"
    " FROM generate_series(%s::int, %s::int) g"
)
STREAM_OPTIONS = {"proto_version": "2", "publication_names": "p", "binary": "true", "streaming": "on"}


def test_protocol_2_streamed_transaction_with_aborted_subtransaction(conn: psycopg.Connection[Any]) -> None:
    """Real stream chunks: xid-prefixed schema and changes, a subtransaction abort, then the commit."""
    conn.execute("SET logical_decoding_work_mem = '64kB'")  # the minimum: forces streaming
    with conn.transaction():
        conn.execute(STREAM_WRITE, ("kept", 0, 999))
        with pytest.raises(psycopg.errors.RaiseException), conn.transaction():  # a subtransaction
            conn.execute(STREAM_WRITE, ("sub-aborted", 0, 999))
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back the savepoint'; END $$")
        conn.execute(STREAM_WRITE, ("kept", 1000, 1999))

    options = [x for kv in STREAM_OPTIONS.items() for x in kv]
    rows = conn.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, "
        "%s, %s, %s, %s, %s, %s, %s, %s)",
        options,
    ).fetchall()
    decoder = PgOutputDecoder()
    messages = [decoder.decode(bytes(row[0])) for row in rows]

    starts = [m for m in messages if isinstance(m, StreamStart)]
    assert len(starts) > 2 and not [m for m in messages if isinstance(m, Begin | Commit)]
    assert len([m for m in messages if isinstance(m, StreamStop)]) == len(starts)
    assert starts[0].first and not any(s.first for s in starts[1:])
    (commit,) = [m for m in messages if isinstance(m, StreamCommit)]
    top = commit.xid
    assert {s.xid for s in starts} == {top}
    (abort,) = [m for m in messages if isinstance(m, StreamAbort)]
    assert abort.xid == top and abort.sub_xid != top
    assert messages.index(abort) < messages.index(commit)
    assert commit.commit_lsn < commit.end_lsn

    # Schema inside a stream carries the xid too (and is re-sent after the subtransaction abort).
    relations = [m for m in messages if isinstance(m, Relation)]
    assert relations and all(r.xid == top for r in relations)

    # Changes carry the xid of their own subtransaction, so StreamAbort(top, sub) can drop exactly those.
    xids_by_thread: dict[str, set[int | None]] = {}
    idx_kept: list[object] = []
    for m in messages:
        if isinstance(m, Insert):
            row = decoder.row(m.relation_oid, m.new)
            xids_by_thread.setdefault(str(row["thread_id"]), set()).add(m.xid)
            if row["thread_id"] == "kept":
                idx_kept.append(row["idx"])
    assert xids_by_thread == {"kept": {top}, "sub-aborted": {abort.sub_xid}}
    assert idx_kept == list(range(2000))


def test_protocol_2_live_walsender_streams_then_aborts(pg_dsn: str) -> None:
    """Through a real walsender (psycopg2, decode=False): an in-progress transaction is streamed, then
    aborted, which only happens live (decoding an already aborted transaction never streams it)."""
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute(SCHEMA)
        setup.execute("SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
    repl = psycopg2.connect(
        pg_dsn,
        connection_factory=LogicalReplicationConnection,
        options="-c logical_decoding_work_mem=64kB",
    )
    decoder = PgOutputDecoder()
    messages: list[PgOutputMessage] = []

    def read_until(done: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out; got {[type(m).__name__ for m in messages]}"
            msg = cur.read_message()
            if msg is None:
                select.select([cur], [], [], 0.2)
                continue
            assert isinstance(msg.payload, bytes)  # decode=False hands over raw pgoutput bytes
            messages.append(decoder.decode(msg.payload))
            cur.send_feedback(flush_lsn=msg.data_start)

    try:
        cur = repl.cursor()
        cur.start_replication(slot_name="s", decode=False, options=STREAM_OPTIONS)
        with psycopg.connect(pg_dsn) as writer:
            writer.execute(STREAM_WRITE, ("aborted", 0, 1999))
            read_until(lambda: any(isinstance(m, Insert) and m.xid is not None for m in messages))
            writer.rollback()
            read_until(lambda: any(isinstance(m, StreamAbort) for m in messages))
            writer.execute(STREAM_WRITE, ("committed", 0, 0))
            writer.commit()
            read_until(lambda: any(isinstance(m, Commit) for m in messages))
    finally:
        repl.close()

    (abort,) = [m for m in messages if isinstance(m, StreamAbort)]
    assert abort.sub_xid == abort.xid
    starts = [m for m in messages if isinstance(m, StreamStart)]
    assert starts and {s.xid for s in starts} == {abort.xid} and starts[0].first
    streamed = [m for m in messages if isinstance(m, Insert) and m.xid is not None]
    assert streamed and {m.xid for m in streamed} == {abort.xid}
    # After the abort, a small transaction arrives the ordinary way: Begin, Insert without xid, Commit.
    tail = messages[messages.index(abort) + 1 :]
    begin = next(m for m in tail if isinstance(m, Begin))
    (ins,) = [m for m in tail if isinstance(m, Insert)]
    assert ins.xid is None and decoder.row(ins.relation_oid, ins.new)["thread_id"] == "committed"
    commit = next(m for m in tail if isinstance(m, Commit))
    assert begin.final_lsn == commit.commit_lsn and begin.xid != abort.xid
