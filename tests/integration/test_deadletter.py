"""Poison events go to the dead-letter topic with their reason; their thread is held; the rest flows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from connectors.registry import make_sink
from replicator.state import PostgresStateStore, open_state_store
from tests.integration.harness import App, DaemonProcess, cli, compare, load, wait_caught_up, wait_for

pytestmark = pytest.mark.integration

POISON_THREAD = "poison-thread"


def dead_letters(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Read the dead-letter topic without auto-creating it (some brokers would, with 4 partitions)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        group_id=None,
        allow_auto_create_topics=False,
    )
    partitions = consumer.partitions_for_topic(f"{topic}.dlq") or set()
    consumer.assign([TopicPartition(f"{topic}.dlq", p) for p in sorted(partitions)])
    records = []
    if partitions:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def test_malformed_record_is_dead_lettered_and_its_thread_held(
    app: App, config_path: Path, daemon: DaemonProcess, broker: Any, kafka_topic: str
) -> None:
    config = load(config_path)
    app.converse("healthy-1")
    daemon.start()
    wait_caught_up(config, daemon)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send(
        kafka_topic, key=POISON_THREAD.encode(), value=b"\xc1 not msgpack", headers=[("lgr-v", b"1")]
    )
    producer.flush()
    producer.close()
    app.converse(POISON_THREAD)  # later events of the poisoned thread: held, not applied out of order
    app.converse("healthy-2")  # other threads go on
    wait_caught_up(config, daemon)

    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    dead = state.get("deadletters:dynamo") or {}
    state.close()
    assert dead.get("paused_threads") == [POISON_THREAD]
    assert dead["count"] > 1  # the malformed record and the thread's later events
    assert "undecodable event" in dead["recent"][0]["reason"]

    records = dead_letters(broker.bootstrap_servers, kafka_topic, dead["count"])
    assert len(records) == dead["count"]
    assert records[0].value == b"\xc1 not msgpack"
    reasons = [dict(r.headers)["lgr-reason"].decode() for r in records]
    assert "undecodable event" in reasons[0]
    assert all("paused" in reason for reason in reasons[1:])

    status = cli("status", "--config", str(config_path), "--json")
    report = json.loads(status.stdout)
    assert report["targets"]["dynamo"]["dead_letters"]["paused_threads"] == [POISON_THREAD]

    target = make_sink(config.targets[0]).saver()
    assert target.get_tuple({"configurable": {"thread_id": POISON_THREAD}}) is None
    report_v = compare(config)
    assert [d.thread_id for d in report_v.differences] == [POISON_THREAD]
    assert daemon.alive()

    # Released: refused while the applier runs (it keeps its paused threads in memory); with the
    # daemon stopped, the thread is copied whole and flows again.
    listed = cli("deadletters", "--config", str(config_path))
    assert listed.returncode == 0 and POISON_THREAD in listed.stdout and "undecodable" in listed.stdout
    running = cli("deadletters", "--config", str(config_path), "--release", POISON_THREAD)
    assert running.returncode == 1 and "appliers of 'dynamo' are running" in running.stderr, running.stderr
    assert daemon.terminate() == 0
    released = cli("deadletters", "--config", str(config_path), "--release", POISON_THREAD)
    assert released.returncode == 0, released.stdout + released.stderr
    assert f"released {POISON_THREAD!r}" in released.stdout
    assert compare(config).ok
    daemon.start()
    app.converse(POISON_THREAD)  # its later changes are applied, not diverted
    wait_caught_up(config, daemon)
    assert compare(config).ok
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    resolved = state.get("deadletters:dynamo") or {}
    state.close()
    assert resolved["paused_threads"] == [] and resolved["count"] == 0  # the cutover gate passes
    assert resolved["released_count"] == dead["count"]


def test_event_the_target_refuses_is_dead_lettered(
    app: App, config_path: Path, daemon: DaemonProcess, broker: Any, kafka_topic: str
) -> None:
    """A pickled channel value cannot be spliced into DynamoDBSaver's msgpack payload."""
    config = load(config_path)
    app.converse("fine")
    app.converse("refused")
    with app.conn.cursor() as cur:
        cur.execute("UPDATE checkpoint_blobs SET type = 'pickle' WHERE thread_id = 'refused'")
    daemon.start()
    wait_for(lambda: len(dead_letters(broker.bootstrap_servers, kafka_topic, 1)) >= 1, 120, "a dead letter")
    app.converse("after")
    wait_caught_up(config, daemon)
    report = compare(config)
    assert {d.thread_id for d in report.differences} == {"refused"}
    records = dead_letters(broker.bootstrap_servers, kafka_topic, 1)
    assert "pickle" in dict(records[0].headers)["lgr-reason"].decode()
    assert daemon.alive()

    # Not fixed: a release copies it, the target refuses it again, and it stays paused.
    assert daemon.terminate() == 0
    released = cli("deadletters", "--config", str(config_path), "--release", "refused")
    assert released.returncode == 1 and "still paused 'refused'" in released.stderr, released.stderr
    assert "pickle" in released.stderr
    listed = json.loads(cli("deadletters", "--config", str(config_path), "--json").stdout)
    assert listed["dynamo"]["paused_threads"] == ["refused"]


