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
    return write_config(
        tmp_path / "replicator.toml",
        dsn=pg_dsn,
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        endpoint=moto.endpoint_url,
        table=dynamo_table,
        bucket=s3_bucket,
        extra_source="snapshot_chunk_rows = 40",
    )


@pytest.fixture
def daemon(config_path: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(config_path, tmp_path)
    yield process
    process.stop()
