"""``[source] kind = "memory"``: its config, its registry entry, what the daemon asks of it."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.registry import captured_in_app, make_source, next_version, position_format
from connectors.sources.memory.config import MemorySourceConfig
from replicator.config import parse_config
from replicator.errors import ReplicatorError
from replicator.lifecycle import SnapshotState
from replicator.state import MemoryStateStore
from replicator.status import recheck_caught_up


def config(**source: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "memory", **source},
        "state": {"kind": "sqlite", "path": "/tmp/state.db"},
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "targets": [{"name": "t", "kind": "sqlite", "path": "/tmp/t.db"}],
    }


def test_memory_source_parses_and_is_captured_in_the_app() -> None:
    cfg = parse_config(config(ack_timeout_s=2.5))
    assert isinstance(cfg.source, MemorySourceConfig)
    assert cfg.source.ack_timeout_s == 2.5
    assert captured_in_app(cfg.source)


def test_memory_source_needs_a_state_store_of_its_own() -> None:
    data = config()
    del data["state"]
    with pytest.raises(ReplicatorError, match="state"):
        parse_config(data)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ReplicatorError, match="ack_timeout"):
        parse_config(config(ack_timeout=3))


def test_postgres_is_not_captured_in_the_app() -> None:
    cfg = parse_config(
        {
            "source": {"kind": "postgres", "dsn": "postgresql://x@localhost/db"},
            "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
            "targets": [{"name": "t", "kind": "sqlite", "path": "/tmp/t.db"}],
        }
    )
    assert not captured_in_app(cfg.source)


def test_the_source_answers_status_without_reaching_anything() -> None:
    cfg = parse_config(config())
    source = make_source(cfg.source, MemoryStateStore())
    source.check()
    assert source.head() == 0
    assert source.snapshot_state() is SnapshotState.DONE
    assert source.reset() == []
    with pytest.raises(ReplicatorError, match="inside the app"):
        next(iter(source.stream()))
    with pytest.raises(ReplicatorError, match="inside the app"):
        source.saver()
    fmt = position_format(cfg.source)
    assert fmt(0) == "-"
    assert fmt(1_764_597_600_123_456_789) == "2025-12-01T14:00:00.123456789Z"
    assert next_version(cfg.source)("00000000000000000000000000000004.0.1", None).startswith("0" * 31 + "5.")
    assert next_version(cfg.source)(7, None).startswith("0" * 31 + "8.")


def test_recheck_counts_the_topics_backlog_for_a_source_captured_in_the_app() -> None:
    report: dict[str, Any] = {
        "source": {"snapshot": {"state": "done"}, "slot": {"log_end": {"0": 5}}},
        "targets": {"t": {"lag": {"events": 2}, "partitions": {"0": {"applied_position": 9}}}},
    }
    assert not recheck_caught_up(report, 0)["caught_up"]
    report["targets"]["t"]["lag"]["events"] = 0
    assert recheck_caught_up(report, 0)["caught_up"]
