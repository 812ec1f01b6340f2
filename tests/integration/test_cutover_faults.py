"""Kill -9 at every step of a switch, of the daemon while cut over, and of an app process
between its two writes: each leaves a state from which ``cutover`` or ``rollback`` completes
with nothing lost.

One scenario on one set of services (a daemon start and catch-up costs more than the kills):
each kill is its own numbered step, and after every kill the test checks the record, that the
app still writes to the store it was on, and that running the command again completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.migration import Phase, Store
from replicator.routing import RoutingSaver
from tests.integration.harness import DaemonProcess, assert_equal, cli, load, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture
def config_path(dynalite_config_path: Path) -> Path:
    """DynamoDB on dynalite: this module compares every thread through both savers often."""
    return dynalite_config_path


KILLED = -signal.SIGKILL


def _switch(config_path: Path, command: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [command, "--config", str(config_path), "--timeout", "60"]
    if command == "cutover":
        args += ["--max-lag", "30"]
    return cli(*args, env={"LGREPL_FAULT": fault} if fault else None, timeout=600)


def _app(config_path: Path, prefix: str, conversations: int, fault: str = "") -> subprocess.Popen[bytes]:
    """An app process writing ``conversations`` conversations through its own RoutingSaver."""
    code = (
        "import sys\n"
        "from replicator.embedded.demo_app import build_graph, run_conversation\n"
        "from replicator.routing import RoutingSaver\n"
        "with RoutingSaver.from_config(sys.argv[1]) as saver:\n"
        "    graph = build_graph(saver)\n"
        "    for i in range(int(sys.argv[3])):\n"
        "        run_conversation(graph, f'{sys.argv[2]}-{i}', turns=1)\n"
    )
    env = {"LGREPL_FAULT": fault} if fault else {}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(config_path), prefix, str(conversations)], env={**os.environ, **env}
    )


@pytest.mark.timeout(1500)
def test_kill_9_at_every_step_of_cutover_and_rollback(config_path: Path, daemon: DaemonProcess) -> None:
    config = load(config_path)
    threads = 0
    with RoutingSaver.from_config(config_path) as saver:
        graph = build_graph(saver)

        def converse(thread_id: str) -> None:
            nonlocal threads
            run_conversation(graph, thread_id, turns=1)
            threads += 1

        def phase() -> tuple[Phase, Store]:
            record = saver.record()
            return record.phase, record.store

        converse("before")
        daemon.start()
        wait_caught_up(config, daemon)

        # 1. The cutover command killed at each of its steps: the record says fencing, the app
        #    still writes to the source (the fence died with the process), a rerun completes.
        for n, fault in enumerate(("cutover.fencing", "cutover.in_fence", "cutover.before_flip")):
            result = _switch(config_path, "cutover", fault)
            assert result.returncode == KILLED, result.stdout + result.stderr
            assert phase() == (Phase.FENCING, Store.SOURCE), fault
            converse(f"after-killed-cutover-{n}")
            assert _source_has(config_path, f"after-killed-cutover-{n}")
        result = _switch(config_path, "cutover")
        assert result.returncode == 0, result.stdout + result.stderr
        assert phase() == (Phase.CUT_OVER, Store.TARGET)
        wait_caught_up(config, daemon)
        assert_equal(config, threads=threads)

        # 2. The daemon killed while cut over: the app goes on against the target, the restarted
        #    daemon carries the shadow copies again, the stores stay equal.
        daemon.kill()
        converse("daemon-down")
        daemon.start()
        wait_caught_up(config, daemon)
        assert_equal(config, threads=threads)

        # 3. An app process killed between its two writes (source committed, target not yet):
        #    the pipeline brings the write to the target.
        app = _app(config_path, "killed-app", 3, fault="routing.between_stores:3")
        assert app.wait(120) == KILLED
        threads += 1  # the first conversation of the killed app (its second put killed it)
        wait_caught_up(config, daemon)
        assert_equal(config, threads=threads)

        # 4. The rollback command killed at each of its steps: rolling_back, the app still on
        #    the target, a rerun completes and the source holds every write.
        for n, fault in enumerate(("rollback.rolling_back", "rollback.in_fence")):
            result = _switch(config_path, "rollback", fault)
            assert result.returncode == KILLED, result.stdout + result.stderr
            assert phase() == (Phase.ROLLING_BACK, Store.TARGET), fault
            converse(f"after-killed-rollback-{n}")
        result = _switch(config_path, "rollback")
        assert result.returncode == 0, result.stdout + result.stderr
        assert phase() == (Phase.ROLLED_BACK, Store.SOURCE)
        converse("rolled-back")
        wait_caught_up(config, daemon)
        assert_equal(config, threads=threads)

        # 5. After all of it, a cutover still completes.
        result = _switch(config_path, "cutover")
        assert result.returncode == 0, result.stdout + result.stderr
        assert phase() == (Phase.CUT_OVER, Store.TARGET)


def _source_has(config_path: Path, thread_id: str) -> bool:
    import psycopg

    with psycopg.connect(load(config_path).source.dsn.get_secret_value()) as conn:
        row = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()
    return bool(row and row[0])
