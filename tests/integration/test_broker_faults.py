"""Broker trouble: paused, restarted with its log, restarted empty. The daemon recovers by itself.

Each test has a broker of its own, since it pauses or restarts it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.embedded import EmbeddedBroker, EmbeddedMoto, create_dynamodb_table, create_s3_bucket
from replicator.state import PostgresStateStore
from tests.integration.harness import (
    App,
    DaemonProcess,
    assert_equal,
    load,
    wait_caught_up,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


def start(
    tmp_path: Path, pg_dsn: str, broker: EmbeddedBroker, moto: Any, table: str, bucket: str
) -> DaemonProcess:
    path = write_config(
        tmp_path / "replicator.toml",
        dsn=pg_dsn,
        bootstrap=broker.bootstrap_servers,
        topic="langgraph.checkpoints",
        endpoint=moto.endpoint_url,
        table=table,
        bucket=bucket,
    )
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    return daemon


@pytest.fixture
def memory_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as server:
        yield server


@pytest.fixture
def durable_broker(moto: Any) -> Iterator[EmbeddedBroker]:
    """The broker keeping its log in S3 (moto), so a restart keeps topics, records and offsets."""
    create_s3_bucket(moto.endpoint_url, "tansu")
    env = {**moto.aws_env(), "AWS_ENDPOINT": moto.endpoint_url, "AWS_ALLOW_HTTP": "true"}
    with EmbeddedBroker(storage_url="s3://tansu/", env=env) as server:
        yield server


def test_broker_paused_for_30s_then_resumed(
    tmp_path: Path, pg_dsn: str, memory_broker: EmbeddedBroker, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    app = App(pg_dsn)
    app.converse("before")
    daemon = start(tmp_path, pg_dsn, memory_broker, moto, dynamo_table, s3_bucket)
    config = load(daemon.config_path)
    try:
        wait_caught_up(config, daemon)
        memory_broker.pause()  # SIGSTOP: sockets stay open, nothing answers
        paused = threading.Event()
        try:
            for i in range(4):
                app.converse(f"during-{i}")  # the app keeps writing while Kafka is frozen
            app.delete("before")
            paused.wait(30)
        finally:
            memory_broker.resume()
        app.converse("after")
        wait_caught_up(config, daemon, timeout=240)
        assert_equal(config, threads=5)
        assert daemon.alive() and daemon.runs == 1
    finally:
        daemon.stop()
        app.conn.close()


def test_broker_restarted_with_its_log(
    tmp_path: Path, pg_dsn: str, durable_broker: EmbeddedBroker, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    app = App(pg_dsn)
    app.converse("a", turns=2)
    daemon = start(tmp_path, pg_dsn, durable_broker, moto, dynamo_table, s3_bucket)
    config = load(daemon.config_path)
    try:
        wait_caught_up(config, daemon)
        durable_broker.kill()
        app.converse("b")  # while the broker is down
        durable_broker.start()
        app.converse("c")
        app.delete("a")
        wait_caught_up(config, daemon, timeout=240)
        assert_equal(config, threads=2)
        assert daemon.alive() and daemon.runs == 1
    finally:
        daemon.stop()
        app.conn.close()


def test_broker_restarted_empty_is_detected_and_refilled_from_the_slot(
    tmp_path: Path, pg_dsn: str, memory_broker: EmbeddedBroker, moto: Any
) -> None:
    """Memory storage: a restart loses topics, records and committed offsets.

    The changes lost with it were acknowledged by Kafka but not yet applied (the target was
    frozen): only the slot still holds them, because it is confirmed up to what was applied.
    """
    with EmbeddedMoto() as target:
        create_dynamodb_table(target.endpoint_url, "checkpoints")
        app = App(pg_dsn)
        for i in range(3):
            app.converse(f"old-{i}", turns=2)
        path = write_config(
            tmp_path / "replicator.toml",
            dsn=pg_dsn,
            bootstrap=memory_broker.bootstrap_servers,
            topic="langgraph.checkpoints",
            endpoint=target.endpoint_url,
            table="checkpoints",
            bucket=None,
        )
        daemon = DaemonProcess(path, tmp_path)
        daemon.start()
        config = load(path)
        state = PostgresStateStore(pg_dsn, create=False)
        try:
            wait_caught_up(config, daemon)
            target.pause()  # nothing more becomes durable in the target

            def acked_after(write: Any) -> None:
                before = int((state.get("publisher") or {}).get("events", 0))
                write()
                wait_for(
                    lambda: int((state.get("publisher") or {}).get("events", 0)) > before, 60, "Kafka acked"
                )

            # The applier fetches this one and hangs applying it to the frozen target...
            acked_after(lambda: app.converse("fetched-not-applied"))
            # ...so these are acknowledged by Kafka but never fetched before the broker loses them.
            acked_after(lambda: (app.converse("acked-not-fetched"), app.delete("old-1")))
            memory_broker.kill()
            memory_broker.start()  # empty
            target.resume()
            app.converse("new-after")
            wait_caught_up(config, daemon, timeout=240)
            assert_equal(config, threads=5)
            assert daemon.alive() and daemon.runs == 1
            output = daemon.output()
            assert "Kafka log lost records" in output or "Kafka log no longer holds" in output
        finally:
            daemon.stop()
            state.close()
            app.conn.close()
