"""After a cutover, a thread the target does not hold whole yet stays on the source: no call waits.

Real Postgres, broker and moto; the daemon is frozen (SIGSTOP) so the pipeline cannot carry
anything while the switch happens, which makes "the target lacks this thread's last changes"
certain rather than a race. A thread interrupted before the switch is resumed after it with
``Command(resume=...)``: the call returns at once, on the source, and the thread is marked held;
``finish`` refuses while the target lacks a held thread's writes; once the pipeline carried
them, the thread's next call goes straight to the target (shown with the daemon stopped), and
the two stores end equal, the conversation intact.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from connectors.registry import make_sink, make_switchboard
from replicator.cutover import held_behind, run_finish
from replicator.embedded.demo_app import build_graph
from replicator.migration import Phase, Refused
from replicator.routing import RoutingSaver
from replicator.state import open_state_store
from replicator.status import migration_view
from tests.integration.harness import (
    DaemonProcess,
    assert_equal,
    cli,
    load,
    replicator_items,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration


def _turn(graph: Any, thread_id: str, turn: int) -> None:
    graph.invoke(
        {"messages": [f"turn {turn} 👋"], "attachment": b"x" * 64}, {"configurable": {"thread_id": thread_id}}
    )


def _resume(graph: Any, thread_id: str, turn: int) -> None:
    graph.invoke(Command(resume=f"ok-{turn}"), {"configurable": {"thread_id": thread_id}})


def _values(graph: Any, thread_id: str) -> dict[str, Any]:
    values: dict[str, Any] = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    return values


def _flip(config_path: Path) -> int:
    """The cutover's flip exactly as ``run_cutover`` does it (fence, marker, record), without
    the command's waits after it, which are not what this test is about."""
    config = load(config_path)
    board = make_switchboard(config.source)
    try:
        with board.fence(10) as fence:
            marker = fence.mark()
            fence.commit(
                fence.record.moved(Phase.FENCING).moved(
                    Phase.CUT_OVER,
                    target="dynamo",
                    drain_position=marker,
                    drain_partitions=tuple(range(config.kafka.partitions)),
                )
            )
        return fence.record.epoch
    finally:
        board.close()


def test_a_thread_the_target_lacks_stays_on_the_source_and_moves_once_applied(
    config_path: Path, daemon: DaemonProcess
) -> None:
    config = load(config_path)
    state = None  # opened once the daemon created it
    target = make_sink(config.targets[0]).saver()
    board = make_switchboard(config.source)
    with RoutingSaver.from_config(config_path) as saver:
        graph = build_graph(saver)
        _turn(graph, "before", 0)
        _resume(graph, "before", 0)
        daemon.start()
        wait_caught_up(config, daemon)
        state = open_state_store(config, create=False)
        try:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGSTOP)  # the pipeline carries nothing from here
            _turn(graph, "mid", 0)  # interrupted on the source; the target never sees it yet
            epoch = _flip(config_path)
            record = saver.record()
            assert (record.phase, record.epoch) == (Phase.CUT_OVER, epoch)

            # The resume returns (with the pipeline frozen, waiting for it would never end) and
            # goes to the source, which holds the interrupt: the thread is held there.
            _resume(graph, "mid", 0)
            _turn(graph, "mid", 1)
            source_latest = saver._source.get_tuple({"configurable": {"thread_id": "mid"}})
            assert source_latest is not None
            assert target.get_tuple({"configurable": {"thread_id": "mid"}}) is None
            held = board.held("mid", epoch)
            assert held is not None and held >= (record.drain_position or 0)
            view = migration_view(board, state)
            assert view["threads_held_on_source"] >= 1, view
            with pytest.raises(Refused, match="held on the source"):
                run_finish(config, timeout=1.0)
            assert board.record().phase is Phase.CUT_OVER

            daemon.proc.send_signal(signal.SIGCONT)
            wait_for(
                lambda: not held_behind(board, state, board.record()), 120, "the held thread to be applied"
            )
            latest = target.get_tuple({"configurable": {"thread_id": "mid"}})
            assert latest is not None and latest.checkpoint["id"] == source_latest.checkpoint["id"]

            # Applied: the thread's next call goes straight to the target (the pipeline is
            # stopped, so only a direct write can put the resume there).
            assert daemon.terminate() == 0
            _resume(graph, "mid", 1)
            on_target = target.get_tuple({"configurable": {"thread_id": "mid"}})
            assert on_target is not None and on_target.checkpoint["id"] != latest.checkpoint["id"]
            reference = build_graph(InMemorySaver())
            for turn in range(2):
                _turn(reference, "mid", turn)
                _resume(reference, "mid", turn)
            assert _values(graph, "mid") == _values(reference, "mid")

            daemon.start()
            wait_caught_up(config, daemon)
            assert_equal(config, threads=2)
            assert run_finish(config, timeout=30).phase is Phase.FINISHED
            # Then, the daemon stopped, `finish --drop` removes what the replicator added to the
            # source (run again after `finish`: it is not refused) and what only the replicator
            # reads in the target; the target's saver still reads every thread as before.
            refused = cli("finish", "--config", str(config_path), "--drop")  # the daemon still runs
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "stop `replicator run` first" in refused.stderr and "nothing was dropped" in refused.stderr
            assert daemon.terminate() == 0
            assert replicator_items(config.targets[0].endpoint_url, config.targets[0].table) > 0
            dropped = cli("finish", "--config", str(config_path), "--drop")
            assert dropped.returncode == 0, dropped.stdout + dropped.stderr
            assert "slot" in dropped.stdout and "publication" in dropped.stdout, dropped.stdout
            assert "replicator items (blob state, write index)" in dropped.stdout, dropped.stdout
            assert replicator_items(config.targets[0].endpoint_url, config.targets[0].table) == 0
            assert_equal(config, threads=2)
            again = cli("finish", "--config", str(config_path), "--drop")  # a failed drop is rerun whole
            assert again.returncode == 0, again.stdout + again.stderr
            assert "0 replicator items" in again.stdout, again.stdout
            source = config.source
            with psycopg.connect(source.dsn.get_secret_value()) as conn:
                slots = conn.execute(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (source.slot,)
                )
                assert slots.fetchone() == (0,)
                pubs = conn.execute(
                    "SELECT count(*) FROM pg_publication WHERE pubname = %s", (source.publication,)
                )
                assert pubs.fetchone() == (0,)
        finally:
            if daemon.alive() and daemon.proc is not None:
                daemon.proc.send_signal(signal.SIGCONT)
            if state is not None:
                state.close()
            board.close()
