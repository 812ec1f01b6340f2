"""Settings of the SQLite target (``[[targets]] kind = "sqlite"``): SqliteSaver's file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.config import TargetConfigBase


class SqliteTargetConfig(TargetConfigBase):
    kind: Literal["sqlite"] = "sqlite"
    path: str = Field(min_length=1)
