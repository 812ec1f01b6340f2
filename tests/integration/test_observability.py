"""Lag per stage against a known backlog, /metrics, /healthz, /readyz, /status and the status table."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from replicator.embedded import EmbeddedMoto, EmbeddedPostgres, create_dynamodb_table, free_port
from replicator.metrics import METRIC_NAMES, PREFIX
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


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def status(port: int) -> dict[str, Any]:
    code, body = get(port, "/status")
    assert code == 200, body
    report: dict[str, Any] = json.loads(body)
    return report


def http_config(
    tmp_path: Path, dsn: str, broker: Any, topic: str, endpoint: str, table: str
) -> tuple[Path, int]:
    port = free_port()
    path = write_config(
        tmp_path / "replicator.toml",
        dsn=dsn,
        bootstrap=broker.bootstrap_servers,
        topic=topic,
        endpoint=endpoint,
        table=table,
        bucket=None,
        extra=f'[http]\nlisten = "127.0.0.1:{port}"\n',
    )
    return path, port


@pytest.fixture
def own_moto() -> Iterator[EmbeddedMoto]:
    """A target server of this test alone: it gets paused."""
    with EmbeddedMoto() as server:
        yield server


def test_lag_counts_a_known_backlog_and_returns_to_zero(
    tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, own_moto: EmbeddedMoto, moto: Any
) -> None:
    create_dynamodb_table(own_moto.endpoint_url, "checkpoints")
    path, port = http_config(tmp_path, pg_dsn, broker, kafka_topic, own_moto.endpoint_url, "checkpoints")
    app = App(pg_dsn)
    app.converse("warm-up")
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    try:
        wait_caught_up(load(path), daemon)
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "ready")
        wait_for(lambda: status(port)["targets"]["dynamo"]["lag"]["events"] == 0, 30, "no lag")
        latest = app.saver.get_tuple({"configurable": {"thread_id": "warm-up"}})
        assert latest is not None
        backlog = 37
        own_moto.pause()  # the target stops answering: the applier cannot make anything durable
        try:
            # One put_writes of 37 values: exactly 37 change events, in one transaction.
            app.saver.put_writes(
                latest.config, [(f"channel-{i}", f"value {i} ✓") for i in range(backlog)], "task-x"
            )
            wait_for(
                lambda: status(port)["targets"]["dynamo"]["lag"]["events"] == backlog, 60, "lag = backlog"
            )
            report = status(port)
            target = report["targets"]["dynamo"]
            assert target["lag"]["bytes"] > 0
            assert target["caught_up"] is False
            assert sum(p["lag_events"] for p in target["partitions"].values()) == backlog
            time.sleep(1.5)  # heartbeats keep flowing meanwhile: they must not count as lag
            assert status(port)["targets"]["dynamo"]["lag"]["events"] == backlog
        finally:
            own_moto.resume()
        wait_for(lambda: status(port)["targets"]["dynamo"]["lag"]["events"] == 0, 120, "lag back to 0")
        wait_caught_up(load(path), daemon)
        # Idle and caught up: the age of what may be unapplied is bounded by the heartbeats (a
        # heartbeat says everything committed before it is applied), not by the last data change.
        assert status(port)["targets"]["dynamo"]["lag"]["seconds"] < 1.5
    finally:
        daemon.stop()
        app.conn.close()


def test_metrics_health_and_status_endpoints(
    tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str
) -> None:
    path, port = http_config(tmp_path, pg_dsn, broker, kafka_topic, moto.endpoint_url, dynamo_table)
    app = App(pg_dsn)
    app.converse("a", turns=2)
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 200, 60, "healthz")
        wait_caught_up(load(path), daemon)
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "readyz")
        app.converse("b")
        wait_caught_up(load(path), daemon)
        wait_for(lambda: status(port)["caught_up"], 30, "daemon report caught up")
        report = status(port)
        assert report["stages"]["publisher"]["state"] == "running"
        assert report["stages"]["applier:dynamo"]["state"] == "running"

        code, text = get(port, "/metrics")
        assert code == 200
        families = {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith(PREFIX)}
        exported = {f.name + ("_total" if f.type == "counter" else "") for f in families.values()}
        assert exported == set(METRIC_NAMES), exported ^ set(METRIC_NAMES)

        def value(name: str, **labels: str) -> float:
            for sample in families[name].samples:
                if sample.name in (name, name + "_total") and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
            raise AssertionError(f"no sample {name} {labels}")

        assert value(f"{PREFIX}_applied_events", target="dynamo") > 50
        assert value(f"{PREFIX}_published_events") >= value(f"{PREFIX}_applied_events", target="dynamo")
        assert value(f"{PREFIX}_caught_up") == 1
        assert value(f"{PREFIX}_ready") == 1
        assert value(f"{PREFIX}_stage_running", stage="publisher") == 1
        assert value(f"{PREFIX}_apply_lag_events", target="dynamo") == 0
        assert value(f"{PREFIX}_snapshot_rows") > 0
        # No switch yet: the app is on the source, the migration is replicating.
        assert value(f"{PREFIX}_migration_phase", phase="replicating") == 1
        assert value(f"{PREFIX}_migration_phase", phase="cut_over") == 0
        assert value(f"{PREFIX}_migration_epoch") == 0
        assert report["migration"]["phase"] == "replicating" and report["migration"]["store"] == "source"
        batches = [
            s for s in families[f"{PREFIX}_apply_batch_duration_seconds"].samples if s.name.endswith("_count")
        ]
        assert batches and batches[0].value > 0

        table = cli("status", "--config", str(path))  # the daemon answers: its live report
        assert table.returncode == 0, table.stderr
        for row in (
            "source head",
            "initial copy",
            "captured (slot)",
            "published",
            "applied: dynamo",
            "caught up",
        ):
            assert row in table.stdout
        watch = cli("status", "--config", str(path), "--watch", "--interval", "0.1", "--count", "2")
        assert watch.returncode == 0 and "applied: dynamo" in watch.stdout
        assert daemon.terminate() == 0
        stopped = cli("status", "--config", str(path), "--json")  # no daemon: persisted positions
        assert json.loads(stopped.stdout)["targets"]["dynamo"]["events_applied"] > 50
    finally:
        daemon.stop()
        app.conn.close()


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A source of this test alone: it gets stopped."""
    with EmbeddedPostgres() as server:
        yield server


def test_readiness_flips_when_postgres_stops_and_recovers(
    tmp_path: Path, own_pg: EmbeddedPostgres, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str
) -> None:
    dsn = own_pg.create_database("app")
    path, port = http_config(tmp_path, dsn, broker, kafka_topic, moto.endpoint_url, dynamo_table)
    app = App(dsn)
    app.converse("before")
    app.conn.close()
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    try:
        wait_caught_up(load(path), daemon)
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "ready")
        own_pg.halt("immediate")  # an outage; the walsender would hold a fast shutdown
        wait_for(lambda: get(port, "/readyz")[0] == 503, 60, "not ready while Postgres is down")
        assert get(port, "/healthz")[0] == 200  # alive all the same: no restart wanted
        own_pg.resume()
        app = App(dsn)
        app.converse("after")  # written after the restart: must arrive without a daemon restart
        app.conn.close()
        wait_for(lambda: get(port, "/readyz")[0] == 200, 120, "ready again")
        wait_caught_up(load(path), daemon)
        assert daemon.alive() and daemon.runs == 1
        assert_equal(load(path), threads=2)  # nothing lost across the source outage
    finally:
        daemon.stop()
