"""Persisted positions of every stage, behind a narrow store interface.

The Postgres store keeps one JSON document per stage in a small schema of the source database
(``langgraph_replicator.state``): it is durable exactly where the slot is, survives pod restarts,
and lets ``replicator status`` answer when no daemon runs. Documents only move forward: the
store refuses nothing, so callers write monotonic values (see ``merge_max_positions``).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from replicator.errors import ErrorKind, ReplicatorError

STATE_SCHEMA = "langgraph_replicator"


class StateStore(Protocol):
    def get(self, name: str) -> dict[str, Any] | None: ...

    def put(self, name: str, value: dict[str, Any]) -> None: ...

    def put_many(self, values: dict[str, dict[str, Any]]) -> None: ...

    def delete(self, name: str) -> None: ...

    def all(self) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...


class MemoryStateStore:
    """For unit tests and dry runs: the same contract, no durability."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        value = self._data.get(name)
        return json.loads(json.dumps(value)) if value is not None else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self._data[name] = json.loads(json.dumps(value))

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        for name, value in values.items():
            self.put(name, value)

    def delete(self, name: str) -> None:
        self._data.pop(name, None)

    def all(self) -> dict[str, dict[str, Any]]:
        return {k: self.get(k) or {} for k in self._data}

    def close(self) -> None:
        pass


class PostgresStateStore:
    """One row per stage in ``langgraph_replicator.state`` of the given database."""

    def __init__(self, dsn: str, *, create: bool = True) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._create = create

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise ReplicatorError(
                    ErrorKind.SOURCE_UNREACHABLE, f"cannot connect to the state database: {exc}"
                ) from None
            if self._create:
                self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
                self._conn.execute(
                    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.state (
                        name text PRIMARY KEY,
                        value jsonb NOT NULL,
                        updated_at timestamptz NOT NULL DEFAULT now())"""
                )
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self._connection().execute(sql, params)
                return cur.fetchall() if cur.description else []
            except psycopg.errors.UndefinedTable:
                return []
            except psycopg.OperationalError as exc:
                self._conn = None
                raise ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, f"state database error: {exc}") from None

    def get(self, name: str) -> dict[str, Any] | None:
        rows = self._run(f"SELECT value FROM {STATE_SCHEMA}.state WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self._run(
            f"""INSERT INTO {STATE_SCHEMA}.state (name, value) VALUES (%s, %s)
                ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (name, Jsonb(value)),
        )

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        """One statement for many rows: one round trip and one WAL record per batch."""
        if not values:
            return
        names = list(values)
        self._run(
            f"""INSERT INTO {STATE_SCHEMA}.state (name, value)
                SELECT * FROM unnest(%s::text[], %s::jsonb[])
                ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (names, [Jsonb(values[n]) for n in names]),
        )

    def delete(self, name: str) -> None:
        self._run(f"DELETE FROM {STATE_SCHEMA}.state WHERE name = %s", (name,))

    def all(self) -> dict[str, dict[str, Any]]:
        return {name: value for name, value in self._run(f"SELECT name, value FROM {STATE_SCHEMA}.state")}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


SOURCE_STATE = "source"
PUBLISHER_STATE = "publisher"


def applier_partition_state_name(target: str, partition: int) -> str:
    return f"applier:{target}:{partition}"


def deadletter_state_name(target: str) -> str:
    return f"deadletters:{target}"


def applier_positions(state: StateStore, target: str) -> dict[int, dict[str, Any]]:
    """Every partition's applied position of one target, whoever of its appliers saved it."""
    prefix = f"applier:{target}:"
    return {
        int(name[len(prefix) :]): value
        for name, value in state.all().items()
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    }
