"""Fixtures of the pipeline tests: the user's app, a config for the real services, the daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import App, DaemonProcess, write_config


@pytest.fixture
def app(pg_dsn: str) -> Iterator[App]:
    application = App(pg_dsn)
    yield application
    application.conn.close()


@pytest.fixture
def config_path(
    tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str, s3_bucket: str
) -> Path:
    return _pipeline_config(tmp_path, pg_dsn, broker, kafka_topic, moto.endpoint_url, dynamo_table, s3_bucket)


@pytest.fixture
def dynalite_config_path(
    tmp_path: Path,
    pg_dsn: str,
    broker: Any,
    kafka_topic: str,
    moto: Any,
    dynalite: Any,
    dynalite_table: str,
    s3_bucket: str,
) -> Path:
    """``config_path`` with DynamoDB on dynalite (S3 offload still on moto). For the tests that
    compare every thread through both savers several times: DynamoDBSaver's ``list`` queries the
    table once per checkpoint and moto sorts the whole table on each Query, which made those
    comparisons most of such a test's time; dynalite is DynamoDB-like in its validation too."""
    return _pipeline_config(
        tmp_path,
        pg_dsn,
        broker,
        kafka_topic,
        dynalite.endpoint_url,
        dynalite_table,
        s3_bucket,
        moto.endpoint_url,
    )


def _pipeline_config(
    tmp_path: Path,
    dsn: str,
    broker: Any,
    topic: str,
    endpoint: str,
    table: str,
    bucket: str,
    s3_endpoint: str | None = None,
) -> Path:
    return write_config(
        tmp_path / "replicator.toml",
        dsn=dsn,
        bootstrap=broker.bootstrap_servers,
        topic=topic,
        endpoint=endpoint,
        table=table,
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        extra_source="snapshot_chunk_rows = 40",
    )


@pytest.fixture
def daemon(config_path: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(config_path, tmp_path)
    yield process
    process.stop()
