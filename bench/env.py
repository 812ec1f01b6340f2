"""Services every figure uses, started once per run, plus process helpers (CPU, RSS, daemon).

Postgres, the Kafka-protocol broker and moto are the embedded ones from ``replicator.embedded``:
real servers on free ports, each a child process, all removed on exit. Each figure gets its own
database, DynamoDB table and topic, so figures never see each other's data.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.config import Config, parse_config
from replicator.embedded import (
    EmbeddedBroker,
    EmbeddedMoto,
    EmbeddedPostgres,
    create_dynamodb_table,
    create_s3_bucket,
)
from replicator.state import PostgresStateStore
from replicator.status import collect, source_head

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces: the fields after it start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Postgres backends below the postmaster)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def rss_mib(pid: int) -> float | None:
    """Resident set size (VmRSS) in MiB, None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU seconds used by named process groups between ``start()`` and ``stop()``.

    Processes that appear while measuring (new Postgres backends) are counted from zero; the
    group's members are re-listed at stop, so short-lived ones that exited in between are missed
    (a small underestimate, said where it matters).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self.wall = 0.0
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._start = {name: {p: cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.wall = time.monotonic() - self._t0
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            self.used[name] = sum(max(0.0, cpu_seconds(p) - before.get(p, 0.0)) for p in pids())
        return self.used

    def shares(self) -> dict[str, float]:
        """Cores used on average by each group while measuring."""
        return {name: used / self.wall for name, used in self.used.items()} if self.wall else {}


# -------------------------------------------------------------------------------------- services


@dataclass
class Services:
    pg: EmbeddedPostgres
    broker: EmbeddedBroker
    moto: EmbeddedMoto
    workdir: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}_{next(self._names)}"

    def database(self, prefix: str) -> str:
        return self.pg.create_database(self.unique(prefix))

    def table(self, prefix: str) -> str:
        name = self.unique(prefix)
        create_dynamodb_table(self.moto.endpoint_url, name)
        return name

    def postgres_pids(self) -> list[int]:
        try:
            postmaster = int((self.pg.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return descendants(postmaster)

    def process_groups(self, **extra: Callable[[], list[int]]) -> dict[str, Callable[[], list[int]]]:
        groups: dict[str, Callable[[], list[int]]] = {
            "postgres": self.postgres_pids,
            "broker": lambda: [self.broker.pid] if self.broker.pid else [],
            "moto": lambda: [self.moto.pid] if self.moto.pid else [],
        }
        groups.update(extra)
        return groups

    def config(
        self,
        dsn: str,
        table: str,
        *,
        topic: str,
        partitions: int = 4,
        source: dict[str, Any] | None = None,
        kafka: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
    ) -> tuple[Config, Path]:
        """A daemon config for this database, table and topic, also written as TOML for subprocesses."""
        suffix = topic.replace(".", "_").replace("-", "_")
        data: dict[str, Any] = {
            "source": {
                "kind": "postgres",
                "dsn": dsn,
                "slot": f"s_{suffix}",
                "publication": f"p_{suffix}",
                "heartbeat_interval_s": 0.2,
                **(source or {}),
            },
            "kafka": {
                "bootstrap_servers": self.broker.bootstrap_servers,
                "topic": topic,
                "partitions": partitions,
                "group_prefix": f"g-{suffix}",
                "session_timeout_ms": 6000,  # the embedded broker's group join takes half of it
                **(kafka or {}),
            },
            "targets": [
                {
                    "name": "dynamo",
                    "kind": "dynamodb",
                    "table": table,
                    "region": "us-east-1",
                    "endpoint_url": self.moto.endpoint_url,
                    "s3_bucket": "offload",
                    **(target or {}),
                }
            ],
            "log": {"format": "json", "level": "warning"},
        }
        path = self.workdir / f"{suffix}.toml"
        path.write_text(to_toml(data), encoding="utf-8")
        return parse_config(data, origin=str(path)), path


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Postgres, broker and moto for one bench run; everything is removed on exit."""
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(EmbeddedPostgres())
        broker = stack.enter_context(EmbeddedBroker())
        moto = stack.enter_context(EmbeddedMoto())
        os.environ.update(moto.aws_env())
        create_s3_bucket(moto.endpoint_url, "offload")
        with pg.connect() as conn:
            # Bulk data generation makes a lot of WAL: fewer forced checkpoints while it runs.
            conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            conn.execute("SELECT pg_reload_conf()")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lgr-bench-")))
        yield Services(pg, broker, moto, workdir)


@dataclass(frozen=True)
class Store:
    """A DynamoDB implementation a figure runs on (S3 stays on moto)."""

    name: str  # "moto" or "dynalite"
    endpoint: str
    pids: Callable[[], list[int]]


@contextlib.contextmanager
def dynamodb_stores(s: Services, names: tuple[str, ...]) -> Iterator[list[Store]]:
    """The DynamoDBs of ``names`` that can run here, in that order: moto (always) and dynalite
    (the second DynamoDB of ``tests/services``, installed by ``npm ci``; left out, with a log
    line, when it is not installed)."""
    moto = Store("moto", s.moto.endpoint_url, lambda: [s.moto.pid] if s.moto.pid else [])
    with contextlib.ExitStack() as stack:
        found = {"moto": moto}
        if "dynalite" in names:
            try:
                from tests.services.dynalite import EmbeddedDynalite

                server = stack.enter_context(EmbeddedDynalite())
                found["dynalite"] = Store(
                    "dynalite", server.endpoint_url, lambda: [server.pid] if server.pid else []
                )
            except Exception as exc:
                log(f"dynalite unavailable ({exc}); moto only")
        yield [found[name] for name in names if name in found]


def to_toml(data: dict[str, Any]) -> str:
    """The small TOML subset a daemon config needs (tables, arrays of tables, scalars)."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for section, body in data.items():
        blocks = body if isinstance(body, list) else [body]
        for block in blocks:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in block.items() if v is not None)
            lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- daemon


def caught_up(config: Config, state: PostgresStateStore) -> bool:
    head, slot = source_head(config)
    return bool(collect(config, state, head, slot)["caught_up"])


def wait_caught_up(
    config: Config,
    state: PostgresStateStore,
    *,
    timeout: float,
    poll: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Seconds until every target applied what the source had when this was called."""
    t0 = time.monotonic()
    head, slot = source_head(config)
    while not collect(config, state, head, slot)["caught_up"]:
        if alive is not None and not alive():
            raise RuntimeError("the daemon exited before the target caught up")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"target not caught up after {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic() - t0


class DaemonProcess:
    """The daemon as a child process (``replicator.cli run`` or the bench's instrumented one)."""

    def __init__(self, config_path: Path, logfile: Path, module: str = "replicator.cli", *args: str) -> None:
        self.logfile = logfile
        self._out = logfile.open("ab")
        cmd = [sys.executable, "-m", module]
        cmd += ["run", "--config", str(config_path)] if module == "replicator.cli" else [str(config_path)]
        self.proc = subprocess.Popen(
            [*cmd, *args], stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._out.close()
        return int(self.proc.returncode)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Sampler(threading.Thread):
    """Calls ``sample()`` every ``interval`` seconds in the background until stopped."""

    def __init__(self, sample: Callable[[], None], interval: float) -> None:
        super().__init__(daemon=True)
        self.sample = sample
        self.interval = interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def run_publisher_until(
    publisher: Any, done: Callable[[], bool], *, timeout: float | None = None, poll_s: float = 0.02
) -> float:
    """Run ``publisher`` in a thread until ``done()`` holds and no record is left unacknowledged,
    then stop it; the seconds that took. A publisher that dies raises instead of hanging."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            publisher.run(stop)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    thread.start()
    while not done() or publisher.unacknowledged_bytes:
        if errors or not thread.is_alive():
            raise RuntimeError(f"publisher stopped: {errors}")
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise TimeoutError("the publisher did not finish in time")
        time.sleep(poll_s)
    seconds = time.monotonic() - t0
    stop.set()
    thread.join(60)
    return seconds


def fill_topic(config: Config, state: PostgresStateStore, timeout: float = 600) -> dict[str, Any]:
    """Run the publisher alone (in this process) until the source's initial copy is in Kafka,
    acknowledged; the topic then holds a backlog for appliers to drain. Returns its stats."""
    from connectors.registry import make_source
    from replicator.publisher import Publisher

    source = make_source(config.source, state)
    publisher = Publisher(source, config.kafka, state)
    try:
        seconds = run_publisher_until(
            publisher, lambda: (state.get("source") or {}).get("snapshot") == "done", timeout=timeout
        )
    finally:
        source.close()
    return {
        "seconds": seconds,
        "events": publisher.stats.events,
        "produced": dict(publisher.stats.produced),
        "records": sum(publisher.stats.produced.values()),
    }


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def cpu_busy(window_s: float = 2.0) -> float:
    """The share of all cores busy over the next ``window_s`` seconds (0-1)."""
    busy0, total0 = _cpu_times()
    time.sleep(window_s)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(threshold: float = 0.2, limit_s: float = 180.0) -> tuple[float, float]:
    """Wait until the machine is quiet (under ``threshold`` of its CPU busy over 2 s), at most
    ``limit_s``: a figure measured while the previous one's work still drains (a store's
    compaction, a database's checkpoint) measures that too. Returns (busy share, seconds waited)."""
    started = time.monotonic()
    busy = cpu_busy()
    while busy >= threshold and time.monotonic() - started < limit_s:
        busy = cpu_busy()
    return busy, time.monotonic() - started
