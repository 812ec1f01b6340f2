"""Shared pieces of the fault tests (tests/integration/test_faults.py) and the soak (tests/soak/).

A config writer with the knobs those tests turn, an app that keeps writing and deleting live
threads in the background, a parallel ``verify``, and readers of real state (the slot in
``pg_replication_slots``, a process's RSS in /proc). Waiting is bounded polling of real state.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from connectors.registry import make_sink, make_source
from replicator.config import Config
from replicator.state import MemoryStateStore, PostgresStateStore
from replicator.verify import VerifyReport, verify
from tests.integration.harness import App, DaemonProcess, wait_caught_up, wait_for

# Short enough that a restarted daemon's consumer replaces its SIGKILLed predecessor in about
# two seconds (the broker waits out the dead member's session), long enough for a loaded CI box.
SESSION_TIMEOUT_MS = 3000


def write_fault_config(
    path: Path,
    *,
    dsn: str,
    bootstrap: str,
    topic: str,
    endpoint: str,
    table: str,
    bucket: str | None,
    partitions: int = 4,
    chunk_rows: int = 40,
    heartbeat_s: float = 0.3,
    max_slot_lag_bytes: int | None = None,
    group_prefix: str | None = None,
    slot: str | None = None,
    target_name: str = "dynamo",
    s3_endpoint: str | None = None,
    batch_events: int | None = None,
    log_level: str = "info",
) -> Path:
    suffix = uuid.uuid4().hex[:8]
    slot = slot or f"lgr_{suffix}"
    source = [
        'kind = "postgres"',
        f'dsn = "{dsn}"',
        f'slot = "{slot}"',
        f'publication = "{slot}"',
        f"heartbeat_interval_s = {heartbeat_s}",
        f"snapshot_chunk_rows = {chunk_rows}",
    ]
    if max_slot_lag_bytes is not None:
        source.append(f"max_slot_lag_bytes = {max_slot_lag_bytes}")
    target = [
        f'name = "{target_name}"',
        'kind = "dynamodb"',
        f'table = "{table}"',
        'region = "us-east-1"',
        f'endpoint_url = "{endpoint}"',
    ]
    if bucket:
        target.append(f's3_bucket = "{bucket}"')
    if s3_endpoint:
        target.append(f's3_endpoint_url = "{s3_endpoint}"')
    if batch_events:
        target.append(f"batch_events = {batch_events}")
    nl = "\n"
    path.write_text(
        f"""[source]
{nl.join(source)}

[kafka]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
partitions = {partitions}
group_prefix = "{group_prefix or f"g-{suffix}"}"
session_timeout_ms = {SESSION_TIMEOUT_MS}

[[targets]]
{nl.join(target)}

[log]
format = "json"
level = "{log_level}"
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Services:
    """Where one test's pipeline lives: its own database, topic, table and bucket."""

    dsn: str
    bootstrap: str
    topic: str
    moto_url: str
    table: str
    bucket: str
    tmp: Path

    def config(self, name: str = "replicator.toml", **overrides: Any) -> Path:
        options: dict[str, Any] = {
            "dsn": self.dsn,
            "bootstrap": self.bootstrap,
            "topic": self.topic,
            "endpoint": self.moto_url,
            "table": self.table,
            "bucket": self.bucket,
        }
        options.update(overrides)
        return write_fault_config(self.tmp / name, **options)


def saved_state(config: Config, name: str) -> dict[str, Any]:
    """One persisted stage document (``source``, ``publisher``, ...), as the daemon left it."""
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)
    try:
        return state.get(name) or {}
    finally:
        state.close()


def wait_copy_read(config: Config, daemon: DaemonProcess, timeout: float = 120) -> None:
    """Until the daemon's source has read the whole initial copy (or the daemon is gone)."""
    wait_for(
        lambda: saved_state(config, "source").get("snapshot") == "done" or not daemon.alive(),
        timeout,
        "the initial copy read",
    )


def wait_synced(config: Config, daemon: DaemonProcess, timeout: float = 120) -> dict[str, Any]:
    """``wait_caught_up`` once the initial copy has been read, so the head it compares with is
    sampled after the slot exists (a test that kills the daemon mid-copy wants the rest)."""
    wait_copy_read(config, daemon, timeout)
    return wait_caught_up(config, daemon, timeout=timeout)


def with_target_endpoint(config: Config, endpoint: str) -> Config:
    """The same config reading the target straight from ``endpoint`` (e.g. moto, not the proxy)."""
    targets = [
        t.model_copy(update={"endpoint_url": endpoint, "s3_endpoint_url": None}) for t in config.targets
    ]
    return config.model_copy(update={"targets": targets})


