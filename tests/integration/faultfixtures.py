"""Fixtures of the fault tests and the soak (a pytest plugin, loaded by tests/conftest.py).

Each test gets its own database, topic, table and bucket on the shared services, and every
daemon or background writer it starts is stopped at its end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultkit import LiveWriter, Services
from tests.integration.harness import DaemonProcess


@pytest.fixture
def services(
    tmp_path: Path, pg_dsn: str, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str, s3_bucket: str
) -> Services:
    return Services(
        pg_dsn, broker.bootstrap_servers, kafka_topic, moto.endpoint_url, dynamo_table, s3_bucket, tmp_path
    )


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def writers() -> Iterator[list[LiveWriter]]:
    started: list[LiveWriter] = []
    yield started
    for writer in started:
        writer.halt()
