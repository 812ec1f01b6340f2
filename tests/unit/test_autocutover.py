"""The unattended cutover's settings and gate: when the daemon may switch by itself."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from replicator.autocutover import AutoCutover
from replicator.config import parse_config
from replicator.errors import ReplicatorError


def _config(**cutover: Any) -> Any:
    return parse_config(
        {
            "source": {"kind": "postgres", "dsn": "postgresql://u@h/db"},
            "kafka": {"bootstrap_servers": "k:9092", "topic": "t"},
            "targets": [{"name": "dynamo", "kind": "dynamodb", "table": "x"}],
            "cutover": cutover,
        },
        origin="(test)",
    )


def _report(
    phase: str = "replicating", caught_up: bool = True, lag: float = 0.0, dead: int = 0
) -> dict[str, Any]:
    return {
        "migration": {"phase": phase},
        "targets": {
            "dynamo": {
                "caught_up": caught_up,
                "lag": {"seconds": lag},
                "dead_letters": {"count": dead, "paused_threads": []},
            }
        },
    }


def test_off_by_default() -> None:
    auto = AutoCutover(_config())
    assert not auto.armed
    auto.consider(_report(), now=0)
    auto.consider(_report(), now=10_000)
    assert auto.running is None and auto.held_since is None


@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [("02:00-04:00", (2, 0), (4, 0)), ("23:30-00:30", (0, 10), (12, 0)), ("00:00-23:59", (12, 0), (23, 59))],
)
def test_window(window: str, inside: tuple[int, int], outside: tuple[int, int]) -> None:
    settings = _config(auto=True, window=window).cutover
    assert settings.in_window(inside[0] * 60 + inside[1])
    assert not settings.in_window(outside[0] * 60 + outside[1])


@pytest.mark.parametrize("window", ["2-4", "25:00-01:00", "02:00-04:60", "02:00"])
def test_a_bad_window_is_refused_by_name(window: str) -> None:
    with pytest.raises(ReplicatorError, match="window"):
        _config(auto=True, window=window)


def test_a_cutover_target_must_exist() -> None:
    with pytest.raises(ReplicatorError, match=r"cutover\.target 'nope'"):
        _config(auto=True, target="nope")


def test_the_gate_and_its_hold() -> None:
    started: list[Any] = []
    release = threading.Event()

    class Done:
        ok, reason, pause_ms = True, "", 1.0

    def run(*args: Any, **kwargs: Any) -> Done:
        started.append(kwargs["scope"])
        release.wait(5)
        return Done()

    auto = AutoCutover(_config(auto=True, hold_s=5, percent=10), run=run)
    now = datetime.now(UTC)
    assert auto.gate_holds(_report(), now) is None
    assert auto.gate_holds(_report(phase="rolled_back"), now) == "phase is rolled_back"  # never undo a human
    assert auto.gate_holds(_report(caught_up=False, lag=9.0), now) == "9.0s behind"
    assert auto.gate_holds(_report(caught_up=False, lag=2.0), now) is None  # within max_lag_s
    assert auto.gate_holds(_report(dead=1), now) == "dead letters"

    auto.consider(_report(), now=100)
    auto.consider(_report(), now=103)
    auto.consider(_report(dead=1), now=104)  # a break restarts the hold
    auto.consider(_report(), now=105)
    auto.consider(_report(), now=109)
    assert auto.running is None and not started
    auto.consider(_report(), now=110.5)
    switching = auto.running
    assert switching is not None and not auto.armed
    auto.consider(_report(), now=200)  # one switch at a time
    assert auto.running is switching
    release.set()
    switching.join(5)
    assert [s.percent for s in started] == [10]
    assert auto.attempts == {"ok": 1, "refused": 0} and not auto.armed  # once per daemon run
