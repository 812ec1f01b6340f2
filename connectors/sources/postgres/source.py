"""PostgresSaver tables as a change source: slot, consistent snapshot, then streaming.

Lifecycle (persisted in the state store under ``source``):

- no slot, no state: create the slot exporting a snapshot, copy the tables in that snapshot,
  then stream from the slot's consistent point: no gap, no overlap.
- slot present, snapshot not marked done (a run died mid-snapshot, or after creating the
  slot): continue the copy from the saved keyset cursor in a fresh snapshot, then stream from
  the slot's confirmed position (never advanced during a snapshot). See snapshot.py for why
  the overlap converges.
- slot present, snapshot done: stream from the slot's confirmed position.
- snapshot done but slot gone or invalidated: the log no longer holds what we need: stop with
  an error that says how to start over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import structlog
from langgraph.checkpoint.postgres import PostgresSaver

from connectors.sources.postgres import pgoutput
from connectors.sources.postgres.no_blob import NoBlobMarker
from connectors.sources.postgres.rows import COLUMNS, PRIMARY_KEYS, TABLES, RowChange, row_to_event
from connectors.sources.postgres.setup import (
    check_slot,
    check_source,
    connect,
    drop_publication,
    drop_slot,
    ensure_publication,
    format_lsn,
    probe_lsn,
    slot_info,
    slot_status,
    unapplied_after,
)
from connectors.sources.postgres.snapshot import count_rows, read_snapshot
from connectors.sources.postgres.stream import MARKER_PREFIX, ReplicationConnection
from connectors.sources.snapshot_progress import (
    SnapshotCursor,
    SnapshotToken,
    progress_doc,
    save_snapshot,
    saved_snapshot_state,
)
from replicator.config import PostgresSourceConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    ChangeEvent,
    CheckpointChange,
    Committed,
    Control,
    ControlKind,
    Op,
    SourceMeta,
)
from replicator.faults import enter_phase, fault_point
from replicator.lifecycle import SnapshotState
from replicator.state import SOURCE_STATE, StateStore

log = structlog.get_logger("replicator.source.postgres")

_KEEPALIVE_S = 5.0
_SLOT_CHECK_MIN_S = 1.0  # how often, at most, the slot's retained WAL is measured
_SLOT_WARN_EVERY_S = 60.0  # how often, at most, "slot retains too much WAL" is logged


class SlotLagWatch:
    """Decides when to measure the slot's retained WAL and when to warn about it.

    A slot keeps every WAL segment from its ``restart_lsn`` on. It grows when a target falls
    behind (the slot is confirmed only up to what every target applied) or the daemon stops
    confirming; unnoticed, it fills the source's disk. The warning repeats at most once a
    minute while the condition lasts, so it is seen without flooding the log.
    """

    def __init__(self, threshold: int, check_every: float, warn_every: float = _SLOT_WARN_EVERY_S) -> None:
        self.threshold = threshold
        self.check_every = check_every
        self.warn_every = warn_every
        self._checked_at: float | None = None
        self._warned_at: float | None = None

    def due(self, now: float) -> bool:
        return self._checked_at is None or now - self._checked_at >= self.check_every

    def observe(self, retained: int, now: float) -> bool:
        """Record one measurement; True when it should be logged as a warning now."""
        self._checked_at = now
        if retained <= self.threshold:
            return False
        if self._warned_at is not None and now - self._warned_at < self.warn_every:
            return False
        self._warned_at = now
        return True


class PostgresSource:
    """Captures PostgresSaver's ``checkpoints``, ``checkpoint_blobs`` and ``checkpoint_writes``."""

    name = "postgres"

    def __init__(self, config: PostgresSourceConfig, state: StateStore) -> None:
        self.config = config
        self.state = state
        self._dsn = config.dsn.get_secret_value()
        self._repl: ReplicationConnection | None = None
        self._side: psycopg.Connection[Any] | None = None
        self._saver_conn: psycopg.Connection[Any] | None = None
        self.snapshot_rows = 0
        self.snapshot_bytes = 0
        self.snapshot_started_at = time.time()
        self._progress_logged = time.monotonic()
        self.snapshot_total = 0
        self.no_blob_marker = NoBlobMarker()  # replaced by each streaming session

    # -- checks -------------------------------------------------------------------------------

    def check(self) -> None:
        with connect(self._dsn, autocommit=True) as conn:
            check_source(conn, self.config.schema_name, self.config.publication)
            info = slot_info(conn, self.config.slot)
            if info is not None:
                check_slot(info, conn.info.dbname)

    def head(self) -> int:
        """A position past everything Postgres committed so far, which the pipeline reaches once
        it applied all of it (``setup.probe_lsn``)."""
        return probe_lsn(self._side_conn(), MARKER_PREFIX)

    def unapplied_after(self, position: int) -> bool | None:
        """Whether the source holds a change committed after ``position`` that no pipeline
        carried yet (None: cannot tell while a daemon streams; see ``setup.unapplied_after``)."""
        return unapplied_after(self._side_conn(), self.config.slot, self.config.publication, position)

    @staticmethod
    def format_position(position: int) -> str:
        return format_lsn(position)

    @staticmethod
    def next_version(current: Any, channel: None = None) -> str:
        """PostgresSaver's channel versions (``f"{n:032}.{random:016}"``), continuing any int or
        str version: what a moved thread's next versions must be (``replicator.target_saver``)."""
        from langgraph.checkpoint.postgres.base import BasePostgresSaver

        version: str = BasePostgresSaver.get_next_version(None, current, channel)  # type: ignore[arg-type]
        return version

    def describe(self) -> dict[str, Any]:
        return slot_status(self._side_conn(), self.config.slot, self.config.max_slot_lag_bytes)

    def reset(self) -> list[str]:
        """Drop the slot: the next run creates it anew and copies everything."""
        drop_slot(self._side_conn(), self.config.slot)
        return [f"slot {self.config.slot!r}"]

    def teardown(self) -> list[str]:
        """The slot, then the publication (created by ``replicator setup`` as the tables' owner:
        a least-privileged role may not drop it, and is told what its owner should run)."""
        dropped = self.reset()
        return [*dropped, drop_publication(self._side_conn(), self.config.publication)]

    # -- the initial copy's lifecycle (persisted under ``source``) ----------------------------

    def snapshot_state(self) -> SnapshotState:
        return saved_snapshot_state(self.state)

    def restart_snapshot(self) -> None:
        """Copy everything again from the first table, at the same position, on the next run."""
        self._save_snapshot(SnapshotState.RUNNING, {"cursor": None})

    def _save_snapshot(self, new: SnapshotState, fields: dict[str, Any]) -> None:
        save_snapshot(self.state, new, fields)

    def _side_conn(self) -> psycopg.Connection[Any]:
        if self._side is None or self._side.closed or self._side.broken:
            self._side = connect(self._dsn, autocommit=True)
        return self._side

    # -- stream -------------------------------------------------------------------------------

    def stream(self) -> Iterator[ChangeEvent | Committed | None]:
        side = self._side_conn()
        check_source(side, self.config.schema_name, self.config.publication)
        ensure_publication(side, self.config.publication, self.config.schema_name)
        saved = self.state.get(SOURCE_STATE) or {}
        info = slot_info(side, self.config.slot)
        if info is None:
            if SnapshotState.parse(saved.get("snapshot")) is SnapshotState.DONE:
                raise ReplicatorError(
                    ErrorKind.SOURCE_LOST,
                    f"replication slot {self.config.slot!r} is gone although the initial copy finished: "
                    "changes since the last confirmed position may be lost from the log. Fix: run "
                    "`replicator reset --config FILE --yes` and start again; the daemon copies everything "
                    "anew and the idempotent apply converges the target.",
                )
            repl = ReplicationConnection(self._dsn, self.config.slot, self.config.publication)
            self._repl = repl
            consistent_lsn, exported = repl.create_slot()
            log.info("slot created", slot=self.config.slot, consistent_lsn=consistent_lsn)
            self._save_snapshot(SnapshotState.RUNNING, {"cursor": None, "position": consistent_lsn})
            yield from self._snapshot(SnapshotCursor(0, None), consistent_lsn, exported)
        else:
            check_slot(info, side.info.dbname)
            position = info.confirmed_flush_lsn or 0
            if SnapshotState.parse(saved.get("snapshot")) is not SnapshotState.DONE:
                cursor = SnapshotCursor.from_json(saved.get("cursor"))
                log.info("resuming initial copy", cursor=cursor.to_json(), position=position)
                yield from self._snapshot(cursor, position, None)
            repl = ReplicationConnection(self._dsn, self.config.slot, self.config.publication)
            self._repl = repl
        repl.start()
        log.info("streaming", slot=self.config.slot)
        yield from self._stream(repl)

    def _snapshot(
        self, start: SnapshotCursor, position: int, exported: str | None
    ) -> Iterator[ChangeEvent | Committed | None]:
        enter_phase("snapshot")
        meta = SourceMeta(position=position, snapshot=True)
        with connect(self._dsn) as conn:
            self.snapshot_total = count_rows(conn, self.config.schema_name)
            conn.commit()
            if start.table_index == 0 and start.after is None:
                yield Control(
                    kind=ControlKind.SNAPSHOT_START, source=meta, info={"rows": self.snapshot_total}
                )
            started = time.monotonic()
            for chunk in read_snapshot(
                conn,
                schema=self.config.schema_name,
                start=start,
                position=position,
                chunk_rows=self.config.snapshot_chunk_rows,
                exported_snapshot=exported,
            ):
                yield from chunk.events
                self.snapshot_rows += chunk.rows
                self.snapshot_bytes += chunk.bytes
                self._log_progress(started)
                yield Committed(
                    position=position,
                    token=self._token(chunk.cursor),
                )
                fault_point("snapshot.between_chunks")
            elapsed = time.monotonic() - started
        log.info("initial copy finished", rows=self.snapshot_rows, seconds=round(elapsed, 3))
        yield Control(kind=ControlKind.SNAPSHOT_END, source=meta, info={"rows": self.snapshot_rows})
        yield Committed(
            position=position,
            token=self._token(SnapshotCursor(len(TABLES), None)),
        )

    def _log_progress(self, started: float, every_s: float = 5.0) -> None:
        """A progress line (rows, bytes, rate, ETA) every few seconds of a long initial copy."""
        now = time.monotonic()
        if now - self._progress_logged < every_s:
            return
        self._progress_logged = now
        rate = self.snapshot_rows / max(now - started, 1e-6)
        remaining = max(0, self.snapshot_total - self.snapshot_rows)
        log.info(
            "initial copy progress",
            rows=self.snapshot_rows,
            total_estimate=self.snapshot_total,
            bytes=self.snapshot_bytes,
            rows_per_second=round(rate),
            eta_seconds=round(remaining / rate) if rate > 0 else None,
        )

    def _stream(self, repl: ReplicationConnection) -> Iterator[ChangeEvent | Committed | None]:
        decoder = pgoutput.PgOutputDecoder()
        marker = NoBlobMarker()  # what it knows holds for this session's stream only
        self.no_blob_marker = marker
        schema = self.config.schema_name
        interval = self.config.heartbeat_interval_s
        in_tx = False
        lsn = 0
        commit_ts = 0.0
        xid = 0
        seq = 0
        last_end = 0
        last_heartbeat = time.monotonic()
        last_feedback = time.monotonic()
        watch = SlotLagWatch(self.config.max_slot_lag_bytes, max(_SLOT_CHECK_MIN_S, interval))
        enter_phase("streaming")
        repl.feedback(0, reply=True)
        while True:
            raw = repl.read()
            if raw is None:
                now = time.monotonic()
                if watch.due(now):
                    self._check_slot_lag(watch, now)
                if not in_tx and now - last_heartbeat >= interval:
                    position = max(last_end, repl.server_position)
                    beat = SourceMeta(position=position, commit_ts=time.time())
                    yield Control(kind=ControlKind.HEARTBEAT, source=beat)
                    yield Committed(position=position, commit_ts=beat.commit_ts)
                    last_heartbeat = now
                    repl.feedback(0, reply=True)  # ask for a keepalive: fresh server position
                    last_feedback = now
                elif now - last_feedback >= _KEEPALIVE_S:
                    repl.feedback(0)
                    last_feedback = now
                yield None
                repl.wait(max(0.0, interval - (time.monotonic() - last_heartbeat)))
                continue
            try:
                msg = decoder.decode(raw.payload)
            except pgoutput.PgOutputError as exc:
                raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"undecodable WAL message: {exc}") from None
            if isinstance(msg, pgoutput.Begin):
                in_tx, lsn, commit_ts, xid, seq = True, msg.final_lsn, msg.commit_ts, msg.xid, 0
            elif isinstance(msg, pgoutput.Commit):
                in_tx = False
                last_end = max(last_end, msg.end_lsn)
                yield Committed(position=msg.end_lsn, commit_ts=msg.commit_ts)
                now = time.monotonic()
                if watch.due(now):  # busy streams are measured too, not only idle ones
                    self._check_slot_lag(watch, now)
            elif isinstance(msg, pgoutput.Insert | pgoutput.Update | pgoutput.Delete):
                relation = decoder.relations.get(msg.relation_oid)
                if relation.namespace != schema or relation.name not in COLUMNS:
                    continue
                seq += 1
                meta = SourceMeta(position=lsn, commit_ts=commit_ts, xid=xid, seq=seq, table=relation.name)
                if isinstance(msg, pgoutput.Delete):
                    row = decoder.row(msg.relation_oid, msg.old, key_only=msg.old_is_key)
                    deleted = row_to_event(relation.name, Op.DELETE, row, meta)
                    if isinstance(deleted, CheckpointChange):
                        marker.checkpoint(deleted)
                    fault_point("source.after_read")
                    yield deleted
                    continue
                row = decoder.row(msg.relation_oid, msg.new)
                event = row_to_event(relation.name, Op.UPSERT, row, meta, _is_unchanged)
                if event.unchanged and relation.name != "checkpoints":
                    refetched = self._refetch(relation.name, row, meta)
                    if refetched is None:
                        continue  # the row is gone again: its delete follows in the stream
                    event = refetched
                again = None
                if isinstance(event, CheckpointChange):
                    event = marker.checkpoint(event)
                elif isinstance(event, BlobChange):
                    again = marker.blob(event)
                fault_point("source.after_read")
                yield event
                if again is not None:
                    yield again
            elif isinstance(msg, pgoutput.Message) and not in_tx and msg.prefix == MARKER_PREFIX:
                # A cutover's marker: everything committed before it was sent, so it is a
                # heartbeat now (the cutover's drain need not wait for the next regular one).
                position = max(last_end, msg.lsn)
                beat = SourceMeta(position=position, commit_ts=time.time())
                yield Control(kind=ControlKind.HEARTBEAT, source=beat)
                yield Committed(position=position, commit_ts=beat.commit_ts)
                last_heartbeat = time.monotonic()
            elif isinstance(msg, pgoutput.Truncate):
                names = [
                    decoder.relations.get(oid).name for oid in msg.relation_oids if oid in decoder.relations
                ]
                if any(name in COLUMNS for name in names):
                    raise ReplicatorError(
                        ErrorKind.SOURCE_SETUP,
                        f"TRUNCATE of {', '.join(names)} on the source: a truncate is not a LangGraph "
                        "operation and is not replicated. Fix: empty the target too, then run "
                        "`replicator reset --config FILE --yes` and start again.",
                    )

    def _check_slot_lag(self, watch: SlotLagWatch, now: float) -> None:
        """Measure the WAL the slot retains; warn (rate-limited) above source.max_slot_lag_bytes."""
        try:
            row = (
                self._side_conn()
                .execute(
                    """SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status,
                          safe_wal_size
                   FROM pg_replication_slots WHERE slot_name = %s""",
                    (self.config.slot,),
                )
                .fetchone()
            )
        except (psycopg.Error, ReplicatorError) as exc:
            # Advisory only: a broken side connection shows up where it matters (refetch, state).
            watch.observe(0, now)
            log.debug("slot lag not measured", error=str(exc))
            return
        retained = int(row[0]) if row is not None and row[0] is not None else 0
        log.debug("slot lag measured", slot=self.config.slot, bytes=retained)
        if watch.observe(retained, now):
            log.warning(
                "slot retains too much WAL",
                slot=self.config.slot,
                bytes=retained,
                threshold=self.config.max_slot_lag_bytes,
                wal_status=row[1] if row is not None else None,
                safe_wal_size=row[2] if row is not None else None,
                hint="a target is behind or positions are not being confirmed (see `replicator "
                "status`); the source keeps this WAL on disk until every target applied it",
            )

    def _refetch(self, table: str, row: dict[str, Any], meta: SourceMeta) -> RowChange | None:
        """A row whose bytea was not resent (unchanged TOAST): read its current version."""
        from psycopg import sql

        pk = PRIMARY_KEYS[table]
        columns = COLUMNS[table]
        query = sql.SQL("SELECT {} FROM {} WHERE ({}) = ({})").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(self.config.schema_name, table),
            sql.SQL(", ").join(sql.Identifier(c) for c in pk),
            sql.SQL(", ").join(sql.Placeholder() * len(pk)),
        )
        found = self._side_conn().execute(query, tuple(row[c] for c in pk)).fetchone()
        if found is None:
            return None
        return row_to_event(table, Op.UPSERT, dict(zip(columns, found, strict=True)), meta)

    def _token(self, cursor: SnapshotCursor) -> SnapshotToken:
        return SnapshotToken(cursor, self.snapshot_rows, cursor.finished(len(TABLES)))

    def confirm(self, committed: Committed) -> None:
        token = committed.token
        if isinstance(token, SnapshotToken):
            self._save_snapshot(
                SnapshotState.DONE if token.done else SnapshotState.RUNNING,
                progress_doc(
                    token,
                    total=self.snapshot_total,
                    size=self.snapshot_bytes,
                    started_at=self.snapshot_started_at,
                    position=committed.position,
                ),
            )
            return
        if self._repl is not None and committed.position:
            self._repl.feedback(committed.position)

    # -- saver view ---------------------------------------------------------------------------

    def saver(self) -> PostgresSaver:
        from psycopg.rows import dict_row

        if self._saver_conn is None or self._saver_conn.closed:
            self._saver_conn = psycopg.connect(
                self._dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            if self.config.schema_name != "public":
                self._saver_conn.execute(f'SET search_path TO "{self.config.schema_name}"')
        return PostgresSaver(self._saver_conn)

    def thread_ids(self) -> Iterable[str]:
        from psycopg import sql

        conn = self._side_conn()
        query = sql.SQL("SELECT thread_id FROM {} UNION SELECT thread_id FROM {} ORDER BY 1").format(
            sql.Identifier(self.config.schema_name, "checkpoints"),
            sql.Identifier(self.config.schema_name, "checkpoint_writes"),
        )
        for (thread_id,) in conn.execute(query).fetchall():
            yield thread_id

    def close(self) -> None:
        for closer in (self._repl, self._side, self._saver_conn):
            if closer is not None:
                try:
                    closer.close()
                except Exception:
                    pass
        self._repl = self._side = self._saver_conn = None


def _is_unchanged(value: object) -> bool:
    return value is pgoutput.UNCHANGED_TOAST
