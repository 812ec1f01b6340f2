"""PostgresSaver -> pgoutput -> Kafka -> PostgresSaver, SqliteSaver and the plain-Redis saver on a
real redis-server through the generic ``kind = "saver"`` target (DynamoDB: test_pipeline.py), end
to end, with the real daemon process: a real app writes during replication (snapshot, live
stream, deletes, a large value, a kill -9 of the daemon), the target ends equal through both
savers' own reads (``replicator verify``), then the graph resumes on the target through
``replicator.target_saver`` and keeps running, interrupts included.

Channel versions: PostgresSaver, SqliteSaver (and InMemorySaver) use string versions
``f"{n:032}.{rand:016}"``; the plain-Redis saver (like DynamoDBSaver) counts in integers and cannot
continue a string (``NotImplementedError``), which the test shows on their bare saver before
resuming through ``target_saver``, whose ``get_next_version`` is the source saver's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from connectors.registry import make_sink
from replicator.embedded import EmbeddedPostgres
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import PostgresStateStore, applier_positions
from replicator.target_saver import target_saver
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
from tests.savers import REDIS_PREFIX_ENV, REDIS_URL_ENV

pytestmark = pytest.mark.integration


@dataclass
class Target:
    """A target store, as a ``[[targets]]`` section."""

    kind: str
    toml: str
    int_versions: bool = False  # the saver's own get_next_version cannot continue a str version
    conversations: int = 40  # written during replication


def _section(kind: str, **settings: str) -> str:
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    return f'[[targets]]\nname = "moved"\nkind = "{kind}"\n{lines}batch_events = 300\n'


# DynamoDB: tests/integration/test_pipeline.py (the same run, and the resume through target_saver).
@pytest.fixture(params=["postgres", "sqlite", "saver-redis"])
def target(
    request: pytest.FixtureRequest, pg: EmbeddedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    if request.param == "saver-redis":
        redis_server = request.getfixturevalue("redis_server")
        # The factory reads where Redis is from the environment, as a user's factory would; the
        # daemon and the CLI inherit it.
        monkeypatch.setenv(REDIS_URL_ENV, redis_server.url)
        monkeypatch.setenv(REDIS_PREFIX_ENV, f"p{uuid.uuid4().hex[:8]}")
        yield Target(
            "saver-redis", _section("saver", factory="tests.savers:redis_from_env"), int_versions=True
        )
    elif request.param == "postgres":
        database = f"tgt_{uuid.uuid4().hex[:12]}"
        dsn = pg.create_database(database)
        yield Target("postgres", _section("postgres", dsn=dsn))
        pg.drop_database(database)
    else:
        path = tmp_path / "target" / "checkpoints.sqlite"
        path.parent.mkdir()
        yield Target("sqlite", _section("sqlite", path=str(path)))


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
            while not stop.is_set() and i < target.conversations:
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

    if target.int_versions:
        # The target's bare saver cannot continue the source's versions: what target_saver fixes.
        with pytest.raises(NotImplementedError):
            make_sink(config.targets[0]).saver().get_next_version("00000000000000000000000000000003.05", None)

    # The move: the app opens the target's saver and goes on where the source left off.
    with target_saver(target_config) as saver:
        graph = build_graph(saver)
        assert saver.get_tuple({"configurable": {"thread_id": "before-1"}}) is None
        big = saver.get_tuple({"configurable": {"thread_id": "big-before"}})
        assert big is not None and len(big.checkpoint["channel_values"]["attachment"]) == 1_200_000

        pending = {"configurable": {"thread_id": "live-0"}}  # left at the subgraph's interrupt
        before = graph.get_state(pending)
        assert before.next and any(t.interrupts for t in before.tasks), before
        versions = saver.get_tuple(pending).checkpoint["channel_versions"]
        assert all(isinstance(v, str) for v in versions.values())  # as the source wrote them

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


@pytest.mark.parametrize("target", ["postgres", "sqlite", "saver-redis"], indirect=True)
def test_fenced_cutover_to_the_target_and_rollback(
    target: Target, target_config: Path, tmp_path: Path
) -> None:
    """The fenced switch into the other target kinds (DynamoDB: test_cutover.py), starting
    with the move teams make most: PostgresSaver onto a bigger Postgres. An app on
    ``RoutingSaver`` writes while the daemon replicates; ``cutover`` moves it to the target,
    where a conversation left at its interrupt resumes and a new one starts (read back from the
    target store alone); ``rollback`` brings it back with every write made on the target already
    on the source (equal with the pipeline stopped); a second cutover and ``finish`` close it."""
    from langgraph.checkpoint.memory import InMemorySaver

    from replicator.migration import Phase, Store
    from replicator.routing import RoutingSaver

    config = load(target_config)
    daemon = DaemonProcess(target_config, tmp_path)
    try:
        with RoutingSaver.from_config(target_config) as saver:
            graph = build_graph(saver)
            run_conversation(graph, "before", turns=2)
            run_conversation(graph, "pending", turns=1, resume=False)  # waits on interrupt()
            daemon.start()
            wait_caught_up(config, daemon)

            result = cli("cutover", "--config", str(target_config), "--max-lag", "30", timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "cut over every thread to moved" in result.stdout, result.stdout
            assert (saver.record().phase, saver.record().store) == (Phase.CUT_OVER, Store.TARGET)

            # On the target now, with the pipeline stopped: only the routing saver can put
            # these writes there.
            assert daemon.terminate() == 0
            graph.invoke(Command(resume="on the bigger one"), {"configurable": {"thread_id": "pending"}})
            run_conversation(graph, "after", turns=1)
            pending = {"configurable": {"thread_id": "pending"}}
            reference = build_graph(InMemorySaver())
            run_conversation(reference, "pending", turns=1, resume=False)
            reference.invoke(Command(resume="on the bigger one"), pending)
            with target_saver(target_config) as alone:  # the target store alone
                on_target = build_graph(alone)
                assert on_target.get_state(pending).values == reference.get_state(pending).values
                assert on_target.get_state({"configurable": {"thread_id": "after"}}).values

            result = cli("rollback", "--config", str(target_config))
            assert result.returncode == 0, result.stdout + result.stderr
            assert saver.record().store is Store.SOURCE
            assert_equal(config, threads=3)  # the source holds every write made on the target

            run_conversation(graph, "after-rollback", turns=1)
            daemon.start()
            wait_caught_up(config, daemon)
            assert_equal(config, threads=4)
            result = cli("cutover", "--config", str(target_config), "--max-lag", "30", timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
            assert daemon.terminate() == 0
            finished = cli("finish", "--config", str(target_config))
            assert finished.returncode == 0, finished.stdout + finished.stderr
            assert "finished: the app stays on the target" in finished.stdout
            assert saver.record().phase is Phase.FINISHED
    finally:
        daemon.stop()
