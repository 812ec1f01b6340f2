"""The SQLite source through the whole pipeline: an app writing through SqliteSaver (WAL) while a
real ``replicator run`` process replicates to DynamoDB on moto through the real broker, killed
with SIGKILL mid-snapshot and mid-stream; the target ends equal to the source through both
savers, the app resumes on the target, and ``reset`` removes our triggers and changelog. Bad
source files fail the CLI with named errors. Waiting is bounded polling of real state."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from connectors.sources.sqlite import capture
from replicator.config import Config
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import open_state_store
from replicator.target_saver import target_saver
from tests.integration.faultkit import assert_same, log_events
from tests.integration.harness import (
    OTHER_KINDS,
    DaemonProcess,
    cli,
    load,
    other_kind_targets,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration


def _config(
    path: Path, source: Path, state: Path, services: dict[str, str], targets: str | None = None
) -> Path:
    suffix = uuid.uuid4().hex[:8]
    targets = (
        targets
        or f"""[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "{services["table"]}"
region = "us-east-1"
endpoint_url = "{services["endpoint"]}"
s3_bucket = "{services["bucket"]}"
"""
    )
    path.write_text(
        f"""[source]
kind = "sqlite"
path = "{source}"
snapshot_chunk_rows = 5
heartbeat_interval_s = 0.3
poll_interval_s = 0.02
trim_interval_s = 0

[state]
kind = "sqlite"
path = "{state}"

[kafka]
bootstrap_servers = "{services["bootstrap"]}"
topic = "{services["topic"]}"
partitions = 2
group_prefix = "g-{suffix}"
session_timeout_ms = 3000

{targets}
[log]
format = "json"
level = "info"
""",
        encoding="utf-8",
    )
    return path


def _saved(config: Config, name: str = "source") -> dict[str, Any]:
    state = open_state_store(config, create=False)
    try:
        return state.get(name) or {}
    finally:
        state.close()


def _changelog_rows(path: Path) -> int:
    with sqlite3.connect(str(path)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {capture.CHANGELOG}").fetchone()[0])


class Writer:
    """The app at work in a background thread: ``quota`` conversations (every third left at its
    interrupt), every third one followed by a ``delete_thread``, through its own connection."""

    def __init__(self, path: Path, quota: int) -> None:
        self.quota = quota
        self.saver = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
        self.graph = build_graph(self.saver)
        self.written: list[str] = []
        self.deleted: list[str] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                i = len(self.written)
                if i >= self.quota:  # wait for the test to allow more
                    self._stop.wait(0.05)
                    continue
                run_conversation(self.graph, f"live-{i}", resume=i % 3 != 1)
                self.written.append(f"live-{i}")
                if i % 3 == 2:
                    self.saver.delete_thread(f"live-{i - 1}")
                    self.deleted.append(f"live-{i - 1}")
                self._stop.wait(0.2)  # an app's pace, not a benchmark's
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert self.failure is None, repr(self.failure)


def test_sqlite_app_replicated_through_kills_then_moved_and_reset(
    tmp_path: Path, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    source = tmp_path / "app.sqlite"
    app = SqliteSaver(sqlite3.connect(str(source), check_same_thread=False))
    app.setup()  # WAL mode, SqliteSaver's tables
    graph = build_graph(app)
    for i in range(3):  # carried by the initial copy
        run_conversation(graph, f"before-{i}", resume=i != 1)
    run_conversation(graph, "big", attachment_bytes=400_000)  # S3 offload in the target
    services = {
        "bootstrap": broker.bootstrap_servers,
        "topic": kafka_topic,
        "endpoint": moto.endpoint_url,
        "table": dynamo_table,
        "bucket": s3_bucket,
    }
    config_path = _config(tmp_path / "replicator.toml", source, tmp_path / "state.sqlite", services)
    config = load(config_path)
    daemon = DaemonProcess(config_path, tmp_path)
    writer: Writer | None = None
    try:
        # 1. Killed mid-snapshot, after its second chunk was confirmed.
        daemon.start(LGREPL_FAULT="snapshot.between_chunks:2")
        assert daemon.wait(90) == -9, daemon.output()[-3000:]
        assert _saved(config)["snapshot"] == "running"
        installed = log_events(daemon.output(), "changelog installed")
        assert installed and installed[0]["created"] == [capture.CHANGELOG, *capture.TRIGGERS]

        # 2. The app writes from now on; the daemon resumes the copy, streams, is killed mid-stream.
        writer = Writer(source, quota=4).start()
        daemon.start(LGREPL_FAULT="source.after_read:4@streaming")
        assert daemon.wait(90) == -9, daemon.output()[-3000:]
        assert _saved(config)["snapshot"] == "done"
        assert log_events(daemon.output(), "resuming initial copy")

        # 3. No fault: it recovers from the changelog while the app goes on, deletions included.
        daemon.start()
        writer.quota = 7
        wait_for(lambda: len(writer.written) == writer.quota, 120, "the app to write and delete more")
        writer.stop()
        app.delete_thread("before-0")
        wait_caught_up(config, daemon, timeout=120)
        assert len(log_events(daemon.output(), "changelog installed")) == 1  # installed once only
        assert len(writer.deleted) == 2
        report = assert_same(config)  # SqliteSaver vs DynamoDBSaver, every thread
        assert report.threads == 4 - 1 + len(writer.written) - len(writer.deleted)
        assert report.checkpoints > 30 and report.writes > 30
        # Trimmed once every target applied it: the changelog empties while idle.
        wait_for(lambda: _changelog_rows(source) == 0, 30, "the changelog to be trimmed")
        assert daemon.terminate() == 0
    finally:
        if writer is not None:
            writer.stop()
        daemon.stop()

    # The app moves: the target's saver, continuing SqliteSaver's versions, resumes an interrupt.
    with target_saver(config_path) as saver:
        moved = build_graph(saver)
        assert saver.get_tuple({"configurable": {"thread_id": "before-0"}}) is None
        big = saver.get_tuple({"configurable": {"thread_id": "big"}})
        assert big is not None and len(big.checkpoint["channel_values"]["attachment"]) == 400_000
        pending = {"configurable": {"thread_id": "before-1"}}  # left at the subgraph's interrupt
        assert moved.get_state(pending).next
        moved.invoke(Command(resume="on-the-target 🦊"), pending)
        after = moved.get_state(pending)
        assert not after.next and "approved: on-the-target 🦊" in after.values["messages"]

    # Reset removes exactly what the replicator installed; the app's tables stay.
    result = cli("reset", "--config", str(config_path), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert capture.CHANGELOG in result.stdout
    with sqlite3.connect(str(source)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert not {n for n in names if n.startswith("replicator")}
    assert {"checkpoints", "writes"} <= names


def test_sqlite_app_streamed_into_postgres_sqlite_and_any_saver_at_once(
    tmp_path: Path, broker: Any, kafka_topic: str, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLite source into the other target kinds, all three fed by one daemon from one topic
    while the app writes and deletes: each ends equal to the source through its own saver, and the
    app resumes on each."""
    from tests.savers import SQLITE_PATH_ENV

    monkeypatch.setenv(SQLITE_PATH_ENV, str(tmp_path / "generic.sqlite"))  # the daemon inherits it
    source = tmp_path / "app.sqlite"
    app = SqliteSaver(sqlite3.connect(str(source), check_same_thread=False))
    app.setup()
    graph = build_graph(app)
    for i in range(2):  # carried by the initial copy
        run_conversation(graph, f"before-{i}", resume=i != 1)
    database = f"tgt_{uuid.uuid4().hex[:10]}"
    targets = other_kind_targets(pg.create_database(database), tmp_path)
    services = {"bootstrap": broker.bootstrap_servers, "topic": kafka_topic}
    config_path = _config(tmp_path / "replicator.toml", source, tmp_path / "state.sqlite", services, targets)
    config = load(config_path)
    daemon = DaemonProcess(config_path, tmp_path)
    writer: Writer | None = None
    try:
        daemon.start()
        writer = Writer(source, quota=5).start()
        wait_for(lambda: len(writer.written) == writer.quota, 120, "the app to write and delete")
        writer.stop()
        app.delete_thread("before-0")
        wait_caught_up(config, daemon, timeout=120)
        result = cli("verify", "--config", str(config_path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("0 differences") == 3, result.stdout
        threads = 2 - 1 + len(writer.written) - len(writer.deleted)
        assert all(f"{name}: {threads} threads" in result.stdout for name in OTHER_KINDS)
        assert daemon.terminate() == 0
    finally:
        if writer is not None:
            writer.stop()
        daemon.stop()
    try:
        for name in OTHER_KINDS:
            with target_saver(config_path, name) as saver:
                moved = build_graph(saver)
                assert saver.get_tuple({"configurable": {"thread_id": "before-0"}}) is None
                pending = {"configurable": {"thread_id": "before-1"}}  # left at its interrupt
                assert moved.get_state(pending).next, name
                moved.invoke(Command(resume=f"on {name}"), pending)
                assert f"approved: on {name}" in moved.get_state(pending).values["messages"], name
    finally:
        pg.drop_database(database)


def _bad_config(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / f"bad-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        f"""[source]
kind = "sqlite"
path = "{source}"

[state]
kind = "sqlite"
path = "{tmp_path / "state.sqlite"}"

[kafka]
bootstrap_servers = "127.0.0.1:9"

[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "unused"
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("command", "make", "message"),
    [
        ("check", lambda p: None, "does not exist"),
        (
            "check",
            lambda p: p.write_bytes(b"not a database " * 200),
            "is it a readable, writable SQLite file",
        ),
        (
            "run",
            lambda p: sqlite3.connect(str(p)).execute("CREATE TABLE t (x)"),
            "not a SqliteSaver database",
        ),
    ],
    ids=["missing", "not-sqlite", "other-tables"],
)
def test_bad_source_files_fail_the_cli_with_named_errors(
    tmp_path: Path, command: str, make: Any, message: str
) -> None:
    source = tmp_path / "app.sqlite"
    make(source)
    result = cli(command, "--config", str(_bad_config(tmp_path, source)), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: source database ") and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert source.exists() == (message != "does not exist")  # a missing file is never created
