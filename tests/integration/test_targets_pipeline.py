"""PostgresSaver -> pgoutput -> Kafka -> PostgresSaver / SqliteSaver, end to end, with the real
daemon process: a real app writes during replication (snapshot, live stream, deletes, a large
value, a kill -9 of the daemon), the target ends equal through both savers' own reads
(``replicator verify``), then the graph resumes on the target's saver and keeps running.

Channel versions need no adaptation here: PostgresSaver, SqliteSaver (and InMemorySaver) all use
string versions ``f"{n:032}.{rand:016}"``, so the target saver's ``get_next_version`` continues
the versions the source wrote.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from psycopg.rows import dict_row

from replicator.embedded import EmbeddedPostgres
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import PostgresStateStore, applier_positions
from tests.integration.harness import (
    App,
    DaemonProcess,
    assert_equal,
    cli,
    load,
    wait_caught_up,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


@dataclass
class Target:
    """A target store and how the app opens its saver after the move."""

    kind: str
    toml: str
    saver: Any  # () -> (saver, close)


@pytest.fixture(params=["postgres", "sqlite"])
def target(request: pytest.FixtureRequest, pg: EmbeddedPostgres, tmp_path: Path) -> Iterator[Target]:
    if request.param == "postgres":
        database = f"tgt_{uuid.uuid4().hex[:12]}"
        dsn = pg.create_database(database)

        def postgres_saver() -> tuple[Any, Any]:
            conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
            return PostgresSaver(conn), conn.close  # type: ignore[arg-type]

        toml = f'[[targets]]\nname = "moved"\nkind = "postgres"\ndsn = "{dsn}"\nbatch_events = 300\n'
        yield Target("postgres", toml, postgres_saver)
        pg.drop_database(database)
    else:
        path = tmp_path / "target" / "checkpoints.sqlite"
        path.parent.mkdir()

        def sqlite_saver() -> tuple[Any, Any]:
            conn = sqlite3.connect(path, check_same_thread=False)
            return SqliteSaver(conn), conn.close

        toml = f'[[targets]]\nname = "moved"\nkind = "sqlite"\npath = "{path}"\nbatch_events = 300\n'
        yield Target("sqlite", toml, sqlite_saver)


@pytest.fixture
def target_config(tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, target: Target) -> Path:
    return write_config(
        tmp_path / "replicator.toml",
        dsn=pg_dsn,
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        extra_source="snapshot_chunk_rows = 40",
        target=target.toml,
    )


def test_app_moves_to_the_target_and_keeps_running(
    app: App, target: Target, target_config: Path, tmp_path: Path
) -> None:
    config = load(target_config)
    daemon = DaemonProcess(target_config, tmp_path)
    try:
        for i in range(3):  # carried by the initial snapshot
            app.converse(f"before-{i}", turns=2)
        app.converse("big-before", attachment_bytes=1_200_000)  # > 1 MiB: split in Kafka
        daemon.start()

        stop = threading.Event()
        written: list[str] = []

        def writer() -> None:  # the app keeps writing through the kill and the restart
            i = 0
            while not stop.is_set() and i < 40:
                app.converse(f"live-{i}", turns=2, resume=i % 3 != 0)  # every third left at its interrupt
                if i % 5 == 4:
                    app.delete(f"live-{i - 2}")
                written.append(f"live-{i}")
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
        try:
            wait_for(
                lambda: sum(int(v.get("events", 0)) for v in applier_positions(state, "moved").values()) > 40,
                120,
                "first live events applied",
            )
            assert daemon.kill() == -9
            daemon.start()
            wait_for(lambda: len(written) >= 10, 120, "more conversations")
        finally:
            stop.set()
            thread.join()
            state.close()
        app.delete("before-1")
        wait_caught_up(config, daemon)
        deleted = len([i for i in range(len(written)) if i % 5 == 4])
        report = assert_equal(config, threads=3 - 1 + 1 + len(written) - deleted)
        assert report.checkpoints > 100 and report.writes > 100

        result = cli("verify", "--config", str(target_config))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 differences" in result.stdout
        assert daemon.terminate() == 0
    finally:
        daemon.stop()

    # The move: the app opens the target's own saver and goes on where the source left off.
    saver, close = target.saver()
    try:
        graph = build_graph(saver)
        assert saver.get_tuple({"configurable": {"thread_id": "before-1"}}) is None
        big = saver.get_tuple({"configurable": {"thread_id": "big-before"}})
        assert big is not None and len(big.checkpoint["channel_values"]["attachment"]) == 1_200_000

        pending = {"configurable": {"thread_id": "live-0"}}  # left at the subgraph's interrupt
        before = graph.get_state(pending)
        assert before.next and any(t.interrupts for t in before.tasks), before
        versions = saver.get_tuple(pending).checkpoint["channel_versions"]
        assert all(isinstance(v, str) for v in versions.values())  # no adaptation needed

        graph.invoke(Command(resume="yes-on-the-target"), pending)
        after = graph.get_state(pending)
        assert not after.next
        assert "approved: yes-on-the-target" in after.values["messages"]
        assert after.values["messages"][-1].startswith("done after")

        counter = after.values["counter"]
        run_conversation(graph, "live-0", turns=2)  # more steps, interrupts included
        final = graph.get_state(pending)
        assert final.values["counter"] == counter + 2 and not final.next
        assert "approved: yes-1" in final.values["messages"]
        new_versions = saver.get_tuple(pending).checkpoint["channel_versions"]
        assert new_versions["messages"] > versions["messages"]
    finally:
        close()
