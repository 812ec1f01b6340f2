"""Soak fixtures: the services of the fault tests, and a summary printed at the end of the run.

The summary is written by pytest itself (a "soak" section of the terminal summary), so a CI log
shows the numbers without ``-s``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultkit import LiveWriter, Services
from tests.integration.harness import DaemonProcess

_SUMMARY = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SUMMARY] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("soak")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def soak_summary(request: pytest.FixtureRequest) -> list[str]:
    return request.config.stash[_SUMMARY]


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