class LiveWriter:
    """The app at work in a background thread: conversations with a subgraph, an interrupt left
    pending on every third thread, a 400 KiB value now and then (S3 offload), and deletions.

    It writes at most ``quota`` conversations (raise it with ``allow``), one every ``pace_s``
    seconds at most: an app's rate, not a benchmark's, so that what the tests compare afterwards
    stays small enough to verify quickly. It survives the source restarting under it
    (reconnects and goes on). Which threads exist at the end is read from the source itself.
    """

    def __init__(
        self,
        dsn: str,
        prefix: str,
        *,
        quota: int = 10,
        pace_s: float = 0.1,
        delete_every: int = 4,
        big_every: int = 0,
        seed: int = 0,
    ) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.quota = quota
        self.pace_s = pace_s
        self.delete_every = delete_every
        self.big_every = big_every
        self.random = random.Random(seed)
        self.written = 0
        self.deleted = 0
        self.errors = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def start(self) -> LiveWriter:
        self._thread.start()
        return self

    def halt(self) -> None:
        """Stop without waiting (test teardown after a failure)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    def allow(self, quota: int) -> None:
        with self._changed:
            self.quota = quota
            self._changed.notify_all()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "writer did not stop"
        if self.failure is not None:
            raise AssertionError(f"the app failed: {self.failure!r}") from self.failure

    def wait_written(self, count: int, timeout: float = 120) -> None:
        """Until ``count`` conversations were written in total (raising the quota if needed)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            if self.quota < count:
                self.quota = count
                self._changed.notify_all()
            while self.written < count:
                if self.failure is not None:
                    raise AssertionError(f"the app failed: {self.failure!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"app wrote {self.written} of {count} conversations in {timeout}s")
                self._changed.wait(min(left, 0.5))

    def _next(self) -> int | None:
        """The index of the next conversation once the quota allows it; None when stopping."""
        with self._changed:
            while self.written >= self.quota and not self._stop.is_set():
                self._changed.wait(0.5)
            return None if self._stop.is_set() else self.written

    def _run(self) -> None:
        app: App | None = None
        try:
            while (i := self._next()) is not None:
                try:
                    if app is None:
                        app = App(self.dsn)
                    big = self.big_every and i % self.big_every == self.big_every - 1
                    app.converse(
                        f"{self.prefix}-{i}",
                        turns=2 if i % 4 == 1 else 1,
                        resume=i % 3 != 0,
                        attachment_bytes=400_000 if big else 0,
                    )
                    if self.delete_every and i % self.delete_every == self.delete_every - 1:
                        app.delete(f"{self.prefix}-{self.random.randrange(i + 1)}")
                        self.deleted += 1
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    # The source went away (a restart under test): reconnect once it is back. The
                    # interrupted conversation may be half written: it stays as it is.
                    self.errors += 1
                    if app is not None:
                        app.conn.close()
                    app = None
                with self._changed:
                    self.written = i + 1
                    self._changed.notify_all()
                self._stop.wait(self.pace_s)  # the app's pace (and retry pacing while it is down)
        except BaseException as exc:
            self.failure = exc
            with self._changed:
                self._changed.notify_all()
        finally:
            if app is not None:
                app.conn.close()


def verify_all(config: Config, *, workers: int = 4, thread_ids: Sequence[str] | None = None) -> VerifyReport:
    """``replicator.verify`` over every thread of either side (or ``thread_ids``), split across
    ``workers`` parallel verifiers (each its own savers): reading DynamoDBSaver through moto costs
    hundreds of requests per thread."""
    if thread_ids is None:
        source = make_source(config.source, MemoryStateStore())
        sink = make_sink(config.targets[0])
        try:
            ids = sorted(set(source.thread_ids()) | set(sink.thread_ids()))
        finally:
            source.close()
            sink.close()
    else:
        ids = sorted(set(thread_ids))
    shards = [ids[i::workers] for i in range(workers) if ids[i::workers]]

    def one(shard: list[str]) -> VerifyReport:
        src = make_source(config.source, MemoryStateStore())
        tgt = make_sink(config.targets[0])
        try:
            return verify(src, tgt, thread_ids=shard)
        finally:
            src.close()
            tgt.close()

    total = VerifyReport()
    with concurrent.futures.ThreadPoolExecutor(max(1, len(shards))) as pool:
        for report in pool.map(one, shards):
            total.threads += report.threads
            total.checkpoints += report.checkpoints
            total.writes += report.writes
            total.differences.extend(report.differences)
            total.truncated = total.truncated or report.truncated
    return total


def assert_same(config: Config, *, workers: int = 4) -> VerifyReport:
    """Source and target equal through both savers, and the source really had threads to compare."""
    report = verify_all(config, workers=workers)
    assert report.ok, "\n".join(str(d) for d in report.differences[:30])
    assert report.threads == len(source_threads(config)), "thread counts differ"
    assert report.threads > 0 and report.checkpoints > 0
    return report


def source_threads(config: Config) -> list[str]:
    source = make_source(config.source, MemoryStateStore())
    try:
        return list(source.thread_ids())
    finally:
        source.close()


def slot_row(dsn: str, slot: str) -> dict[str, Any] | None:
    """The slot as Postgres reports it (LSNs as integers)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            """SELECT active, active_pid, wal_status,
                      pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint,
                      pg_wal_lsn_diff(restart_lsn, '0/0')::bigint
               FROM pg_replication_slots WHERE slot_name = %s""",
            (slot,),
        ).fetchone()
    if row is None:
        return None
    return {
        "active": row[0],
        "active_pid": row[1],
        "wal_status": row[2],
        "confirmed_flush_lsn": row[3],
        "restart_lsn": row[4],
    }


def current_wal_lsn(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident set size (or ``VmHWM``, its peak) of a live process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_events(output: str, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines with this ``event``."""
    import json

    found = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found
