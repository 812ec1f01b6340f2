"""The SQLite source's capture on real files: triggers, the changelog's rows, and the plan that
turns them into events (``delete_thread`` as one ThreadDeletion, runs cut by a read's limit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from connectors.sources.sqlite import capture, changelog
from connectors.sources.sqlite.changelog import LogRow, plan
from connectors.sources.sqlite.rows import read_thread, read_transaction
from replicator.events import CheckpointDocument, Op, ThreadDeletion, WriteChange
from tests.contract.recording import run_graph


def _app(path: Path) -> SqliteSaver:
    saver = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
    saver.setup()
    return saver


def _captured(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    created = capture.install(conn)
    assert created == [capture.CHANGELOG, *capture.TRIGGERS]
    return conn


def test_install_is_idempotent_and_uninstall_removes_everything(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _app(path)
    conn = _captured(path)
    assert capture.install(conn) == []  # a second start creates nothing
    assert capture.existing(conn) == {capture.CHANGELOG, *capture.TRIGGERS}
    assert set(capture.uninstall(conn)) == {capture.CHANGELOG, *capture.TRIGGERS}
    assert capture.existing(conn) == set()
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'replicator%'")}
    assert names == set()
    assert capture.uninstall(conn) == []


def test_every_row_the_app_writes_is_captured_with_its_values(tmp_path: Path) -> None:
    """The changelog's events rebuild exactly the rows SqliteSaver stored (the thread read)."""
    path = tmp_path / "app.db"
    app = _app(path)
    conn = _captured(path)
    run_graph(app, "t1")
    rows = changelog.read(conn, 1, 10_000)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(not r.is_delete for r in rows)
    units, held = plan(rows, complete=True)
    assert held is None
    # Last upsert per key wins (INSERT OR REPLACE re-puts a key): the result is the table's state.
    latest: dict[object, object] = {}
    for unit in units:
        event = unit.event
        assert isinstance(event, CheckpointDocument | WriteChange)
        latest[(type(event).__name__, event.key)] = event
    with read_transaction(conn):
        stored = read_thread(conn, "t1")[1:]
    expected = {
        (type(e).__name__, e.key): e for e in stored if isinstance(e, CheckpointDocument | WriteChange)
    }
    assert set(latest) == set(expected)
    for key, event in expected.items():
        got = latest[key]
        assert isinstance(got, type(event))
        if isinstance(event, CheckpointDocument):
            assert isinstance(got, CheckpointDocument)
            assert (got.data, got.type, got.metadata, got.parent_checkpoint_id) == (
                event.data,
                event.type,
                event.metadata,
                event.parent_checkpoint_id,
            )
        else:
            assert isinstance(event, WriteChange) and isinstance(got, WriteChange)
            assert (got.data, got.type, got.channel, got.task_path) == (
                event.data,
                event.type,
                event.channel,
                event.task_path,
            )
    # Positions: each event at its row's seq, confirmable after it.
    assert [u.next_position for u in units] == [r.seq + 1 for r in rows]
    assert all(u.event.source.position == r.seq for u, r in zip(units, rows, strict=True))


def test_delete_thread_becomes_one_thread_deletion(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    run_graph(app, "keep")
    run_graph(app, "gone")
    conn = _captured(path)
    app.delete_thread("gone")
    rows = changelog.read(conn, 1, 10_000)
    assert len(rows) > 10 and all(r.is_delete and r.thread_id == "gone" for r in rows)
    assert [r.emptied for r in rows] == [0] * (len(rows) - 1) + [1]
    units, held = plan(rows, complete=True)
    assert held is None
    assert len(units) == 1
    deletion = units[0].event
    assert isinstance(deletion, ThreadDeletion) and deletion.thread_id == "gone"
    assert deletion.source.position == rows[0].seq
    assert units[0].next_position == rows[-1].seq + 1


def test_single_row_deletes_stay_row_deletes(tmp_path: Path) -> None:
    """An app deleting one checkpoint of a thread that keeps others: never a thread deletion."""
    path = tmp_path / "app.db"
    app = _app(path)
    run_graph(app, "t")
    conn = _captured(path)
    oldest = conn.execute("SELECT min(checkpoint_id) FROM checkpoints WHERE thread_id = 't'").fetchone()[0]
    conn.execute("DELETE FROM checkpoints WHERE thread_id = 't' AND checkpoint_id = ?", (oldest,))
    conn.execute("DELETE FROM writes WHERE thread_id = 't' AND checkpoint_id = ?", (oldest,))
    units, held = plan(changelog.read(conn, 1, 10_000), complete=True)
    assert held is None and units
    assert all(isinstance(u.event, CheckpointDocument | WriteChange) for u in units)
    assert all(u.event.op is Op.DELETE for u in units if not isinstance(u.event, ThreadDeletion))


def test_a_run_cut_by_the_read_limit_is_held_back_and_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    run_graph(app, "gone")
    conn = _captured(path)
    run_graph(app, "other")  # upserts before the deletes
    app.delete_thread("gone")
    upserts = conn.execute(f"SELECT count(*) FROM {capture.CHANGELOG} WHERE op = 'u'").fetchone()[0]
    units, held = plan(changelog.read(conn, 1, upserts + 3), complete=False)
    assert len(units) == upserts and held == upserts + 1  # the deletes wait for the rest
    units, held = plan(changelog.read(conn, held, 10_000), complete=True)
    assert held is None and [type(u.event) for u in units] == [ThreadDeletion]


def test_plan_splits_runs_by_thread_and_at_emptied() -> None:
    def d(seq: int, thread: str, emptied: int = 0) -> LogRow:
        return LogRow(seq, "checkpoints", "d", thread, "", f"c{seq}", emptied=emptied)

    rows = [d(1, "a"), d(2, "a", 1), d(3, "b"), d(4, "c"), d(5, "c", 1)]
    units, held = plan(rows, complete=True)
    kinds = [(type(u.event).__name__, u.next_position) for u in units]
    assert kinds == [("ThreadDeletion", 3), ("CheckpointDocument", 4), ("ThreadDeletion", 6)]
    assert held is None
    # The same rows read with more to come: "c"'s run is complete (it emptied), nothing held.
    assert plan(rows, complete=False)[1] is None
    assert plan(rows[:4], complete=False)[1] == 4  # "c" may go on


def test_an_update_that_moves_a_key_deletes_the_old_key(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    run_graph(app, "t")
    conn = _captured(path)
    conn.execute("UPDATE writes SET idx = idx + 100 WHERE thread_id = 't' AND idx >= 0 AND rowid = 1")
    conn.execute("UPDATE checkpoints SET metadata = '{\"x\": 1}' WHERE rowid = 1")
    units, _ = plan(changelog.read(conn, 1, 100), complete=True)
    ops = [(type(u.event).__name__, u.event.op) for u in units if not isinstance(u.event, ThreadDeletion)]
    assert ops == [("WriteChange", Op.DELETE), ("WriteChange", Op.UPSERT), ("CheckpointDocument", Op.UPSERT)]
    last = units[-1].event
    assert isinstance(last, CheckpointDocument) and last.metadata == {"x": 1}


def test_trim_deletes_below_and_the_sequence_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    conn = _captured(path)
    run_graph(app, "t")
    last = capture.sequence(conn)
    assert changelog.trim(conn, last + 1) == last
    assert changelog.bounds(conn) == (None, None)
    run_graph(app, "u")
    assert changelog.bounds(conn)[0] == last + 1  # AUTOINCREMENT: never reused after a trim
