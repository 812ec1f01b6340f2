"""The Postgres source answers the pipeline's questions itself: head, format, slot, reset, copy."""

from __future__ import annotations

import psycopg
import pytest

from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.source import PostgresSource
from replicator.lifecycle import SnapshotState
from replicator.state import SOURCE_STATE, MemoryStateStore

pytestmark = pytest.mark.integration


def test_position_slot_reset_and_snapshot_lifecycle(pg_dsn: str) -> None:
    config = PostgresSourceConfig(dsn=pg_dsn, slot="lgr_interface", max_slot_lag_bytes=0)  # type: ignore[arg-type]
    state = MemoryStateStore()
    source = PostgresSource(config, state)
    try:
        assert source.format_position(0x1A2B3C) == "0/1A2B3C"
        assert source.format_position((5 << 32) | 0xFF) == "5/FF"
        assert source.describe() == {"name": "lgr_interface", "exists": False}
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot('lgr_interface', 'pgoutput')")
            conn.execute("CREATE TABLE wal_noise AS SELECT generate_series(1, 1000) AS n")
        head = source.head()
        assert head > 0
        slot = source.describe()
        assert slot["exists"] is True and slot["active"] is False
        assert 0 < slot["confirmed_position"] <= head
        assert slot["confirmed_flush_lsn"] == source.format_position(slot["confirmed_position"])
        assert slot["retained_over_threshold"] is True  # threshold 0

        assert source.snapshot_state() is SnapshotState.NOT_STARTED
        state.put(SOURCE_STATE, {"snapshot": "done", "cursor": None, "position": 7, "rows": 3})
        assert source.snapshot_state() is SnapshotState.DONE
        source.restart_snapshot()
        assert source.snapshot_state() is SnapshotState.RUNNING
        assert state.get(SOURCE_STATE) == {"snapshot": "running", "cursor": None, "position": 7, "rows": 3}

        assert source.reset() == ["slot 'lgr_interface'"]
        assert source.describe()["exists"] is False
        assert source.reset() == ["slot 'lgr_interface'"]  # nothing left to drop: still fine
    finally:
        source.close()
