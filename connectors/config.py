"""What every connector's config model shares: strictness and a target's name and batch size.

Each connector owns its own model (``connectors/sources/<kind>/config.py``,
``connectors/sinks/<kind>_config.py``) with a ``kind`` literal; ``replicator.config`` joins them
into unions discriminated on ``kind``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A target's blob cache when its config does not say (``blob_cache_mb``); sinks built in code too.
DEFAULT_BLOB_CACHE_MB = 32
DEFAULT_BLOB_CACHE_BYTES = DEFAULT_BLOB_CACHE_MB * 1024 * 1024


class StrictModel(BaseModel):
    """Unknown keys are errors (a misspelt key must not be silently ignored); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetConfigBase(StrictModel):
    name: str
    batch_events: int = Field(2000, ge=1, le=100_000)
    blob_cache_mb: int = Field(
        DEFAULT_BLOB_CACHE_MB,
        ge=0,
        le=65_536,
        description="Memory for channel values the apply process keeps, so that filling a "
        "checkpoint need not read them back from the target: the values of the threads that "
        "run at once should fit. Counted as the Python objects take it; the daemon's RSS grows "
        "by about as much again when it fills (bench/ figure 4). 0: read every value back.",
    )

    @property
    def blob_cache_bytes(self) -> int:
        return self.blob_cache_mb * 1024 * 1024

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.' or '-'")
        return value
