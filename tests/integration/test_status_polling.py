"""``status`` as a script that decides the switch polls it: plain ``replicator status --json``,
no ``[http]`` endpoint, after a run with a kill -9 and a restart. It says caught up on an idle,
applied pipeline on every call (the replicator's own WAL, its positions and heartbeats, must not
hold it back), and never while a change is unapplied."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import App, DaemonProcess, assert_equal, cli, load, wait_caught_up

pytestmark = pytest.mark.integration


@pytest.fixture
def config_path(dynalite_config_path: Path) -> Path:
    """DynamoDB on dynalite: this module compares every thread through both savers often."""
    return dynalite_config_path


def poll(config: Path) -> tuple[bool, float, dict[str, Any]]:
    started = time.monotonic()
    result = cli("status", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return bool(report["caught_up"]), time.monotonic() - started, report


def test_plain_status_json_says_caught_up_when_it_is_and_only_then(
    app: App, config_path: Path, tmp_path: Path, measured: list[str]
) -> None:
    config = load(config_path)
    daemon = DaemonProcess(config_path, tmp_path)
    try:
        for i in range(3):
            app.converse(f"before-{i}", turns=1)
        daemon.start()
        wait_caught_up(config, daemon)
        app.converse("between", turns=1)
        assert daemon.kill() == -9
        daemon.start()
        app.converse("after", turns=1)
        wait_caught_up(config, daemon)

        answers = [poll(config_path) for _ in range(5)]  # idle and applied: every call says so
        assert [caught for caught, _, _ in answers] == [True] * 5, answers[-1][2]
        seconds = [round(s, 2) for _, s, _ in answers]

        assert daemon.terminate() == 0  # nothing applies now, and nothing is left to apply
        assert poll(config_path)[0] is True
        app.converse("unapplied", turns=1)
        caught, waited, report = poll(config_path)
        assert caught is False and report["targets"]["dynamo"]["caught_up"] is False
        assert waited < 15  # answers within its settle time, a few heartbeats, not forever

        daemon.start()
        deadline = time.monotonic() + 60
        while not (caught := poll(config_path)[0]):
            assert time.monotonic() < deadline, "status never said caught up after the restart"
        assert_equal(config, threads=6)  # and it was: the unapplied change is in the target now
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    measured.append(
        f"status --json (no endpoint), idle and applied: caught up 5 of 5 calls, seconds per call {seconds}"
    )
