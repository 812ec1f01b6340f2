"""PostgresSaver -> pgoutput -> Kafka -> DynamoDBSaver, end to end, with the real daemon process.

Correctness is judged by the savers themselves: after replication, DynamoDBSaver must return
what PostgresSaver returns for every thread and namespace (replicator.verify).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from langgraph.types import Command

from connectors.registry import make_sink
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import PostgresStateStore, applier_positions
from replicator.target_saver import target_saver
from tests.integration.harness import (  # noqa: F401 - App, compare, assert_equal re-exported
    App,
    DaemonProcess,
    assert_equal,
    cli,
    compare,
    load,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_live_graph_replicates_exactly(app: App, config_path: Path, daemon: DaemonProcess) -> None:
    config = load(config_path)
    for i in range(3):  # before the daemon exists: carried by the initial snapshot
        app.converse(f"before-{i}", turns=2)
    app.converse("big-before", attachment_bytes=1_200_000)  # > 1 MiB: split in Kafka, S3 in DynamoDB
    daemon.start()
    for i in range(6):  # while it streams: subgraphs, interrupts left pending, unicode
        app.converse(f"live-{i}", turns=2, resume=i % 2 == 0)
    app.converse("big-live", attachment_bytes=450_000)  # > 400 KiB item limit: S3 offload
    app.delete("before-1")
    app.delete("live-3")
    wait_caught_up(config, daemon)
    report = assert_equal(config, threads=9)
    assert report.checkpoints > 50 and report.writes > 50

    target = make_sink(config.targets[0]).saver()
    assert target.get_tuple({"configurable": {"thread_id": "before-1"}}) is None
    assert target.get_tuple({"configurable": {"thread_id": "live-3"}}) is None
    pending = target.get_tuple({"configurable": {"thread_id": "live-1"}})
    assert pending is not None and any(w[1] == "__interrupt__" for w in pending.pending_writes)
    subgraph = [
        t
        for t in target.list({"configurable": {"thread_id": "live-0"}})
        if t.config["configurable"]["checkpoint_ns"]
    ]
    assert subgraph, "subgraph checkpoints (non-empty checkpoint_ns) were not replicated"
    big = target.get_tuple({"configurable": {"thread_id": "big-before"}})
    assert big is not None and len(big.checkpoint["channel_values"]["attachment"]) == 1_200_000

    result = cli("verify", "--config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 differences" in result.stdout

    status = cli("status", "--config", str(config_path), "--json", "--wait", "60")
    assert status.returncode == 0, status.stderr
    assert '"caught_up": true' in status.stdout

    assert daemon.terminate() == 0  # SIGTERM: clean stop
    assert '"daemon stopped"' in daemon.output()

    # The move: DynamoDBSaver counts channel versions in ints and cannot continue the source's
    # strings; through target_saver the conversation left at its interrupt goes on.
    versions = pending.checkpoint["channel_versions"]
    with pytest.raises(NotImplementedError):
        target.get_next_version(versions["messages"], None)
    with target_saver(config_path) as saver:
        graph = build_graph(saver)
        thread = {"configurable": {"thread_id": "live-1"}}
        graph.invoke(Command(resume="yes-on-dynamodb"), thread)
        assert "approved: yes-on-dynamodb" in graph.get_state(thread).values["messages"]
        run_conversation(graph, "live-1", turns=2)  # more turns, interrupts included
        assert not graph.get_state(thread).next
        assert saver.get_tuple(thread).checkpoint["channel_versions"]["messages"] > versions["messages"]


def test_replay_after_restart_changes_nothing_and_resumes(
    app: App, config_path: Path, daemon: DaemonProcess
) -> None:
    config = load(config_path)
    app.converse("a", turns=2)
    daemon.start()
    wait_caught_up(config, daemon)
    assert daemon.terminate() == 0
    app.converse("b", turns=1, resume=False)  # written while the daemon is down
    app.delete("a")
    daemon.start()
    wait_caught_up(config, daemon)
    assert_equal(config, threads=1)


def test_sigkill_mid_stream_then_restart_converges(
    app: App, config_path: Path, daemon: DaemonProcess
) -> None:
    config = load(config_path)
    daemon.start()
    wait_caught_up(config, daemon)
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            app.converse(f"w-{i}", turns=1, attachment_bytes=200_000 if i % 5 == 0 else 0)
            if i % 4 == 3:
                app.delete(f"w-{i - 2}")
            written.append(f"w-{i}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    try:
        # Kill while events are flowing: once the target applied some, and the app still writes.
        wait_for(
            lambda: sum(int(v.get("events", 0)) for v in applier_positions(state, "dynamo").values()) > 60,
            120,
            "first events applied",
        )
        assert daemon.kill() == -9
        daemon.start()
        wait_for(lambda: len(written) >= 12, 120, "more conversations")
        assert daemon.kill() == -9
        daemon.start()
    finally:
        stop.set()
        thread.join()
        state.close()
    wait_caught_up(config, daemon)
    deleted = len([i for i in range(len(written)) if i % 4 == 3])
    assert_equal(config, threads=len(written) - deleted)


def test_sigkill_mid_snapshot_then_restart_converges(
    app: App, config_path: Path, daemon: DaemonProcess
) -> None:
    config = load(config_path)
    for i in range(12):
        app.converse(f"s-{i}", turns=2)
    # Die (SIGKILL, from inside) after the third snapshot chunk was published and saved.
    daemon.start(LGREPL_FAULT="snapshot.between_chunks:3")
    assert daemon.wait(120) == -9
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    saved = state.get("source") or {}
    state.close()
    assert saved.get("snapshot") == "running" and saved.get("cursor"), saved
    app.delete("s-0")  # changes between the crash and the restart
    app.converse("s-new", turns=1)
    daemon.start()
    wait_caught_up(config, daemon)
    assert_equal(config, threads=12)
