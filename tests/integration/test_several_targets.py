"""Two targets of different kinds fed by one daemon from one topic, one of them throttled.

A SQLite target and a DynamoDB target (moto, behind the fault proxy) each have their own applier,
consumer group and positions. While every data request to DynamoDB is answered with a
throttling error, the app keeps writing: the SQLite target catches up with the source on its own
(its lag stays low) while the DynamoDB target falls behind; once the throttling stops, DynamoDB
catches up too and both end equal to the source through their own savers (``replicator verify``
of every target).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replicator.state import open_state_store
from replicator.status import collect, source_head
from tests.integration.faultproxy import Action, FaultProxy, Request
from tests.integration.harness import App, DaemonProcess, cli, load, wait_caught_up, write_config

pytestmark = pytest.mark.integration

DATA_PATH = {"BatchWriteItem", "BatchGetItem", "Query", "GetItem", "S3:PUT", "S3:GET", "S3:POST"}


class Throttle:
    """A fault-proxy schedule: every DynamoDB/S3 data request throttled while ``on`` is set."""

    def __init__(self) -> None:
        self.on = threading.Event()

    def __call__(self, request: Request) -> Action:
        if self.on.is_set() and request.operation in DATA_PATH:
            return Action.THROTTLE
        return Action.FORWARD


def _report(config: Any, head: int, slot: dict[str, Any]) -> dict[str, Any]:
    """Where every target is against the source head ``head`` (taken once the app stopped
    writing: the replicator's own position writes keep moving the live head)."""
    state = open_state_store(config, create=False)
    try:
        return collect(config, state, head, slot)
    finally:
        state.close()


def test_a_throttled_target_never_holds_back_another(
    app: App,
    tmp_path: Path,
    pg_dsn: str,
    broker: Any,
    kafka_topic: str,
    moto: Any,
    dynamo_table: str,
    measured: list[str],
) -> None:
    throttle = Throttle()
    with FaultProxy(moto.endpoint_url, throttle) as proxy:
        targets = f"""
[[targets]]
name = "fast"
kind = "sqlite"
path = "{tmp_path / "fast.sqlite"}"
batch_events = 200

[[targets]]
name = "slow"
kind = "dynamodb"
table = "{dynamo_table}"
region = "us-east-1"
endpoint_url = "{proxy.url}"
batch_events = 200
"""
        config_path = write_config(
            tmp_path / "replicator.toml",
            dsn=pg_dsn,
            bootstrap=broker.bootstrap_servers,
            topic=kafka_topic,
            target=targets,
        )
        config = load(config_path)
        daemon = DaemonProcess(config_path, tmp_path)
        try:
            for i in range(3):
                app.converse(f"before-{i}", turns=2)
            daemon.start()
            wait_caught_up(config, daemon)

            throttle.on.set()
            for i in range(8):  # subgraphs, interrupts left pending and resumed, a delete
                app.converse(f"during-{i}", turns=2, resume=i % 2 == 0)
            app.delete("before-0")
            written_at = time.monotonic()
            head, slot = source_head(config)
            # The fast target applies everything while the slow one gets nothing through.
            while True:
                report = _report(config, head, slot)
                fast, slow = report["targets"]["fast"], report["targets"]["slow"]
                if fast["caught_up"]:
                    break
                assert daemon.alive(), daemon.output()[-4000:]
                assert time.monotonic() - written_at < 60, f"fast target held back: {report}"
                time.sleep(0.2)
            fast_lag_s = time.monotonic() - written_at
            assert not slow["caught_up"] and slow["lag"]["events"] > 0, report
            assert proxy.counts[Action.THROTTLE] > 0
            result = cli("verify", "--config", str(config_path), "--target", "fast")
            assert result.returncode == 0 and "0 differences" in result.stdout, result.stdout + result.stderr

            throttle.on.clear()
            wait_caught_up(config, daemon)  # every target
            result = cli("verify", "--config", str(config_path))
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout.count("0 differences") == 2, result.stdout
            assert "fast: 10 threads" in result.stdout and "slow: 10 threads" in result.stdout
            assert daemon.alive() and daemon.runs == 1
            assert daemon.terminate() == 0
        finally:
            daemon.stop()
    measured.append(
        f"several targets: the SQLite target caught up {fast_lag_s:.1f} s after the last write while "
        f"every DynamoDB data request was throttled ({proxy.counts[Action.THROTTLE]} throttled)"
    )
