"""The long-lived process: one publisher and one applier per target, each supervised.

Roles (``replicator run --role``) split the pipeline across processes and machines:

- ``all`` (default): publisher, every applier, the monitor: one process does everything.
- ``capture``: the publisher and the monitor. It owns the replication slot (or the changelog), so
  exactly one runs per source (Kubernetes: one replica, ``Recreate``). Its ``/status`` is the
  whole report (positions of every stage, read from the state store, members of every group)
  and its ``/readyz`` says the source is reachable and the publisher runs.
- ``apply``: the appliers only (of every target, or of those named by ``--target``). Any number
  run, on as many machines as the topic has partitions: they share each target's consumer group.
  It never opens the source: no slot, no head marker, no preflight of the source; the state
  store (by default a schema of the source database) is all it reads and writes there. Its
  ``/readyz`` says every applier runs and has joined its group; its ``/status`` describes this
  process only (``replicator status`` and the capture process report the pipeline).

A stage that fails with a retryable error (connection lost, broker away, throttled target) is
rebuilt from its persisted position after a jittered backoff; nothing it did not confirm is
lost because confirmation always trails durability. A fatal error (bad setup, lost slot,
malformed event) stops the whole daemon with a message that says what to do. SIGTERM and
SIGINT stop it cleanly: the publisher flushes and confirms, the appliers commit.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from connectors.base import Source, Switchboard
from connectors.registry import captured_in_app, make_sink, make_source
from replicator import allocator
from replicator.applier import Applier
from replicator.autocutover import AutoCutover
from replicator.config import Config
from replicator.errors import ErrorKind, ReplicatorError, Retry, classify
from replicator.http import StatusServer
from replicator.lifecycle import StageState, stage_transition
from replicator.metrics import Metrics
from replicator.publisher import Publisher
from replicator.redact import redact
from replicator.state import StateStore, open_state_store
from replicator.status import (
    Live,
    applied_floor,
    collect,
    migration_view,
    open_switchboard,
    recheck_caught_up,
    source_view,
)

log = structlog.get_logger("replicator.daemon")

_HEALTHY_RUN_S = 60.0
_RELEASE_MEMORY_S = 5.0  # how often freed memory goes back to the OS (replicator/allocator.py)

ROLES = ("all", "capture", "apply")


class Stage(Protocol):
    def run(self, stop: threading.Event) -> None: ...


@dataclass
class StageStatus:
    name: str
    state: StageState = StageState.STARTING
    restarts: int = 0
    last_error: str | None = None
    stage: Any = None

    def move(self, new: StageState) -> None:
        """The one way a stage changes state: checked against ``lifecycle``'s table."""
        self.state = stage_transition(self.name, self.state, new)


