"""Preflight checks, publication and replication slot of the Postgres source.

Every check fails with a message that says what is wrong and how to fix it, before anything
is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from connectors.sources.postgres.rows import TABLES
from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import redact


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise ReplicatorError(
            ErrorKind.SOURCE_UNREACHABLE, f"cannot connect to the source Postgres: {redact(str(exc)).strip()}"
        ) from None


@dataclass(frozen=True)
class SlotInfo:
    name: str
    database: str
    plugin: str
    confirmed_flush_lsn: int | None
    restart_lsn: int | None
    active: bool
    wal_status: str | None


def parse_lsn(text: str | None) -> int | None:
    if not text:
        return None
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def check_source(conn: psycopg.Connection[Any], schema: str) -> None:
    """wal_level, the three PostgresSaver tables, and the right to replicate."""
    (wal_level,) = conn.execute("SHOW wal_level").fetchone() or ("",)
    if wal_level != "logical":
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the source Postgres has wal_level={wal_level}; logical replication needs wal_level=logical. "
            "Fix: run ALTER SYSTEM SET wal_level = logical; then restart Postgres "
            "(on RDS/Aurora set rds.logical_replication=1 in the parameter group; "
            "on Cloud SQL set cloudsql.logical_decoding=on).",
        )
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
        (schema, list(TABLES)),
    ).fetchall()
    missing = sorted(set(TABLES) - {r[0] for r in rows})
    if missing:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the source has no PostgresSaver table(s) {', '.join(missing)} in schema {schema!r}. "
            "Is source.dsn the database your app's PostgresSaver writes to (and source.schema its schema)? "
            "PostgresSaver.setup() creates them.",
        )
    (can_replicate,) = conn.execute(
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone() or (False,)
    if not can_replicate:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            "the source user may not replicate. Fix: ALTER ROLE <user> WITH REPLICATION "
            "(on RDS: GRANT rds_replication TO <user>).",
        )


def ensure_publication(conn: psycopg.Connection[Any], name: str, schema: str) -> None:
    """Create the publication on the three tables, or check an existing one covers them."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in TABLES)
    if not exists:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), tables))
        return
    rows = conn.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s", (name, schema)
    ).fetchall()
    missing = sorted(set(TABLES) - {r[0] for r in rows})
    if missing:
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                sql.Identifier(name), sql.SQL(", ").join(sql.Identifier(schema, t) for t in missing)
            )
        )


def slot_info(conn: psycopg.Connection[Any], slot: str) -> SlotInfo | None:
    row = conn.execute(
        """SELECT slot_name, database, plugin, confirmed_flush_lsn::text, restart_lsn::text,
                  active, wal_status
           FROM pg_replication_slots WHERE slot_name = %s""",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    return SlotInfo(row[0], row[1], row[2], parse_lsn(row[3]), parse_lsn(row[4]), row[5], row[6])


def check_slot(info: SlotInfo, dbname: str) -> None:
    if info.plugin != "pgoutput" or info.database != dbname:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"replication slot {info.name!r} exists but belongs to database {info.database!r} with plugin "
            f"{info.plugin!r}; this replicator needs a pgoutput slot on {dbname!r}. Choose another "
            "source.slot or drop that slot if it is unused.",
        )
    if info.wal_status == "lost":
        raise ReplicatorError(
            ErrorKind.SOURCE_LOST,
            f"replication slot {info.name!r} was invalidated (WAL it needed was removed, see "
            "max_slot_wal_keep_size). Changes since its last confirmed position are gone from the log. "
            "Fix: run `replicator reset --config FILE` (drops the slot and the saved positions) and "
            "start again: the daemon re-snapshots and the idempotent apply converges the target.",
        )


def flush_lsn(conn: psycopg.Connection[Any]) -> int:
    """The WAL position Postgres has flushed: what it has durably committed so far."""
    row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    return parse_lsn(row[0] if row else None) or 0


def probe_lsn(conn: psycopg.Connection[Any], prefix: str) -> int:
    """A head that a caught-up pipeline reaches: a marker message written now, whose position
    every committed change before it precedes, and which the stream turns into a heartbeat on
    every partition at once (``source._stream``). The flush position itself is no such head:
    the replicator's own position writes and heartbeats move it on, so what was applied always
    trails it by a heartbeat's worth of WAL, however idle the app. The empty transaction after
    the marker makes Postgres flush the WAL holding it: decoding reads flushed WAL only."""
    row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'head')::text", (prefix,)).fetchone()
    conn.execute("SELECT txid_current()")
    return parse_lsn(row[0] if row else None) or flush_lsn(conn)


def unapplied_after(conn: psycopg.Connection[Any], slot: str, publication: str, position: int) -> bool | None:
    """Whether the slot still holds a transaction on the published tables that commits after
    ``position``: decoded without consuming (a peek), so only while no daemon streams the slot
    (None then, or when there is no slot). ``status`` asks this when no pipeline runs to carry
    its head marker: an idle, applied source is caught up even with the daemon stopped."""
    info = slot_info(conn, slot)
    if info is None or info.active:
        return None
    row = conn.execute(
        """SELECT count(*) FROM pg_logical_slot_peek_binary_changes(
               %s, NULL, NULL, 'proto_version', '1', 'publication_names', %s)
           WHERE get_byte(data, 0) = 66  -- 'B': a transaction's begin, with its commit LSN
             AND ('x' || encode(substring(data from 2 for 8), 'hex'))::bit(64)::bigint > %s""",
        (slot, publication, position),
    ).fetchone()
    return bool(row and row[0])


def slot_status(conn: psycopg.Connection[Any], slot: str, threshold: int) -> dict[str, Any]:
    """The slot as ``replicator status`` shows it: WAL it retains and how far it lags the head."""
    head = flush_lsn(conn)
    info = slot_info(conn, slot)
    status: dict[str, Any] = {"name": slot, "exists": info is not None}
    if info is not None:
        confirmed = info.confirmed_flush_lsn or 0
        retained = max(0, head - (info.restart_lsn or head))
        status.update(
            active=info.active,
            wal_status=info.wal_status,
            confirmed_flush_lsn=format_lsn(confirmed),
            confirmed_position=confirmed,
            retained_bytes=retained,
            lag_bytes=max(0, head - confirmed),
            retained_over_threshold=retained > threshold,
        )
    return status


def drop_slot(conn: psycopg.Connection[Any], slot: str) -> None:
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
