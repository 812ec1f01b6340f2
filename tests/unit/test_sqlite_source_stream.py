"""The SQLite source end to end on real files, without Kafka: its events applied to a SQLite
target must make that target equal to the app's file (through both savers), across a snapshot
that the app writes into, a resumed snapshot, trims, and bad or busy files."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from connectors.sinks.sqlite import SqliteSink
from connectors.sources.sqlite import capture
from connectors.sources.sqlite.config import SqliteSourceConfig
from connectors.sources.sqlite.source import SqliteSource
from connectors.sources.sqlite.threads import SqliteThreads
from replicator.errors import ErrorKind, ReplicatorError, Retry
from replicator.events import ChangeEvent, Committed, Control, ControlKind, DataChange, ThreadDeletion
from replicator.lifecycle import SnapshotState
from replicator.state import MemoryStateStore, StateStore
from replicator.verify import verify
from tests.contract.recording import run_graph

Item = ChangeEvent | Committed | None


def _app(path: Path) -> SqliteSaver:
    saver = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
    saver.setup()
    return saver


def _source(path: Path, state: StateStore, **settings: Any) -> SqliteSource:
    options: dict[str, Any] = {"path": str(path), "heartbeat_interval_s": 0.05, "poll_interval_s": 0.01}
    options.update(settings)
    return SqliteSource(SqliteSourceConfig(**options), state)


class Driver:
    """What the publisher does with a source's items, minus Kafka: collect events, confirm."""

    def __init__(self, source: SqliteSource) -> None:
        self.source = source
        self.items: Iterator[Item] = source.stream()
        self.events: list[DataChange] = []
        self.controls: list[Control] = []

    def until(self, done: Callable[[Item], bool], confirm: bool = True) -> None:
        for item in self.items:
            if isinstance(item, Committed):
                if confirm:
                    self.source.confirm(item)
            elif isinstance(item, Control):
                self.controls.append(item)
            elif item is not None:
                self.events.append(item)
            if done(item):
                return

    def caught_up(self) -> None:
        """Until the stream says it is idle after a heartbeat."""
        self.until(lambda item: isinstance(item, Control) and item.kind is ControlKind.HEARTBEAT)


def _converged(source: SqliteSource, target: Path, events: list[DataChange]) -> None:
    sink = SqliteSink("target", str(target))
    try:
        sink.apply(events)
        report = verify(source, sink)
        assert report.ok, report.differences[:5]
        assert report.threads == len(source.threads()) > 0
    finally:
        sink.close()


