"""The daemon's unattended cutover (``[cutover] auto = true``): off unless asked for.

Each status round (once a second) the daemon hands its report to ``AutoCutover.consider``.
The switch starts only from ``replicating`` (never after an operator's rollback: the daemon
must not undo a human decision), once the gate has held without a break for ``hold_s`` inside
the configured window: the target caught up (or within ``max_lag_s``), no dead letter. The
cutover itself is the command's (``run_cutover``), run in its own thread so the daemon's
status and metrics go on; a refusal re-arms the hold. Every step is logged, and counted in
``auto_cutover_attempts_total{result}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from replicator.config import Config
from replicator.migration import Phase

log = structlog.get_logger("replicator.autocutover")


class AutoCutover:
    def __init__(self, config: Config, run: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.settings = config.cutover
        self.target = self.settings.target or config.targets[0].name
        self.held_since: float | None = None
        self.attempts: dict[str, int] = {"ok": 0, "refused": 0}
        self.running: threading.Thread | None = None
        self._run = run

    @property
    def armed(self) -> bool:
        return self.settings.auto and self.running is None

    def gate_holds(self, report: dict[str, Any], now: datetime) -> str | None:
        """None when the gate holds now; otherwise why not (for the log)."""
        migration = report.get("migration") or {}
        if migration.get("phase", Phase.REPLICATING.value) != Phase.REPLICATING.value:
            return f"phase is {migration.get('phase')}"
        if not self.settings.in_window(now.hour * 60 + now.minute):
            return f"outside the window {self.settings.window} (UTC)"
        target = (report.get("targets") or {}).get(self.target)
        if target is None:
            return "no status for the target yet"
        if target["dead_letters"]["count"] or target["dead_letters"]["paused_threads"]:
            return "dead letters"
        if not target["caught_up"] and float(target["lag"]["seconds"]) > self.settings.max_lag_s:
            return f"{target['lag']['seconds']:.1f}s behind"
        return None

    def consider(self, report: dict[str, Any], now: float | None = None) -> None:
        if not self.armed:
            return
        moment = time.monotonic() if now is None else now
        why_not = self.gate_holds(report, datetime.now(UTC))
        if why_not is not None:
            if self.held_since is not None:
                log.info("unattended cutover: gate broke, hold restarts", reason=why_not)
            self.held_since = None
            return
        if self.held_since is None:
            self.held_since = moment
            log.info(
                "unattended cutover: gate holds, waiting", hold_s=self.settings.hold_s, target=self.target
            )
            return
        if moment - self.held_since < self.settings.hold_s:
            return
        log.warning("unattended cutover: starting", target=self.target, percent=self.settings.percent)
        self.running = threading.Thread(target=self._switch, name="auto-cutover", daemon=True)
        self.running.start()

    def _switch(self) -> None:
        from replicator.cutover import Scope, run_cutover

        run = self._run or run_cutover
        try:
            result = run(
                self.config,
                self.settings.timeout_s,
                self.settings.max_lag_s,
                target=self.target,
                scope=Scope(self.settings.percent),
                log=lambda line: log.info("unattended cutover", step=line),
            )
            if result.ok:
                self.attempts["ok"] += 1
                log.warning("unattended cutover: done", pause_ms=result.pause_ms, target=self.target)
                self.settings = self.settings.model_copy(update={"auto": False})  # once per daemon run
            else:
                self.attempts["refused"] += 1
                log.warning("unattended cutover: refused, the hold restarts", reason=result.reason)
        except Exception as exc:
            self.attempts["refused"] += 1
            log.error("unattended cutover: failed, the hold restarts", error=str(exc))
        finally:
            self.held_since = None
            self.running = None
