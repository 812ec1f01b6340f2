"""The SQL of the replicator's own objects in the source database, written once.

The schema ``langgraph_replicator`` holds the state store (``state``, ``meta``, ``blobs``:
replicator/state/postgres.py) and the control plane (``migration``, ``held_threads``:
switchboard.py). Both create what is missing when they connect, and ``replicator setup`` creates
the same objects for a DBA ahead of time (``setup.setup_script``). All three take the tables'
definitions from ``TABLES`` below, so they cannot drift apart.

Two renderings of one definition:

- ``create_table(name)``: ``CREATE TABLE IF NOT EXISTS``, what ``replicator setup`` prints for a
  DBA to read and run.
- ``ENSURE_*``: the same statement, run only when the object is missing (a ``DO`` block). Postgres
  checks the right to create before it looks whether the object exists: ``CREATE SCHEMA IF NOT
  EXISTS`` fails without CREATE on the database, ``CREATE TABLE IF NOT EXISTS`` without CREATE on
  the schema, even when there is nothing to create. The guard is what lets a role without those
  rights (the replicator's least-privileged role, the app's role) pass once a DBA created the
  objects; a role that may create them still does, as before.
"""

from __future__ import annotations

STATE_SCHEMA = "langgraph_replicator"

# name -> column definitions, in the order ``replicator setup`` creates them.
TABLES: dict[str, str] = {
    "state": """
    name text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()""",
    "meta": """
    key text PRIMARY KEY,
    value text NOT NULL""",
    "blobs": """
    target text NOT NULL, thread_id text NOT NULL, checkpoint_ns text NOT NULL,
    channel text NOT NULL, version text NOT NULL, type text NOT NULL, data bytea,
    PRIMARY KEY (target, thread_id, checkpoint_ns, channel, version)""",
    "migration": """
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    record jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()""",
    "held_threads": """
    thread_id text PRIMARY KEY,
    epoch bigint NOT NULL,
    position bigint""",
}

# The state store's tables and the control plane's, for people and for the privilege checks.
STATE_TABLES = ("state", "meta", "blobs")
CONTROL_TABLES = ("migration", "held_threads")

# What the replicator's role does with each of its tables (it owns them after `setup`; a
# role that does not must hold at least these). ``finish --drop`` also needs the ownership.
ROLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

# What the app's role (RoutingSaver) needs: the fence (SELECT ... FOR SHARE needs UPDATE),
# the record's first row (INSERT ... ON CONFLICT DO NOTHING needs INSERT even when the row
# exists), held threads, and the applied positions it compares held threads with.
APP_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "migration": ("SELECT", "INSERT", "UPDATE"),
    "held_threads": ("SELECT", "INSERT", "UPDATE"),
    "state": ("SELECT",),
    "meta": ("SELECT",),
}

# The migration record's single row; parameter: the initial record as JSON.
MIGRATION_ROW = (
    f"INSERT INTO {STATE_SCHEMA}.migration (record) VALUES (%s::jsonb) ON CONFLICT (id) DO NOTHING"
)


def qualified(table: str) -> str:
    return f"{STATE_SCHEMA}.{table}"


def create_schema(authorization: str | None = None) -> str:
    """``CREATE SCHEMA IF NOT EXISTS``, owned by ``authorization`` (a quoted role) when given."""
    owner = f" AUTHORIZATION {authorization}" if authorization else ""
    return f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}{owner}"


def create_table(table: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {qualified(table)} ({TABLES[table]})"


def _when(condition: str, statement: str) -> str:
    return f"DO $lgr$ BEGIN IF {condition} THEN {statement}; END IF; END $lgr$"


def ensure_table(table: str) -> str:
    """``create_table``, run only when the table is missing (or invisible: without USAGE on the
    schema ``to_regclass`` is NULL and the CREATE then says what is denied)."""
    return _when(f"to_regclass('{qualified(table)}') IS NULL", create_table(table))


ENSURE_SCHEMA = _when(
    f"NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{STATE_SCHEMA}')", create_schema()
)
ENSURE_STATE = ensure_table("state")
ENSURE_META = ensure_table("meta")
ENSURE_BLOBS = ensure_table("blobs")
ENSURE_MIGRATION = ensure_table("migration")
ENSURE_HELD = ensure_table("held_threads")
