"""Dual write on a Postgres with no logical replication (``wal_level = replica``), to DynamoDB on moto.

What is checked, the way an operator runs it: history written before dual write reaches the
target through ``replicator dual-write``'s back-fill while an app keeps writing through
RoutingSaver (to both stores); a thread the target had and the source did not is removed; a
deletion during dual write reaches both; ``replicator cutover`` switches with no pipeline
(no slot, no broker), a thread waiting on ``interrupt()`` resumes on the target; ``rollback``
returns to dual writing, and both stores stay equal through their own savers at every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from connectors.registry import make_sink
from replicator.embedded import EmbeddedPostgres
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.migration import Phase, Store
from replicator.routing import RoutingSaver
from tests.integration.harness import Talker, assert_equal, cli, load, offline_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain_pg() -> Iterator[EmbeddedPostgres]:
    """A cluster where logical replication is off, as on a managed Postgres that cannot enable it."""
    with EmbeddedPostgres(wal_level="replica") as server:
        yield server


def _values(graph: Any, thread_id: str) -> dict[str, Any]:
    values: dict[str, Any] = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    return values


def _reference(thread_id: str) -> dict[str, Any]:
    graph = build_graph(InMemorySaver())
    run_conversation(graph, thread_id, turns=1, resume=False)
    graph.invoke(Command(resume="after the switch"), {"configurable": {"thread_id": thread_id}})
    return _values(graph, thread_id)


@pytest.mark.timeout(900)
def test_dual_write_backfill_cutover_and_rollback_without_logical_replication(
    tmp_path: Path, plain_pg: EmbeddedPostgres, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    dsn = plain_pg.create_database("dual")
    path = offline_config(
        tmp_path / "r.toml",
        dsn=dsn,
        moto=moto,
        table=dynamo_table,
        bucket=s3_bucket,
    )
    config = load(path)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
        assert row is not None and row[0] == "replica"
    target_saver = make_sink(config.targets[0]).saver()
    # A thread only the target has (an earlier attempt): the back-fill must remove it.
    run_conversation(build_graph(target_saver), "stale", turns=1)

    with RoutingSaver.from_config(path) as saver:
        graph = build_graph(saver)
        for k in range(3):
            run_conversation(graph, f"old-{k}", turns=2)
        run_conversation(graph, "pending", turns=1, resume=False)  # waits on interrupt()
        run_conversation(graph, "gone", turns=1)

        talker = Talker(graph, "live")  # keeps writing through every step below
        try:
            started = cli("dual-write", "--config", str(path), timeout=300)
            assert started.returncode == 0, started.stdout + started.stderr
            assert "dual writing" in started.stdout and "back-filled" in started.stdout
            record = saver.record()
            assert (record.phase, record.store, record.dual_write) == (Phase.DUAL_WRITING, Store.SOURCE, True)

            saver.delete_thread("gone")  # during dual write: gone from both stores
            assert target_saver.get_tuple({"configurable": {"thread_id": "gone"}}) is None

            again = cli("dual-write", "--config", str(path), timeout=300)  # re-runnable: the repair
            assert again.returncode == 0, again.stdout + again.stderr

            switched = cli("cutover", "--config", str(path), "--timeout", "60", timeout=600)
            assert switched.returncode == 0, switched.stdout + switched.stderr
            assert "write pause" in switched.stdout
            record = saver.record()
            assert (record.phase, record.store, record.drain_position) == (Phase.CUT_OVER, Store.TARGET, None)

            # The thread that waited on interrupt() resumes on the target.
            graph.invoke(Command(resume="after the switch"), {"configurable": {"thread_id": "pending"}})
            assert _values(build_graph(target_saver), "pending") == _reference("pending")

            written = talker.pause()
            assert_equal(config, threads=3 + 1 + written)  # old-*, pending, live-* (stale, gone removed)
            talker.resume()

            back = cli("rollback", "--config", str(path), timeout=300)
            assert back.returncode == 0, back.stdout + back.stderr
            record = saver.record()
            assert (record.phase, record.store) == (Phase.DUAL_WRITING, Store.SOURCE)
            run_conversation(graph, "after-rollback", turns=1)
        finally:
            written = talker.stop()
        assert_equal(config, threads=3 + 1 + 1 + written)  # dual writes go on after the rollback

        status = cli("status", "--config", str(path), "--json", timeout=120)
        assert '"dual_writing"' in status.stdout, status.stdout + status.stderr


def test_cutover_refuses_before_the_backfill_and_dual_write_refuses_after_cutover(
    tmp_path: Path, plain_pg: EmbeddedPostgres, moto: Any, dynamo_table: str
) -> None:
    from tests.integration.harness import move_phase

    dsn = plain_pg.create_database("dual_refused")
    path = offline_config(
        tmp_path / "r.toml",
        dsn=dsn,
        moto=moto,
        table=dynamo_table,
    )
    with RoutingSaver.from_config(path) as saver:
        run_conversation(build_graph(saver), "t", turns=1)
        move_phase(path, Phase.DUAL_WRITING)  # dual writing, but no back-fill has run
        refused = cli("cutover", "--config", str(path))
        assert refused.returncode == 1
        assert "not back-filled" in refused.stdout
        assert saver.record().phase is Phase.DUAL_WRITING

        move_phase(path, Phase.FENCING, Phase.CUT_OVER)
        result = cli("dual-write", "--config", str(path))
        assert result.returncode == 1
        assert "dual write starts from replicating" in result.stderr
        assert saver.record().phase is Phase.CUT_OVER
