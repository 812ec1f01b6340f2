"""Settings of the Postgres target (``[[targets]] kind = "postgres"``): PostgresSaver's tables."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.config import TargetConfigBase


class PostgresTargetConfig(TargetConfigBase):
    kind: Literal["postgres"] = "postgres"
    dsn: SecretStr
    # Where PostgresSaver's tables live (the search_path the app's saver connects with);
    # None: the database's default search_path (usually "public").
    schema_name: str | None = Field(None, alias="schema")

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", value):
            raise ValueError("must be a Postgres identifier (letters, digits, _ and $; at most 63)")
        return value
