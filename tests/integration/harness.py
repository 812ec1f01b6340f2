"""Running the real daemon as a separate process, the way an operator runs it.

A subprocess is what lets the tests SIGKILL it at any moment. Waiting is always bounded polling
of real state (the persisted positions), never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

from connectors.registry import make_sink, make_source
from replicator.config import Config, load_config
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import MemoryStateStore, open_state_store
from replicator.status import collect, source_head
from replicator.verify import VerifyReport, verify


def write_config(
    path: Path,
    *,
    dsn: str,
    bootstrap: str,
    topic: str,
    endpoint: str = "",
    table: str = "",
    bucket: str | None = None,
    partitions: int = 4,
    extra_source: str = "",
    extra: str = "",
    target: str | None = None,
    s3_endpoint: str | None = None,
) -> Path:
    """A config for the real services; the target is DynamoDB (``endpoint``, ``table``,
    ``bucket`` on ``s3_endpoint``, else on ``endpoint``) unless ``target`` gives another
    ``[[targets]]`` section."""
    suffix = uuid.uuid4().hex[:8]
    bucket_line = f's3_bucket = "{bucket}"' if bucket else ""
    if s3_endpoint:
        bucket_line += f'\ns3_endpoint_url = "{s3_endpoint}"'
    target = (
        target
        or f"""
[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "{table}"
region = "us-east-1"
endpoint_url = "{endpoint}"
{bucket_line}
"""
    )
    path.write_text(
        f"""
[source]
kind = "postgres"
dsn = "{dsn}"
slot = "lgr_{suffix}"
publication = "lgr_{suffix}"
heartbeat_interval_s = 0.3
{extra_source}

[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
partitions = {partitions}
group_prefix = "g-{suffix}"
session_timeout_ms = 6000

{target}

[log]
format = "json"
level = "info"

{extra}
""",
        encoding="utf-8",
    )
    return path


def offline_config(path: Path, *, dsn: str, moto: Any, table: str, bucket: str | None = None) -> Path:
    """A config whose broker nothing listens on: for what needs no pipeline (the routing
    saver, dual write)."""
    return write_config(
        path,
        dsn=dsn,
        bootstrap="127.0.0.1:9",
        topic="unused",
        endpoint=moto.endpoint_url,
        table=table,
        bucket=bucket,
    )


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class DaemonProcess:
    config_path: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self, **env: str) -> None:
        self.runs += 1
        self.stderr_path = self.log_dir / f"daemon-{self.runs}.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "replicator.cli", "run", "--config", str(self.config_path)],
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **env},
        )

    def kill(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.wait()

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._stderr.close()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("daemon-*.log")))

    def stop(self) -> None:
        if self.alive():
            self.kill()


def wait_caught_up(
    config: Config, daemon: DaemonProcess | None = None, timeout: float = 180
) -> dict[str, Any]:
    """Poll the persisted positions until every target applied what the source had now."""
    head, slot = source_head(config)
    state = open_state_store(config, create=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            report = collect(config, state, head, slot)
            if report["caught_up"]:
                return report
            if daemon is not None and not daemon.alive():
                raise AssertionError(
                    f"daemon exited with {daemon.proc.returncode if daemon.proc else None}:\n"
                    f"{daemon.output()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"not caught up after {timeout}s: {report}")
            time.sleep(0.2)
    finally:
        state.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def load(path: Path) -> Config:
    return load_config(path)


class App:
    """The user's LangGraph app writing through PostgresSaver."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        self.saver = PostgresSaver(self.conn)  # type: ignore[arg-type]
        self.saver.setup()
        self.graph = build_graph(self.saver)

    def converse(self, thread_id: str, **kwargs: Any) -> None:
        run_conversation(self.graph, thread_id, **kwargs)

    def delete(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)


def compare(config: Config) -> VerifyReport:
    source = make_source(config.source, MemoryStateStore())
    sink = make_sink(config.targets[0])
    try:
        return verify(source, sink)
    finally:
        source.close()
        sink.close()


def assert_equal(config: Config, *, threads: int) -> VerifyReport:
    report = compare(config)
    assert report.ok, "\n".join(str(d) for d in report.differences)
    assert report.threads == threads
    return report


OTHER_KINDS = ("bigger", "file", "generic")  # the target names other_kind_targets() gives


def other_kind_targets(dsn: str, directory: Path) -> str:
    """``[[targets]]`` of every kind besides DynamoDB: PostgresSaver's tables in the database at
    ``dsn`` (``bigger``), a SqliteSaver file in ``directory`` (``file``) and the generic saver
    target (``generic``: SqliteSaver through ``tests.savers:sqlite_from_env``, whose path the
    caller puts in the environment as ``SQLITE_PATH_ENV``)."""
    return f"""[[targets]]
name = "bigger"
kind = "postgres"
dsn = "{dsn}"

[[targets]]
name = "file"
kind = "sqlite"
path = "{directory / "t.sqlite"}"

[[targets]]
name = "generic"
kind = "saver"
factory = "tests.savers:sqlite_from_env"
"""


def replicator_items(endpoint_url: str, table: str, region: str = "us-east-1") -> int:
    """Items of a DynamoDB target that only the replicator reads (``LGREPL#`` keys: blob state,
    write index), counted with a strongly consistent Scan."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region)
    pages = client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(PK, :r)",
        ExpressionAttributeValues={":r": {"S": "LGREPL#"}},
        ConsistentRead=True,
    )
    return sum(page["Count"] for page in pages)


def move_phase(config_path: Path, *phases: Any, target: str = "dynamo", **changes: Any) -> None:
    """Commit phases of the migration record directly, under the source's fence (test set-up)."""
    from connectors.registry import make_switchboard

    board = make_switchboard(load(config_path).source)
    try:
        with board.fence(10) as fence:
            for phase in phases:
                fence.commit(fence.record.moved(phase, target=target, **changes))
    finally:
        board.close()


class Talker:
    """Conversations in the background through one saver, paused around each comparison."""

    def __init__(self, graph: Any, prefix: str = "bg", limit: int | None = None) -> None:
        # ``limit``: at most this many conversations, so that the comparisons (each thread read
        # through both savers) cost the same however long the test's switches take.
        self.graph, self.count, self.prefix, self.limit = graph, 0, prefix, limit
        self._go, self._idle, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._go.set()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._go.is_set() or (self.limit is not None and self.count >= self.limit):
                self._idle.set()
                self._go.wait(0.1)
                continue
            self._idle.clear()
            run_conversation(self.graph, f"{self.prefix}-{self.count}", turns=1)
            self.count += 1
            self._stop.wait(2.0)  # pace: a steady load, not a flood

    def pause(self) -> int:
        self._go.clear()
        wait_for(self._idle.is_set, 120, "the background conversation to finish")
        return self.count

    def resume(self) -> None:
        self._go.set()

    def stop(self) -> int:
        self._stop.set()
        self._go.set()
        self._thread.join(120)
        return self.count
