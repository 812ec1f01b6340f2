"""Survive every fault: crashes at every named point, a Postgres restart, an idle source, a lost
slot, a throttled and failing target, a large backlog in bounded memory, and whole-topic replays.

Every test runs the real daemon (a subprocess) against the real Postgres, broker and moto, and
ends by comparing source and target through both savers (``replicator.verify``). Waiting is
bounded polling of real state: persisted positions, ``pg_replication_slots``, the daemon's log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from replicator.config import Config
from replicator.faults import POINTS
from replicator.state import PostgresStateStore
from tests.integration.faultkit import (
    LiveWriter,
    assert_same,
    write_fault_config,
)
from tests.integration.harness import App, DaemonProcess, load, wait_caught_up

pytestmark = pytest.mark.integration


@dataclass
class Services:
    """Where one test's pipeline lives: its own database, topic, table and bucket."""

    dsn: str
    bootstrap: str
    topic: str
    moto_url: str
    table: str
    bucket: str
    tmp: Path

    def config(self, name: str = "replicator.toml", **overrides: Any) -> Path:
        options: dict[str, Any] = {
            "dsn": self.dsn,
            "bootstrap": self.bootstrap,
            "topic": self.topic,
            "endpoint": self.moto_url,
            "table": self.table,
            "bucket": self.bucket,
        }
        options.update(overrides)
        return write_fault_config(self.tmp / name, **options)


@pytest.fixture
def services(
    tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str, s3_bucket: str
) -> Services:
    return Services(
        pg_dsn, broker.bootstrap_servers, kafka_topic, moto.endpoint_url, dynamo_table, s3_bucket, tmp_path
    )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    """Every daemon a test starts is killed at its end, whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def writers() -> Iterator[list[LiveWriter]]:
    started: list[LiveWriter] = []
    yield started
    for writer in started:
        writer._stop.set()


def saved_source_state(config: Config) -> dict[str, Any]:
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    try:
        return state.get("source") or {}
    finally:
        state.close()


# -- 1. named fault points ------------------------------------------------------------------------

# (stage, LGREPL_FAULT). "snapshot": threads exist before the first start, so the first passes of
# the publisher points are the initial copy, and the topic starts with it, so the applier's first
# batches apply it. "streaming": "@streaming" counts passes only once the source reads the slot,
# while the app writes live threads. Counts > 1 skip the snapshot-start control record.
FAULT_CASES = [
    ("snapshot", "publisher.before_produce:2"),
    ("snapshot", "publisher.after_produce"),
    ("snapshot", "publisher.before_confirm"),
    ("snapshot", "snapshot.between_chunks:2"),
    ("snapshot", "applier.after_apply"),
    ("snapshot", "applier.after_commit"),
    ("streaming", "source.after_read:5"),
    ("streaming", "publisher.before_produce:3@streaming"),
    ("streaming", "publisher.after_produce:2@streaming"),
    ("streaming", "publisher.before_confirm:2@streaming"),
    ("streaming", "applier.after_apply:2@streaming"),
    ("streaming", "applier.after_commit:2@streaming"),
]
# applier.on_rebalance (partitions revoked) is exercised by the applier's own tests: a revocation
# needs a second consumer in the group, which a single daemon never has.
UNTESTED_HERE = {"applier.on_rebalance"}


def test_every_fault_point_is_named_and_in_the_matrix() -> None:
    root = Path(__file__).resolve().parents[2]
    used = set()
    for path in [*root.glob("replicator/*.py"), *root.glob("connectors/**/*.py")]:
        used |= set(re.findall(r'fault_point\("([^"]+)"\)', path.read_text()))
    assert used == POINTS, f"fault_point() names and faults.POINTS differ: {used ^ POINTS}"
    matrix = {spec.split(":")[0].split("@")[0] for _, spec in FAULT_CASES}
    assert matrix | UNTESTED_HERE == POINTS


@pytest.mark.parametrize(("stage", "fault"), FAULT_CASES, ids=[f"{s}-{f}" for s, f in FAULT_CASES])
def test_sigkill_at_fault_point_then_restart_converges(
    stage: str,
    fault: str,
    services: Services,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
) -> None:
    app = App(services.dsn)
    initial = 3 if stage == "snapshot" else 1
    for i in range(initial):  # before the daemon exists: carried by the initial copy
        app.converse(f"pre-{i}", turns=1, resume=i % 2 == 0)
    app.conn.close()
    config_path = services.config(chunk_rows=10 if stage == "snapshot" else 40)
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    writer = LiveWriter(services.dsn, "live", delete_every=3)
    writers.append(writer)
    writer.start()

    daemon.start(LGREPL_FAULT=fault)
    code = daemon.wait(90)
    assert code == -9, f"daemon exited with {code}, not SIGKILL at {fault}:\n{daemon.output()[-3000:]}"
    saved = saved_source_state(config)
    if stage == "streaming":
        assert saved.get("snapshot") == "done", saved  # the kill happened after the initial copy
    elif not fault.startswith("applier."):
        assert saved.get("snapshot") == "running", saved  # the kill happened during it

    written = writer.written
    daemon.start()  # no fault: recovers from whatever the kill left
    writer.wait_written(written + 3)
    writer.stop()
    wait_caught_up(config, daemon, timeout=120)
    assert_same(config)
    assert daemon.terminate() == 0
