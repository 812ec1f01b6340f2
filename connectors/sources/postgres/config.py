"""Settings of the Postgres source (``[source] kind = "postgres"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.config import StrictModel


class PostgresSourceConfig(StrictModel):
    kind: Literal["postgres"] = "postgres"
    dsn: SecretStr
    schema_name: str = Field("public", alias="schema")
    slot: str = "langgraph_replicator"
    publication: str = "langgraph_replicator"
    snapshot_chunk_rows: int = Field(2000, ge=1, le=1_000_000)
    heartbeat_interval_s: float = Field(1.0, gt=0, le=300)
    # Confirm to the slot at most this often (acks are collected meanwhile, not awaited).
    flush_interval_s: float = Field(0.05, gt=0, le=60)
    max_slot_lag_bytes: int = Field(1 << 30, ge=0)

    @field_validator("slot", "publication")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lower-case Postgres identifier (a-z, 0-9, _; at most 63)")
        return value
