"""Lag arithmetic, caught-up judgement and the rendered status table."""

from __future__ import annotations

import io

from rich.console import Console

from replicator.offset_log import OffsetLog
from replicator.render import render_status
from replicator.status import _data_events, _progress, recheck_caught_up


def test_lag_in_events_skips_control_records() -> None:
    heartbeats = OffsetLog.of([3, 5, 9])
    assert _data_events(0, 10, heartbeats) == 7
    assert _data_events(4, 10, heartbeats) == 4  # 5 and 9 are heartbeats
    assert _data_events(10, 10, heartbeats) == 0
    assert _data_events(12, 10, heartbeats) == 0  # consumer ahead of stale produced offsets


def test_lag_in_events_counts_every_event_of_a_record_holding_several() -> None:
    heartbeats = OffsetLog.of([3])
    batches = OffsetLog.of(
        [(2, 36), (6, 4), (11, 9)]
    )  # records 2 and 6 hold 37 and 5 events; 11 is past the end
    assert _data_events(0, 10, heartbeats, batches) == 9 + 36 + 4
    assert _data_events(3, 10, heartbeats, batches) == 6 + 4, "record 2 is applied"
    assert _data_events(7, 10, heartbeats, batches) == 3


def test_progress_rate_and_eta() -> None:
    running = {"snapshot": "running", "rows": 500, "total": 2000, "started_at": 100.0, "updated_at": 102.0}
    assert _progress(running, 103.0) == {"rows_per_second": 250.0, "eta_seconds": 6.0}
    assert _progress({**running, "snapshot": "done"}, 103.0)["eta_seconds"] is None


def _position(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _report(applied: list[str], snapshot: str = "done") -> dict:
    return {
        "caught_up": True,
        "source": {
            "kind": "postgres",
            "head_lsn": "0/20",
            "slot": {"exists": True, "active": True, "confirmed_flush_lsn": "0/20"},
            "snapshot": {
                "state": snapshot,
                "rows": 500,
                "total_estimate": 2000,
                "bytes": 4096,
                "rows_per_second": 250.0,
                "eta_seconds": 6.0,
            },
        },
        "lag": {"capture": {"bytes": 0}, "publish": {"records": 10}},
        "targets": {
            "dynamo": {
                "caught_up": True,
                "applied_lsn": min(applied),
                "lag": {"events": 3, "bytes": 10, "seconds": 1.5},
                "partitions": {
                    str(i): {"applied_lsn": lsn, "applied_position": _position(lsn)}
                    for i, lsn in enumerate(applied)
                },
            }
        },
    }


def test_caught_up_is_judged_against_the_given_head() -> None:
    assert recheck_caught_up(_report(["0/20", "0/30"]), 0x20)["caught_up"] is True
    behind = recheck_caught_up(_report(["0/1F", "0/30"]), 0x20)
    assert behind["caught_up"] is False and behind["targets"]["dynamo"]["caught_up"] is False
    assert recheck_caught_up(_report(["0/20"], snapshot="running"), 0x20)["caught_up"] is False


def test_status_table_shows_every_stage_and_the_copy_progress() -> None:
    out = io.StringIO()
    render_status(_report(["0/20"], snapshot="running"), Console(file=out, width=120))
    text = out.getvalue()
    for row in ("source head", "initial copy", "captured (slot)", "published", "applied: dynamo"):
        assert row in text
    assert "500/2000 rows" in text and "250 rows/s" in text and "ETA 6 s" in text
    assert "3 events" in text and "1.5 s" in text


def test_a_known_backlog_younger_than_the_head_is_not_caught_up() -> None:
    """The daemon's head is a second old; data records waiting still mean "behind"."""
    assert recheck_caught_up(_report(["0/20", "0/30"]), 0x20, exact_backlog=False)["caught_up"] is True
    report = recheck_caught_up(_report(["0/20", "0/30"]), 0x20, exact_backlog=True)
    assert report["caught_up"] is False and report["targets"]["dynamo"]["caught_up"] is False
