"""The migration record and the fence of a Postgres source, in the source database itself.

One row in ``langgraph_replicator.migration``, read by every app instance (``RoutingSaver``)
and by the ``cutover`` / ``rollback`` commands. The row is also the fence: every routing-saver
write holds ``SELECT ... FOR SHARE`` on it for its own transaction, and a switch holds
``SELECT ... FOR UPDATE`` while it drains. A row lock is what lets many app processes on many
machines switch together with no message between them: a write that arrives during the
switch waits on the lock, and when the switch commits, its ``FOR SHARE`` re-reads the committed
row (READ COMMITTED follows the update chain), so the first write after the switch already
goes to the new store.

PostgresSaver runs its statements through ``conn.pipeline()`` on the connection it is given;
inside the open ``conn.transaction()`` of ``app_write`` they are part of that transaction
(tests/integration/test_cutover.py checks that a rolled-back routing write leaves no row).

The fence's marker is a non-transactional ``pg_logical_emit_message``: it travels the slot in
commit order after every write the source accepted before the fence, and the source turns it
into an immediate heartbeat (``stream.MARKER_PREFIX``), so a drain does not wait for the
regular one.

Dual write (``replicator dual-write``) needs no log at all: the back-fill copies one thread at
a time under an exclusive advisory lock on that thread (``thread_copy``), which every routing
write of the thread takes shared (``hold_thread``), so a copy never sees half a write and
never lands after a newer one.

Held threads (``held_threads``): after a cutover, a thread whose partition of the pipeline has
not applied the source up to the fence's marker stays on the source, reads and writes, until
the target holds everything of it (see replicator/routing.py). Its write marks the thread
held (position unknown) in the write's own transaction; right after the commit the position is
set to the source's WAL insert position, which is past that commit. A mark whose position was
never set (the app died in between) gets one from the next reader: any write that committed
before the read is behind the position the reader takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import sql
from psycopg.rows import dict_row

from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.ddl import ENSURE_HELD, ENSURE_MIGRATION, ENSURE_SCHEMA, MIGRATION_ROW
from connectors.sources.postgres.setup import connect
from connectors.sources.postgres.stream import MARKER_PREFIX
from connectors.sources.postgres.threads import list_threads, read_thread
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import DataChange
from replicator.migration import MigrationRecord, Refused
from replicator.state import STATE_SCHEMA

TABLE = f"{STATE_SCHEMA}.migration"
HELD = f"{STATE_SCHEMA}.held_threads"
# First key of the two-key advisory locks that keep a back-fill's thread copy and that
# thread's writes apart (the second key is hashtext(thread_id); a collision only waits).
THREAD_LOCK_SPACE = 0x4C47_5250


def ensure_table(conn: psycopg.Connection[Any]) -> None:
    """Create the schema, table and its single row if missing (idempotent)."""
    conn.execute(ENSURE_SCHEMA)
    conn.execute(ENSURE_MIGRATION)
    conn.execute(MIGRATION_ROW, (json.dumps(MigrationRecord().as_dict()),))
    conn.execute(ENSURE_HELD)


def _read(conn: psycopg.Connection[Any], lock: str = "") -> MigrationRecord:
    try:
        row = conn.execute(f"SELECT record FROM {TABLE} {lock}").fetchone()
    except psycopg.errors.UndefinedTable:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the migration record {TABLE} does not exist; RoutingSaver.from_config and every "
            "replicator cutover/rollback command create it",
        ) from None
    if row is None:
        return MigrationRecord()
    value = row["record"] if isinstance(row, dict) else row[0]
    return MigrationRecord.from_dict(value)


def _store(conn: psycopg.Connection[Any], record: MigrationRecord) -> None:
    conn.execute(
        f"UPDATE {TABLE} SET record = %s::jsonb, updated_at = now()", (json.dumps(record.as_dict()),)
    )


class PostgresFence:
    """What a switch may do while it holds the fence (``FOR UPDATE`` on the record)."""

    def __init__(self, board: PostgresSwitchboard, record: MigrationRecord) -> None:
        self._board = board
        self.record = record
        self.fenced_at = time.monotonic()

    def mark(self) -> int:
        """A position at or past every write the source accepted before the fence, sent
        through the change stream as a marker."""
        conn = self._board.conn
        row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        conn.execute("SELECT pg_logical_emit_message(false, %s, 'cutover')", (MARKER_PREFIX,))
        if row is None:
            return 0
        return int(row["?column?"] if isinstance(row, dict) else row[0])

    def commit(self, record: MigrationRecord) -> None:
        """Store ``record``; it takes effect for every app when the fence is released."""
        _store(self._board.conn, record)
        self.record = record


class PostgresSwitchboard:
    """Migration record, app-write fence and switch fence of one Postgres source."""

    def __init__(self, config: PostgresSourceConfig, *, autocreate: bool = True) -> None:
        self.config = config
        self.conn: psycopg.Connection[Any] = connect(
            config.dsn.get_secret_value(), autocommit=True, prepare_threshold=0, row_factory=dict_row
        )
        if config.schema_name != "public":
            self.conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(config.schema_name)))
        if autocreate:
            ensure_table(self.conn)
        self._saver: PostgresSaver | None = None

    def record(self) -> MigrationRecord:
        return _read(self.conn)

    def saver(self) -> PostgresSaver:
        """The source's saver on this connection: its statements join ``app_write``'s transaction."""
        if self._saver is None:
            self._saver = PostgresSaver(self.conn)
        return self._saver

    @contextmanager
    def app_write(self) -> Iterator[MigrationRecord]:
        """One app write: the shared fence held to the end of the block, in one transaction."""
        with self.conn.transaction():
            yield _read(self.conn, "FOR SHARE")

    def hold_thread(self, thread_id: str) -> None:
        self.conn.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))", (THREAD_LOCK_SPACE, thread_id)
        )

    @contextmanager
    def thread_copy(self, thread_id: str) -> Iterator[tuple[MigrationRecord, list[DataChange]]]:
        with self.conn.transaction():
            record = _read(self.conn, "FOR SHARE")
            self.conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (THREAD_LOCK_SPACE, thread_id)
            )
            events = read_thread(self.conn, self.config.schema_name, thread_id)
            yield record, events

    def threads(self) -> list[str]:
        return list_threads(self.conn, self.config.schema_name)

    def held(self, thread_id: str, epoch: int) -> int | None:
        """The position a held thread waits for on the target (None: not held in ``epoch``)."""
        row = self.conn.execute(
            f"SELECT position FROM {HELD} WHERE thread_id = %s AND epoch = %s", (thread_id, epoch)
        ).fetchone()
        if row is None:
            return None
        if row["position"] is None:  # its writer died before setting it: take one past it
            row = self.conn.execute(
                f"UPDATE {HELD} SET position = COALESCE(position, pg_current_wal_insert_lsn() - '0/0')"
                " WHERE thread_id = %s AND epoch = %s RETURNING position",
                (thread_id, epoch),
            ).fetchone()
            if row is None:
                return None
        return int(row["position"])

    def hold(self, thread_id: str, epoch: int) -> None:
        """Inside ``app_write``: mark the thread held, position unknown until ``held_at``."""
        self.conn.execute(
            f"INSERT INTO {HELD} (thread_id, epoch, position) VALUES (%s, %s, NULL)"
            " ON CONFLICT (thread_id) DO UPDATE SET epoch = EXCLUDED.epoch, position = NULL",
            (thread_id, epoch),
        )

    def held_at(self, thread_id: str, epoch: int) -> None:
        """After the held write committed: its position (the WAL insert position, past it).
        Not waited to disk: lost in a crash, the next reader sets one (``held``)."""
        with self.conn.transaction():
            self.conn.execute("SET LOCAL synchronous_commit TO off")
            self.conn.execute(
                f"UPDATE {HELD} SET position = pg_current_wal_insert_lsn() - '0/0'"
                " WHERE thread_id = %s AND epoch = %s AND position IS NULL",
                (thread_id, epoch),
            )

    def holds(self, epoch: int) -> dict[str, int]:
        """Every thread held in ``epoch`` and its position (unknown ones set, as ``held``).

        One statement: as two (set, then read), an app write holding a thread again between
        them (``hold`` resets its position to NULL) was read back as a NULL position, and the
        cutover that asked was refused with an internal error. The statement's own snapshot
        reads the known positions; the rows it sets come from its ``RETURNING`` (listed last, so
        a row set after waiting on a concurrent hold wins over its older known position)."""
        rows = self.conn.execute(
            f"WITH set_now AS (UPDATE {HELD} SET position = pg_current_wal_insert_lsn() - '0/0'"
            "   WHERE epoch = %(epoch)s AND position IS NULL RETURNING thread_id, position)"
            f" SELECT thread_id, position FROM {HELD} WHERE epoch = %(epoch)s AND position IS NOT NULL"
            " UNION ALL SELECT thread_id, position FROM set_now",
            {"epoch": epoch},
        ).fetchall()
        return {row["thread_id"]: int(row["position"]) for row in rows}

    def clear_holds(self, before_epoch: int) -> None:
        """Forget holds of earlier switches (the next cutover's marker is past them)."""
        self.conn.execute(f"DELETE FROM {HELD} WHERE epoch < %s", (before_epoch,))

    @contextmanager
    def fence(self, timeout: float) -> Iterator[PostgresFence]:
        """The exclusive fence: waits for app writes in flight, makes new ones wait until exit.

        Raises ``Refused`` when in-flight writes do not finish within ``timeout``. The lock is
        also released by Postgres if this process dies (a killed switch changes nothing).
        """
        lock_ms = max(1, int(timeout * 1000))
        with self.conn.transaction():
            self.conn.execute(f"SET LOCAL lock_timeout = {lock_ms}")
            # Held past a hung client at most this long (kill -9 ends it at once).
            self.conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {lock_ms + 5000}")
            try:
                record = _read(self.conn, "FOR UPDATE")
            except psycopg.errors.LockNotAvailable:
                raise Refused(
                    f"timed out after {timeout:g}s waiting for in-flight writes to finish"
                ) from None
            yield PostgresFence(self, record)

    def changed(self, since_id: str) -> set[tuple[str, str]]:
        """(thread, namespace) with a checkpoint or write newer than ``since_id`` (uuid6 ids
        sort by time)."""
        schema = self.config.schema_name
        query = sql.SQL(
            "SELECT thread_id, checkpoint_ns FROM {} WHERE checkpoint_id > %s"
            " UNION SELECT thread_id, checkpoint_ns FROM {} WHERE checkpoint_id > %s"
        ).format(sql.Identifier(schema, "checkpoints"), sql.Identifier(schema, "checkpoint_writes"))
        rows = self.conn.execute(query, (since_id, since_id)).fetchall()
        return {(row["thread_id"], row["checkpoint_ns"]) for row in rows}

    def namespaces(self, threads: list[str]) -> list[tuple[str, str]]:
        """(thread, namespace) of every checkpoint namespace of ``threads``; ("t", "") for a
        thread with none (so a deletion is compared too)."""
        query = sql.SQL("SELECT DISTINCT thread_id, checkpoint_ns FROM {} WHERE thread_id = ANY(%s)").format(
            sql.Identifier(self.config.schema_name, "checkpoints")
        )
        rows = self.conn.execute(query, (threads,)).fetchall()
        pairs = [(r["thread_id"], r["checkpoint_ns"]) for r in rows]
        present = {thread for thread, _ in pairs}
        return pairs + [(thread, "") for thread in threads if thread not in present]

    def drop(self) -> list[str]:
        """Remove the migration record (``finish --drop``); what was removed, for people."""
        self.conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        self.conn.execute(f"DROP TABLE IF EXISTS {HELD}")
        return [f"table {TABLE}", f"table {HELD}"]

    def close(self) -> None:
        self.conn.close()
