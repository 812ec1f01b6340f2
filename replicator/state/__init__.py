"""Persisted positions of every stage, behind a narrow store interface.

``base`` holds the contract and its rules (forward-only positions, schema version); ``memory``,
``postgres`` and ``sqlite`` implement it. ``open_state_store`` builds the one the config names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replicator.state.base import (
    POSITION,
    PUBLISHER_STATE,
    SCHEMA_VERSION,
    SOURCE_STATE,
    StateStore,
    applier_partition_state_name,
    applier_positions,
    check_forward,
    deadletter_state_name,
)
from replicator.state.memory import MemoryStateStore
from replicator.state.postgres import STATE_SCHEMA, PostgresStateStore
from replicator.state.sqlite import SqliteStateStore

if TYPE_CHECKING:
    from replicator.config import Config

__all__ = [
    "POSITION",
    "PUBLISHER_STATE",
    "SCHEMA_VERSION",
    "SOURCE_STATE",
    "STATE_SCHEMA",
    "MemoryStateStore",
    "PostgresStateStore",
    "SqliteStateStore",
    "StateStore",
    "applier_partition_state_name",
    "applier_positions",
    "check_forward",
    "deadletter_state_name",
    "open_state_store",
]


def open_state_store(config: Config, *, create: bool = True) -> StateStore:
    """The store ``[state]`` names (by default: the source database, when it is Postgres)."""
    from replicator.config import PostgresStateConfig

    setting = config.state_store()
    if isinstance(setting, PostgresStateConfig):
        assert setting.dsn is not None  # filled in by Config.state_store
        return PostgresStateStore(setting.dsn.get_secret_value(), create=create)
    return SqliteStateStore(setting.path, create=create)
