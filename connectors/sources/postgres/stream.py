"""The replication connection: slot creation with an exported snapshot, then pgoutput streaming.

psycopg2's ``LogicalReplicationConnection`` is used here because it is the documented,
upstream-tested streaming API (psycopg 3 has none; its raw COPY_BOTH path is undocumented).
We read with ``read_message`` (non-blocking) and send every standby status ourselves with
``force=True``, so nothing is confirmed behind our back and nothing waits for psycopg2's
10-second feedback timer.

Replication runs without pgoutput streaming: Postgres spills large transactions to disk on the
server and sends each one only after it committed, so every change we see is committed and
our memory stays bounded by one message, whatever the transaction size.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import redact

# SQLSTATEs of START_REPLICATION, decided by code, never by message text.
# Prefix of the non-transactional logical message a cutover's fence emits as its marker.
MARKER_PREFIX = "langgraph_replicator"

_UNDEFINED_OBJECT = "42704"  # the slot does not exist
_OBJECT_IN_USE = "55006"  # "replication slot ... is active for PID ...": a previous walsender
_RETRYABLE_CLASSES = ("08", "53", "57")  # connection, insufficient resources, operator intervention


def _start_error_kind(exc: psycopg2.Error) -> ErrorKind:
    """Why START_REPLICATION failed, as a kind the supervisor knows how to treat.

    A slot still held by the walsender of a connection that just broke (it lingers until the
    server notices, up to wal_sender_timeout), a server shutting down or starting up, and a lost
    connection all pass: they are retried with backoff. A missing slot is lost data; anything
    else is a setup problem.
    """
    code = exc.pgcode or ""
    if code == _UNDEFINED_OBJECT:
        return ErrorKind.SOURCE_LOST
    if code == _OBJECT_IN_USE or code.startswith(_RETRYABLE_CLASSES):
        return ErrorKind.SOURCE_UNREACHABLE
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) and not code:
        return ErrorKind.SOURCE_UNREACHABLE  # the connection itself failed: no SQLSTATE
    return ErrorKind.SOURCE_SETUP


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """One XLogData message (built per WAL message: a Struct, cheaper to create than a dataclass)."""

    payload: bytes
    data_start: int
    wal_end: int


class ReplicationConnection:
    """One walsender connection bound to one slot."""

    def __init__(self, dsn: str, slot: str, publication: str) -> None:
        self.slot = slot
        self.publication = publication
        try:
            self._conn = psycopg2.connect(
                dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection, connect_timeout=10
            )
        except psycopg2.OperationalError as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_UNREACHABLE,
                f"cannot open a replication connection to the source: {redact(str(exc)).strip()}",
            ) from None
        self._cur: Any = self._conn.cursor()
        self._started = False

    def create_slot(self) -> tuple[int, str]:
        """Create the slot and export its snapshot: (consistent point, snapshot name).

        The snapshot stays importable until this connection runs its next command.
        """
        from connectors.sources.postgres.setup import parse_lsn

        try:
            self._cur.execute(f'CREATE_REPLICATION_SLOT "{self.slot}" LOGICAL pgoutput EXPORT_SNAPSHOT')
            row = self._cur.fetchone()
        except psycopg2.Error as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_SETUP, f"cannot create replication slot {self.slot!r}: {str(exc).strip()}"
            ) from None
        lsn = parse_lsn(row[1])
        assert lsn is not None
        return lsn, row[2]

    def start(self) -> None:
        """Stream from the slot's confirmed position (start LSN 0 means exactly that)."""
        try:
            self._cur.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=0,
                options={
                    "proto_version": "1",
                    "publication_names": self.publication,
                    "binary": "true",
                    "messages": "true",  # the cutover marker (pg_logical_emit_message)
                },
            )
        except psycopg2.Error as exc:
            raise ReplicatorError(
                _start_error_kind(exc),
                f"cannot start replication from slot {self.slot!r}: {redact(str(exc)).strip()}",
            ) from None
        self._started = True

    def read(self) -> RawMessage | None:
        """The next message if one is already buffered, else None (never blocks)."""
        try:
            msg = self._cur.read_message()
        except psycopg2.Error as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_UNREACHABLE, f"replication connection lost: {redact(str(exc)).strip()}"
            ) from None
        if msg is None:
            return None
        return RawMessage(bytes(msg.payload), msg.data_start, msg.wal_end)

    def wait(self, timeout: float) -> None:
        """Block until the server sends something or ``timeout`` seconds pass."""
        try:
            select.select([self._conn], [], [], max(timeout, 0.0))
        except (OSError, ValueError) as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_UNREACHABLE, f"replication connection lost: {exc}"
            ) from None

    @property
    def server_position(self) -> int:
        """The last position the server reported (keepalive or message header)."""
        return int(self._cur.wal_end or 0)

    def feedback(self, flush_lsn: int, *, reply: bool = False) -> None:
        """Tell the server everything up to ``flush_lsn`` is durable downstream (0: no news)."""
        try:
            self._cur.send_feedback(write_lsn=flush_lsn, flush_lsn=flush_lsn, reply=reply, force=True)
        except psycopg2.Error as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_UNREACHABLE, f"replication connection lost: {redact(str(exc)).strip()}"
            ) from None

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg2.Error:
            pass

    def __iter__(self) -> Iterator[RawMessage]:  # pragma: no cover - convenience only
        while True:
            msg = self.read()
            if msg is None:
                self.wait(1.0)
                continue
            yield msg