def test_snapshot_hands_off_to_the_changelog_while_the_app_writes(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    for t in ("a", "b", "c"):
        run_graph(app, t)
    source = _source(path, MemoryStateStore(), snapshot_chunk_rows=7)
    driver = Driver(source)
    # First chunk read: the snapshot's read transaction is open; the app writes meanwhile (WAL).
    driver.until(lambda item: isinstance(item, Committed))
    run_graph(app, "during")
    app.delete_thread("a")
    driver.until(lambda item: isinstance(item, Control) and item.kind is ControlKind.SNAPSHOT_END)
    copied = list(driver.events)
    assert {e.key.thread_id for e in copied if not isinstance(e, ThreadDeletion)} == {"a", "b", "c"}
    driver.caught_up()
    streamed = driver.events[len(copied) :]
    # Exactly what the app did after the snapshot's seq: no gap, no overlap.
    assert all(not e.source.snapshot for e in streamed)
    assert [e.thread_id for e in streamed if isinstance(e, ThreadDeletion)] == ["a"]
    assert {e.key.thread_id for e in streamed if not isinstance(e, ThreadDeletion)} == {"during"}
    assert [e.source.position for e in streamed] == sorted(e.source.position for e in streamed)
    _converged(source, tmp_path / "target.db", driver.events)
    source.close()


def test_a_copy_cut_mid_way_resumes_from_its_cursor_and_converges(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    for t in ("a", "b", "c", "d"):
        run_graph(app, t)
    state = MemoryStateStore()
    first = _source(path, state, snapshot_chunk_rows=10)
    driver = Driver(first)
    chunks = 0

    def third_chunk(item: Item) -> bool:
        nonlocal chunks
        chunks += isinstance(item, Committed)
        return chunks == 3

    driver.until(third_chunk)
    first.close()  # the process died here: the third chunk is confirmed, nothing after it
    saved = state.get("source") or {}
    assert saved["snapshot"] == "running" and saved["cursor"] is not None
    run_graph(app, "later")  # written while nothing runs
    app.delete_thread("b")
    second = _source(path, state, snapshot_chunk_rows=10)
    resumed = Driver(second)
    resumed.caught_up()
    assert second.snapshot_state() is SnapshotState.DONE
    assert not any(c.kind is ControlKind.SNAPSHOT_START for c in resumed.controls)  # continued
    _converged(second, tmp_path / "target.db", driver.events + resumed.events)
    second.close()


def test_confirmed_rows_are_trimmed_after_the_position_is_saved(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    state = MemoryStateStore()
    source = _source(path, state, trim_interval_s=0)
    driver = Driver(source)
    driver.caught_up()
    run_graph(app, "t")
    driver.until(lambda item: isinstance(item, Committed), confirm=False)  # the first change only
    driver.caught_up()  # confirms everything read
    conn = sqlite3.connect(str(path))
    assert conn.execute(f"SELECT count(*) FROM {capture.CHANGELOG}").fetchone()[0] == 0
    assert (state.get("source") or {})["confirmed"] == capture.sequence(conn) + 1
    source.close()
    # A restart streams from the confirmed position: nothing is replayed, nothing is missing.
    run_graph(app, "u")
    again = Driver(_source(path, state))
    again.caught_up()
    assert {e.key.thread_id for e in again.events if not isinstance(e, ThreadDeletion)} == {"u"}
    again.source.close()


def test_lost_changelog_after_the_copy_is_a_named_fatal_error(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _app(path)
    state = MemoryStateStore()
    source = _source(path, state)
    Driver(source).caught_up()
    source.close()
    sqlite3.connect(str(path)).execute("DROP TRIGGER replicator_writes_insert")
    with pytest.raises(ReplicatorError) as raised:
        next(_source(path, state).stream())
    assert raised.value.kind is ErrorKind.SOURCE_LOST and raised.value.retry is Retry.NO
    assert "replicator_writes_insert" in str(raised.value) and "replicator reset" in str(raised.value)


def test_rows_trimmed_behind_the_replicators_back_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    state = MemoryStateStore()
    source = _source(path, state, trim_interval_s=3600)
    Driver(source).caught_up()
    source.close()
    run_graph(app, "t")
    sqlite3.connect(str(path), isolation_level=None).execute(f"DELETE FROM {capture.CHANGELOG}")
    with pytest.raises(ReplicatorError) as raised:
        Driver(_source(path, state)).caught_up()
    assert raised.value.kind is ErrorKind.SOURCE_LOST


def test_reset_removes_triggers_and_changelog(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _app(path)
    source = _source(path, MemoryStateStore())
    Driver(source).caught_up()
    dropped = source.reset()
    assert capture.CHANGELOG in dropped[0] and "replicator_checkpoints_insert" in dropped[0]
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'replicator%'").fetchall() == []
    assert source.describe()["installed"] is False
    source.close()


def test_thread_events_read_one_thread_whole(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    app = _app(path)
    run_graph(app, "x")
    run_graph(app, "y")
    threads = SqliteThreads(SqliteSourceConfig(path=str(path)))
    assert threads.threads() == ["x", "y"]
    events = threads.thread_events("x")
    assert isinstance(events[0], ThreadDeletion) and events[0].thread_id == "x"
    assert {e.key.thread_id for e in events[1:] if not isinstance(e, ThreadDeletion)} == {"x"}
    assert capture.existing(sqlite3.connect(str(path))) == set()  # a copy installs nothing
    sink = SqliteSink("target", str(tmp_path / "target.db"))
    sink.apply(events)
    source = _source(path, MemoryStateStore())
    assert verify(source, sink, thread_ids=["x"]).ok
    threads.close()
    sink.close()
    source.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"this is not a database at all" * 100), "SqliteSaver"),
        (lambda p: sqlite3.connect(str(p)).execute("CREATE TABLE other (x)"), "not a SqliteSaver database"),
    ],
    ids=["missing", "not-sqlite", "other-tables"],
)
def test_bad_files_are_named_setup_errors(tmp_path: Path, make: Callable[[Path], Any], message: str) -> None:
    path = tmp_path / "app.db"
    make(path)
    source = _source(path, MemoryStateStore())
    with pytest.raises(ReplicatorError) as raised:
        source.check()
    assert raised.value.kind is ErrorKind.SOURCE_SETUP and raised.value.retry is Retry.NO
    assert message in str(raised.value) and str(path) in str(raised.value)
    source.close()
    assert path.exists() or message == "does not exist"
    assert not (message == "does not exist" and path.exists())  # never created by us


def _hold_lock(path: Path) -> sqlite3.Connection:
    """Another process's exclusive lock (rollback journal: it blocks readers too)."""
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_database_locked_too_long_is_a_retryable_named_error(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(str(path))
    conn.executescript(
        "CREATE TABLE checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
        "checkpoint, metadata); CREATE TABLE writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
        "task_path, idx, channel, type, value);"
    )
    conn.close()  # journal_mode stays "delete": a writer's lock blocks readers
    holder = _hold_lock(path)
    source = _source(path, MemoryStateStore(), busy_timeout_s=0.05, locked_timeout_s=0.3)
    with pytest.raises(ReplicatorError) as raised:
        source.check()
    assert raised.value.kind is ErrorKind.SOURCE_UNREACHABLE and raised.value.retry is Retry.TIMED
    assert "is locked" in str(raised.value) and "locked_timeout_s" in str(raised.value)
    # A lock released while the source waits: the statement goes through, nothing is lost.
    patient = _source(path, MemoryStateStore(), busy_timeout_s=0.05, locked_timeout_s=60)
    done = threading.Event()
    failure: list[BaseException] = []

    def install() -> None:
        try:
            patient.check()
            capture.install(patient._conn())
        except BaseException as exc:
            failure.append(exc)
        done.set()

    worker = threading.Thread(target=install)
    worker.start()
    holder.execute("ROLLBACK")
    worker.join(60)
    assert done.is_set() and not failure
    assert capture.existing(sqlite3.connect(str(path))) == {capture.CHANGELOG, *capture.TRIGGERS}
    source.close()
    patient.close()
    holder.close()