def test_a_bug_stops_the_daemon_instead_of_parking_a_conversation(
    app: App, config_path: Path, daemon: DaemonProcess
) -> None:
    """One rule for bugs: an exception that is not a ReplicatorError raised inside the sink's apply
    stops the daemon (exit 1, the traceback in its log) instead of dead-lettering the thread or
    being retried forever; a restart then resumes and nothing is lost."""
    config = load(config_path)
    app.converse("victim-of-a-bug")
    daemon.start(LGREPL_FAULT="applier.in_sink_apply!raise")
    assert daemon.wait(timeout=120) == 1
    output = daemon.output()
    assert "stage crashed on a bug; stopping" in output
    assert "InjectedBug: fault injected at applier.in_sink_apply" in output
    assert "Traceback" in output

    state = open_state_store(config, create=False)
    dead = state.get("deadletters:dynamo") or {}
    state.close()
    assert not dead.get("paused_threads") and not dead.get("count")

    app.converse("after-the-fix")
    daemon.start()
    wait_caught_up(config, daemon)
    report = compare(config)
    assert report.ok, report.differences
    assert report.threads >= 2


def test_a_target_gone_for_everyone_stops_the_daemon_instead_of_parking_every_thread(
    app: App, config_path: Path, daemon: DaemonProcess, moto: Any, dynamo_table: str
) -> None:
    """A setup refusal that is the whole target's (its table dropped mid-run) stops the daemon with
    the fix, exit 1; no conversation is dead-lettered for it, and once the table is back a restart
    resumes from the saved positions and the target ends equal."""
    import boto3

    from replicator.embedded.services import create_dynamodb_table

    config = load(config_path)
    app.converse("before-the-drop")
    daemon.start()
    wait_caught_up(config, daemon)
    client = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    client.delete_table(TableName=dynamo_table)
    app.converse("while-the-table-is-gone")
    assert daemon.wait(timeout=120) == 1
    output = daemon.output()
    assert "does not exist" in output and "Create it with" in output, output[-3000:]

    state = open_state_store(config, create=False)
    dead = state.get("deadletters:dynamo") or {}
    state.close()
    assert not dead.get("paused_threads") and not dead.get("count")

    create_dynamodb_table(moto.endpoint_url, dynamo_table)  # the operator's fix: an empty table
    cli("reset", "--config", str(config_path), "--yes")  # an empty target needs a full copy
    daemon.start()
    wait_caught_up(config, daemon)
    report = compare(config)
    assert report.ok, report.differences
    assert report.threads == 2
