"""A slot that is gone fails clearly, reset starts over through the source and the state store,
and replaying the whole topic into a complete target changes nothing. (The idle slot and its
WAL-retention warning: test_faults.py.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from connectors.registry import make_sink
from replicator.applier import Applier
from replicator.state import STATE_SCHEMA, MemoryStateStore, PostgresStateStore, SqliteStateStore
from tests.integration.harness import (
    App,
    DaemonProcess,
    assert_equal,
    cli,
    load,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_dropped_slot_after_the_copy_is_a_clear_error(
    app: App, config_path: Path, daemon: DaemonProcess
) -> None:
    config = load(config_path)
    app.converse("x")
    daemon.start()
    wait_caught_up(config, daemon)
    assert daemon.terminate() == 0
    with psycopg.connect(config.source.dsn.get_secret_value(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (config.source.slot,))
    result = cli("run", "--config", str(config_path), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "is gone although the initial copy finished" in output and "replicator reset" in output
    assert "Traceback" not in output


def test_reset_starts_over_with_positions_in_their_own_sqlite_store(
    app: App, config_path: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    """[state] kind = "sqlite": no position in the source database; reset clears the file."""
    state_path = tmp_path / "state.db"
    config_path.write_text(
        config_path.read_text() + f'\n[state]\nkind = "sqlite"\npath = "{state_path}"\n', encoding="utf-8"
    )
    config = load(config_path)
    dsn = config.source.dsn.get_secret_value()
    app.converse("before", turns=2)
    daemon.start()
    app.converse("live")
    wait_caught_up(config, daemon)
    assert daemon.terminate() == 0
    status = json.loads(cli("status", "--config", str(config_path), "--json").stdout)
    assert status["caught_up"] is True and status["source"]["snapshot"]["state"] == "done"
    assert status["source"]["head_lsn"].count("/") == 1  # formatted by the source
    with psycopg.connect(dsn, autocommit=True) as conn:
        schemas = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (STATE_SCHEMA,)).fetchall()
    assert schemas == [], "positions were written to the source database"

    result = cli("reset", "--config", str(config_path), "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"dropped slot {config.source.slot!r} and saved positions; the next run starts with a full copy"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        slots = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (config.source.slot,)
        ).fetchall()
    assert slots == []
    assert SqliteStateStore(state_path, create=False).all() == {}

    app.converse("after-reset")
    daemon.start()
    wait_caught_up(config, daemon)
    assert daemon.terminate() == 0
    source = SqliteStateStore(state_path, create=False).get("source") or {}
    assert source.get("snapshot") == "done" and source.get("rows", 0) > 0, "no full copy after the reset"
    assert_equal(config, threads=3)


def scan(endpoint: str, table: str, bucket: str) -> tuple[list[Any], dict[str, bytes]]:
    dynamo = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    items: list[Any] = []
    for page in dynamo.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    items.sort(key=lambda item: (item["PK"]["S"], item["SK"]["S"]))
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    objects = {
        obj["Key"]: s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    }
    return items, objects


def test_replaying_the_whole_topic_changes_nothing(
    app: App, config_path: Path, daemon: DaemonProcess, moto: Any, dynamo_table: str, s3_bucket: str
) -> None:
    config = load(config_path)
    for i in range(4):
        app.converse(f"r-{i}", turns=2, attachment_bytes=400_000 if i == 0 else 0)
    app.delete("r-2")
    daemon.start()
    app.converse("r-live")
    app.delete("r-3")
    wait_caught_up(config, daemon)
    assert daemon.terminate() == 0
    status = json.loads(cli("status", "--config", str(config_path), "--json").stdout)
    assert status["targets"]["dynamo"]["dead_letters"]["count"] == 0, daemon.output()[-5000:]
    before = scan(moto.endpoint_url, dynamo_table, s3_bucket)
    assert before[0] and before[1]

    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    produced = {int(p): int(o) for p, o in (state.get("publisher") or {})["produced"].items()}
    state.close()
    replay_kafka = config.kafka.model_copy(update={"group_prefix": f"replay-{time.time_ns()}"})
    applier = Applier(make_sink(config.targets[0]), replay_kafka, MemoryStateStore())
    stop = threading.Event()
    runner = threading.Thread(target=applier.run, args=(stop,))
    runner.start()
    try:
        wait_for(
            lambda: all(
                applier.stats.partitions.get(p) is not None and applier.stats.partitions[p].offset >= end
                for p, end in produced.items()
            ),
            180,
            "the replay consumed the whole topic from offset 0",
        )
    finally:
        stop.set()
        runner.join(60)
    assert applier.stats.events > 100
    after = scan(moto.endpoint_url, dynamo_table, s3_bucket)
    assert after[1] == before[1]
    assert after[0] == before[0]