@dataclass
class Daemon:
    config: Config
    role: str = "all"
    only_targets: tuple[str, ...] = ()  # apply: these targets' appliers only (default: every one)
    state: StateStore | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    stages: dict[str, StageStatus] = field(default_factory=dict)
    fatal: ReplicatorError | None = None
    report: dict[str, Any] = field(default_factory=dict)
    report_error: str | None = None
    report_at: float = 0.0
    http_port: int | None = None
    _metrics: Metrics | None = None
    _previous_head: int = 0
    auto_cutover: AutoCutover = field(init=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ReplicatorError(ErrorKind.CONFIG, f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.only_targets and self.role != "apply":
            raise ReplicatorError(ErrorKind.CONFIG, "--target chooses appliers: it goes with --role apply")
        for name in self.only_targets:
            self.config.target(name)  # a CONFIG error naming it when there is no such target
        if self.role == "capture" and captured_in_app(self.config.source):
            raise ReplicatorError(
                ErrorKind.CONFIG,
                f"source kind {self.config.source.kind!r} is captured in the app, which publishes its "
                "changes itself: there is nothing to capture. Run the appliers with --role apply.",
            )
        self.auto_cutover = AutoCutover(self.config)
        if self.config.cutover.auto and self.role != "apply":  # the monitor, hence capture, runs it
            settings = self.config.cutover
            log.warning(
                "unattended cutover is on: the daemon switches the app once the gate holds",
                hold_s=settings.hold_s,
                window=settings.window or "any time",
                target=self.auto_cutover.target,
            )

    @property
    def captures(self) -> bool:
        return self.role in ("all", "capture")

    @property
    def applies(self) -> bool:
        return self.role in ("all", "apply")

    def targets(self) -> list[Any]:
        """The targets whose appliers this process runs."""
        if not self.applies:
            return []
        if self.only_targets:
            return [self.config.target(name) for name in self.only_targets]
        return list(self.config.targets)

    def preflight(self) -> None:
        """Fail fast, before any thread starts, on everything an operator must fix (in this
        process's role: an apply process does not look at the source, a capture process not at
        the targets)."""
        from replicator import kafka

        if self.captures:
            state = self._state()
            source = make_source(self.config.source, state)
            try:
                source.check()
            finally:
                source.close()
        kafka.ensure_topic(self.config.kafka)
        for target in self.targets():
            sink = make_sink(target)
            try:
                sink.check()
            finally:
                sink.close()

    def _state(self) -> StateStore:
        if self.state is None:
            self.state = open_state_store(self.config)
        return self.state

    def run(self, install_signals: bool = True) -> int:
        """Run until stopped; 0 after a clean stop, 1 after a fatal error."""
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop_event.set())
        self.preflight()
        allocator.configure()
        state = self._state()
        self._metrics = metrics = Metrics(self._metrics_view)
        server = None
        if self.config.http.listen:
            server = StatusServer(
                self.config.http.listen,
                status=self.status_report,
                ready=self.readiness,
                metrics=metrics.render,
            )
            server.start()
            self.http_port = server.port
            log.info("http endpoint listening", listen=self.config.http.listen, port=server.port)
        threads: list[threading.Thread] = []
        # A source captured in the app publishes itself: then no process runs a publisher.
        if self.captures and not captured_in_app(self.config.source):
            threads.append(
                threading.Thread(
                    target=self._supervise,
                    name="publisher",
                    args=("publisher", lambda: self._publisher(state)),
                    daemon=True,
                )
            )
        for target in self.targets():
            threads.append(
                threading.Thread(
                    target=self._supervise,
                    name=f"applier:{target.name}",
                    args=(f"applier:{target.name}", lambda t=target: self._applier(state, t)),
                    daemon=True,
                )
            )
        log.info(
            "daemon started",
            role=self.role,
            targets=[t.name for t in self.targets()],
            topic=self.config.kafka.topic,
        )
        for thread in threads:
            thread.start()
        if self.captures:  # the source's view, lag and the unattended cutover: one process
            monitor = threading.Thread(target=self._monitor, name="monitor", daemon=True)
            monitor.start()
        released = time.monotonic()
        while not self.stop_event.is_set():
            self.stop_event.wait(0.5)
            if time.monotonic() - released >= _RELEASE_MEMORY_S:
                allocator.release()
                released = time.monotonic()
        for thread in threads:
            thread.join(timeout=60)
        if server is not None:
            server.stop()
        log.info("daemon stopped", fatal=str(self.fatal) if self.fatal else None)
        return 1 if self.fatal else 0

    def _publisher(self, state: StateStore) -> tuple[Stage, Callable[[], None]]:
        source = make_source(self.config.source, state)
        publisher = Publisher(
            source,
            self.config.kafka,
            state,
            flush_interval_s=getattr(self.config.source, "flush_interval_s", 0.05),
            applied_position=lambda partitions: applied_floor(state, self.config, partitions),
        )
        return publisher, source.close

    def _applier(self, state: StateStore, target: Any) -> tuple[Stage, Callable[[], None]]:
        sink = make_sink(target, state)
        applier = Applier(
            sink,
            self.config.kafka,
            state,
            batch_events=target.batch_events,
            on_batch=self._metrics.batch_observer(target.name) if self._metrics else None,
        )
        return applier, sink.close

    # -- observability ----------------------------------------------------------------------------

    def _monitor(self) -> None:
        """Refresh the status report every second: /status, the lag gauges and readiness use it."""
        source: Source | None = None
        board: Switchboard | None = None
        while not self.stop_event.is_set():
            try:
                if source is None:  # its own, read-only view: the publisher's source is busy streaming
                    source = make_source(self.config.source, self._state())
                    board = open_switchboard(self.config)  # read only: the app and commands create it
                head, details = source_view(source)
                migration = migration_view(board, self._state())
                if self._metrics is not None:
                    self._metrics.observe_switches(migration.get("history") or [])
                publisher = self._stage("publisher")
                live = Live(stages=self._stage_view())
                if publisher is not None:
                    live.produced = dict(publisher.stats.produced)
                    live.control_offsets = {p: o.copy() for p, o in publisher.stats.control_offsets.items()}
                    live.batch_offsets = {p: o.copy() for p, o in publisher.stats.batch_offsets.items()}
                report = collect(self.config, self._state(), head, details, live, migration)
                # The daemon's own writes (positions) keep moving the WAL head, so "caught up"
                # is judged against the head of the previous round, a second ago.
                self.report = recheck_caught_up(report, self._previous_head or head, exact_backlog=True)
                self.auto_cutover.consider(self.report)
                self._previous_head = head
                self.report_error = None
                self.report_at = time.monotonic()
                if details.get("retained_over_threshold"):
                    log.warning(
                        "the source retains more of its log than configured (see source settings)",
                        source=self.config.source.kind,
                        retained_bytes=details.get("retained_bytes"),
                    )
            except Exception as exc:
                message = str(exc) if isinstance(exc, ReplicatorError) else f"{type(exc).__name__}: {exc}"
                self.report_error = redact(message)
                if source is not None:  # reconnect next round
                    source.close()
                    source = None
                if board is not None:
                    board.close()
                    board = None
            self.stop_event.wait(1.0)
        if source is not None:
            source.close()
        if board is not None:
            board.close()

    def _stage(self, name: str) -> Any:
        status = self.stages.get(name)
        return status.stage if status is not None and status.state is StageState.RUNNING else None

    def _stage_view(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"state": s.state.value, "restarts": s.restarts, "last_error": s.last_error}
            for name, s in self.stages.items()
        }

    def status_report(self) -> dict[str, Any]:
        if self.role == "apply":
            # No source view here (an apply process never opens the source): this process only.
            # Without "targets", `replicator status` reads the pipeline from the state store.
            return {
                "role": self.role,
                "caught_up": None,
                "state": "running" if self.readiness()[0] else "starting",
                "stages": self._stage_view(),
                "appliers": {
                    name.split(":", 1)[1]: s.stage.member_doc()
                    for name, s in self.stages.items()
                    if name.startswith("applier:") and s.stage is not None
                },
            }
        if not self.report:
            return {"caught_up": False, "state": "starting", "error": self.report_error, "role": self.role}
        return {
            **self.report,
            "stages": self._stage_view(),
            "monitor_error": self.report_error,
            "role": self.role,
        }

    def readiness(self) -> tuple[bool, str]:
        """Ready means this process does its part: capture (and all) when the source answers
        and every stage runs; apply when every applier runs and has joined its consumer group
        (with an empty assignment too: a spare member is ready to take partitions over)."""
        if self.captures:
            if self.report_error:
                return False, self.report_error
            if not self.report or time.monotonic() - self.report_at > 10:
                return False, "no recent status (source unreachable?)"
        failing = [n for n, s in self.stages.items() if s.state is not StageState.RUNNING]
        if failing:
            return False, "stages not running: " + ", ".join(
                f"{n} ({self.stages[n].state.value}: {self.stages[n].last_error})" for n in failing
            )
        if self.role == "apply":
            waiting = []
            for target in self.targets():
                status = self.stages.get(f"applier:{target.name}")
                if status is None or status.stage is None or not status.stage.joined:
                    waiting.append(target.name)
            if waiting:
                return False, "not yet in the consumer group of: " + ", ".join(waiting)
            return True, "every applier runs and has joined its consumer group"
        return True, "every stage running"

    def _metrics_view(self) -> dict[str, Any]:
        appliers = {
            name.split(":", 1)[1]: s.stage
            for name, s in self.stages.items()
            if name.startswith("applier:") and s.stage is not None
        }
        publisher = self.stages.get("publisher")
        return {
            "report": self.report,
            "ready": self.readiness()[0],
            "publisher": publisher.stage if publisher is not None else None,
            "appliers": appliers,
            "stages": self.stages,
            "auto_cutover": self.auto_cutover,
        }

    def _supervise(self, name: str, build: Callable[[], tuple[Stage, Callable[[], None]]]) -> None:
        status = self.stages.setdefault(name, StageStatus(name))
        # Every log line of this thread names its stage (and target, for an applier).
        structlog.contextvars.bind_contextvars(stage=name.split(":", 1)[0])
        if ":" in name:
            structlog.contextvars.bind_contextvars(target=name.split(":", 1)[1])
        attempt = 0
        while not self.stop_event.is_set():
            close: Callable[[], None] | None = None
            started = time.monotonic()
            try:
                stage, close = build()
                status.stage = stage
                status.move(StageState.RUNNING)
                stage.run(self.stop_event)
                status.move(StageState.STOPPED)
                return
            except Exception as raised:
                exc = classify(raised)
                status.last_error = redact(str(exc))
                if exc.retry is Retry.NO:
                    status.move(StageState.FAILED)
                    self.fatal = exc
                    if exc is raised:
                        log.error(
                            "stage failed; stopping", stage=name, kind=exc.kind.value, error=status.last_error
                        )
                    else:  # a bug: the traceback goes to the log, the one-line reason to status
                        log.error(
                            "stage crashed on a bug; stopping",
                            stage=name,
                            kind=exc.kind.value,
                            error=status.last_error,
                            exc_info=raised,
                        )
                    self.stop_event.set()
                    return
                log.warning(
                    "stage interrupted; retrying", stage=name, kind=exc.kind.value, error=status.last_error
                )
            finally:
                if close is not None:
                    try:
                        close()
                    except Exception:
                        pass
            if time.monotonic() - started > _HEALTHY_RUN_S:
                attempt = 0  # it ran fine for a while: this is a new incident, not the same one
            attempt += 1
            status.restarts += 1
            status.move(StageState.RETRYING)
            self.stop_event.wait(backoff_delay(attempt))


def backoff_delay(attempt: int, initial: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter: restarts of many pods do not hit a service together."""
    return random.uniform(initial / 2, min(cap, initial * 2 ** (attempt - 1)))
