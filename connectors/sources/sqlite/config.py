"""Settings of the SQLite source (``[source] kind = "sqlite"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.config import StrictModel


class SqliteSourceConfig(StrictModel):
    kind: Literal["sqlite"] = "sqlite"
    path: str = Field(min_length=1)  # the app's SqliteSaver file
    snapshot_chunk_rows: int = Field(500, ge=1, le=1_000_000)
    # Changelog rows read per query while streaming (a delete_thread longer than this is read whole).
    stream_batch_rows: int = Field(1000, ge=1, le=100_000)
    # How often an idle source looks for new changelog rows (SQLite cannot notify another process).
    poll_interval_s: float = Field(0.05, gt=0, le=60)
    heartbeat_interval_s: float = Field(1.0, gt=0, le=300)
    flush_interval_s: float = Field(0.05, gt=0, le=60)
    # One statement waits this long for the app's lock (SQLite's busy_timeout) ...
    busy_timeout_s: float = Field(5.0, gt=0, le=600)
    # ... and is retried until this long has passed; then the stage fails (retryable) and restarts.
    locked_timeout_s: float = Field(60.0, gt=0, le=3600)
    # Delete published and applied changelog rows at most this often (a write on the app's file).
    trim_interval_s: float = Field(1.0, ge=0, le=3600)
    # Warn when the changelog holds more rows than this (a target behind, or confirms stopped).
    max_changelog_rows: int = Field(1_000_000, ge=0)
