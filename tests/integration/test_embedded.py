"""The embedded services and fixtures work with the real clients the product uses."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import boto3
import psycopg
import psycopg2
import pytest
from kafka import KafkaConsumer, KafkaProducer
from psycopg2.extras import LogicalReplicationConnection, ReplicationMessage

from replicator.embedded import EmbeddedBroker, EmbeddedMoto, EmbeddedPostgres, free_port
from replicator.embedded import services as embedded
from replicator.errors import ErrorKind, ReplicatorError

pytestmark = pytest.mark.integration


def test_pg_dsn_is_a_logical_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
        assert row == ("logical",)
        assert conn.execute("SELECT current_database()").fetchone() != ("postgres",)


def test_pg_restart_keeps_data_and_port(pg: EmbeddedPostgres, pg_dsn: str) -> None:
    port = pg.port
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO kept VALUES (1, 'one'), (2, 'two')")
    pg.restart()
    assert pg.port == port
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT id, v FROM kept ORDER BY id").fetchall() == [(1, "one"), (2, "two")]


def test_drop_database_drops_an_active_slot(pg: EmbeddedPostgres) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg.create_database(name)
    repl = psycopg2.connect(dsn, connection_factory=LogicalReplicationConnection)
    cur = repl.cursor()
    cur.create_replication_slot("s_active", output_plugin="test_decoding")
    cur.start_replication(slot_name="s_active", decode=True)

    def consume() -> None:
        def on_message(msg: ReplicationMessage) -> None:
            msg.cursor.send_feedback(flush_lsn=msg.data_start)

        # The server terminates this walsender when the database is dropped: that is the point.
        with contextlib.suppress(psycopg2.Error):
            cur.consume_stream(on_message)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    with pg.connect() as conn:
        active = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 's_active'"
        ).fetchone()
        assert active == (True,)

    pg.drop_database(name)

    with pg.connect() as conn:
        slots = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_active' OR database = %s", (name,)
        ).fetchone()
        assert slots == (0,)
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)
    reader.join(timeout=10)
    assert not reader.is_alive()
    repl.close()


def test_wal_level_replica_is_honoured() -> None:
    with EmbeddedPostgres(wal_level="replica") as server:
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
        tmp = server.data_dir.parent
    assert not tmp.exists()


def test_missing_postgres_binaries_is_a_config_error(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ReplicatorError) as err:
        EmbeddedPostgres(version_bin_dir=str(tmp_path)).start()
    assert err.value.kind is ErrorKind.CONFIG
    assert "apt-get install" in str(err.value)


def test_kafka_round_trip(broker: EmbeddedBroker, kafka_topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    try:
        for i in range(3):
            producer.send(kafka_topic, key=f"k{i}".encode(), value=f"v{i}".encode()).get(timeout=30)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(
        kafka_topic,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        auto_offset_reset="earliest",
    )
    got: dict[bytes, bytes] = {}
    try:
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    assert r.key is not None and r.value is not None
                    got[r.key] = r.value
    finally:
        consumer.close()
    assert got == {b"k0": b"v0", b"k1": b"v1", b"k2": b"v2"}


def test_broker_kill_pause_and_restart_keep_the_port() -> None:
    with EmbeddedBroker() as b:
        port, first_pid = b.port, b.pid
        b.pause()
        b.resume()
        b.kill()
        assert b.pid is None
        b.start()
        assert b.port == port and b.pid not in (None, first_pid)
        b.restart()
        assert b.port == port and b.bootstrap_servers == f"127.0.0.1:{port}"
        log = b.log_file
        assert log.exists()
    assert not log.exists()


def test_broker_that_cannot_start_fails_fast_and_leaves_nothing() -> None:
    b = EmbeddedBroker(storage_url="bogus://nowhere")
    started = time.monotonic()
    with pytest.raises(ReplicatorError) as err, b:
        pass
    assert time.monotonic() - started < 30
    assert "exited while starting" in str(err.value) and "bogus" in str(err.value)
    assert b.pid is None


def test_dynamodb_item_round_trip(moto: EmbeddedMoto, dynamo_table: str) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    client = boto3.client("dynamodb", endpoint_url=moto.endpoint_url)
    client.put_item(
        TableName=dynamo_table, Item={"PK": {"S": "thread#1"}, "SK": {"S": "cp#1"}, "v": {"N": "7"}}
    )
    item = client.get_item(TableName=dynamo_table, Key={"PK": {"S": "thread#1"}, "SK": {"S": "cp#1"}})["Item"]
    assert item["v"] == {"N": "7"}


def test_s3_object_round_trip(moto: EmbeddedMoto, s3_bucket: str) -> None:
    client = boto3.client("s3", endpoint_url=moto.endpoint_url)
    client.put_object(Bucket=s3_bucket, Key="a/b.bin", Body=b"\x00payload")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.bin")["Body"].read() == b"\x00payload"


def test_moto_can_be_killed_and_restarted_on_its_port() -> None:
    with EmbeddedMoto() as m:
        url = m.endpoint_url
        m.kill()
        m.start()
        assert m.endpoint_url == url
        assert set(m.aws_env()) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}


def test_free_port_is_bindable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def _ports(*ports: int) -> Callable[[], int]:
    """A free_port stand-in that hands out the given ports first, then real free ones."""
    queue = list(ports)
    return lambda: queue.pop(0) if queue else free_port()


def test_broker_moves_off_a_port_another_broker_took(monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedBroker() as squatter:
        monkeypatch.setattr(embedded, "free_port", _ports(squatter.port))
        with EmbeddedBroker() as b:
            assert b.port != squatter.port
            assert b.pid is not None and embedded._pid_listens(b.pid, b.port)
        assert squatter.pid is not None


def test_postgres_moves_off_a_taken_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(embedded, "free_port", _ports(taken))
        with EmbeddedPostgres() as server:
            assert server.port != taken
            with psycopg.connect(server.dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_broker_on_s3_storage_keeps_records_across_kill(moto: EmbeddedMoto, s3_bucket: str) -> None:
    env = {**moto.aws_env(), "AWS_ENDPOINT": moto.endpoint_url, "AWS_ALLOW_HTTP": "true"}
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    with EmbeddedBroker(storage_url=f"s3://{s3_bucket}/", env=env) as b:
        producer = KafkaProducer(bootstrap_servers=b.bootstrap_servers, acks="all")
        try:
            for i in range(3):
                producer.send(topic, key=b"k", value=f"v{i}".encode()).get(timeout=30)
        finally:
            producer.close(timeout=10)
        b.kill()
        b.start()
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=b.bootstrap_servers,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            session_timeout_ms=6000,
            auto_offset_reset="earliest",
        )
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + 60
            while len(values) < 3 and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    values.extend(r.value for r in records if r.value is not None)
        finally:
            consumer.close()
    assert values == [b"v0", b"v1", b"v2"]
