"""SqliteSaver's file as a change source: our changelog, a consistent snapshot, then streaming.

Lifecycle (persisted in the state store under ``source``; a non-Postgres source keeps its state
in ``[state]``, never in the app's file):

- no state: install the changelog and triggers (``capture``; logged by name), copy both tables
  in one read transaction that also reads the changelog's last seq ``S``, then stream from
  ``S + 1``: no gap, no overlap (``snapshot``).
- snapshot not marked done (a run died mid-copy): continue the copy from the saved keyset
  cursor in a fresh read, then stream from ``S + 1``; the overlap converges (``snapshot``).
- snapshot done: stream from the last confirmed seq (rows below it may already be trimmed).
- a copy begun or done but the triggers or the changelog gone, or rows not yet confirmed gone:
  changes may be lost: stop with an error that says how to start over.

Rows are trimmed only below a position the publisher confirmed, which trails both Kafka's acks
and every target's applied position (``Publisher.applied_position``); the confirmed position is
saved before rows are deleted, so a restart never looks for a trimmed row.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from connectors.sources.snapshot_progress import (
    SnapshotCursor,
    SnapshotToken,
    progress_doc,
    save_snapshot,
    saved_snapshot_state,
)
from connectors.sources.sqlite import capture, changelog
from connectors.sources.sqlite.config import SqliteSourceConfig
from connectors.sources.sqlite.connection import connect, is_busy, retrying, translate
from connectors.sources.sqlite.rows import check_tables, list_threads, read_thread, read_transaction
from connectors.sources.sqlite.snapshot import count_rows, read_chunks
from replicator.errors import ErrorKind, ReplicatorError, translated
from replicator.events import ChangeEvent, Committed, Control, ControlKind, DataChange, SourceMeta
from replicator.faults import enter_phase, fault_point
from replicator.lifecycle import SnapshotState
from replicator.state import SOURCE_STATE, StateStore

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver

log = structlog.get_logger("replicator.source.sqlite")

T = TypeVar("T")

_TRIM_BUSY_TIMEOUT_S = 1.0  # a trim is never urgent: give the app its lock back quickly
_MAX_READ_ROWS = 1 << 20


class SqliteSource:
    """Captures SqliteSaver's ``checkpoints`` and ``writes`` through ``replicator_changelog``."""

    name = "sqlite"

    def __init__(self, config: SqliteSourceConfig, state: StateStore) -> None:
        self.config = config
        self.state = state
        self.path = config.path
        self._main: sqlite3.Connection | None = None
        self._trimmer: sqlite3.Connection | None = None
        self._saver_conn: sqlite3.Connection | None = None
        self._confirmed = 0  # the highest position confirmed in this run
        self._trimmed_below = 0
        self._trimmed_at = 0.0
        self.snapshot_rows = 0
        self.snapshot_bytes = 0
        self.snapshot_total = 0
        self.snapshot_started_at = time.time()

    # -- connections ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._main is None:
            self._main = connect(self.path, self.config.busy_timeout_s)
        return self._main

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        return retrying(self.path, what, self.config.locked_timeout_s, action)

    # -- checks and status ----------------------------------------------------------------------

    def check(self) -> None:
        conn = self._conn()
        self._retry("reading the tables", lambda: check_tables(conn, self.path))
        mode = self._retry("reading the journal mode", lambda: conn.execute("PRAGMA journal_mode").fetchone())
        if mode is not None and str(mode[0]).lower() != "wal":
            log.warning(
                "source database is not in WAL mode: the replicator's reads and the app's writes wait "
                "for each other (SqliteSaver.setup() switches the file to WAL)",
                path=self.path,
                journal_mode=mode[0],
            )

    def head(self) -> int:
        """The next changelog seq: every change below it is committed."""
        conn = self._conn()
        return self._retry("reading the changelog head", lambda: capture.sequence(conn)) + 1

    @staticmethod
    def format_position(position: int) -> str:
        return f"seq:{position}"

    @staticmethod
    def next_version(current: Any, channel: None = None) -> str:
        """SqliteSaver's channel versions (``f"{n:032}.{random:016}"``), continuing any int or str
        version: what a moved thread's next versions must be (``replicator.target_saver``)."""
        from langgraph.checkpoint.sqlite import SqliteSaver

        version: str = SqliteSaver.get_next_version(None, current, channel)  # type: ignore[arg-type]
        return version

    def describe(self) -> dict[str, Any]:
        """The changelog: installed or not, the seqs it still holds, whether it holds too many."""
        conn = self._conn()

        def read() -> dict[str, Any]:
            with read_transaction(conn):
                present = capture.existing(conn)
                if capture.CHANGELOG not in present:
                    return {"changelog": capture.CHANGELOG, "installed": False}
                low, high = changelog.bounds(conn)
                return {
                    "changelog": capture.CHANGELOG,
                    "installed": present == {capture.CHANGELOG, *capture.TRIGGERS},
                    "oldest_seq": low,
                    "newest_seq": high,
                    "head": capture.sequence(conn) + 1,
                }

        details = self._retry("reading the changelog", read)
        retained = (
            0 if details.get("oldest_seq") is None else details["newest_seq"] - details["oldest_seq"] + 1
        )
        details["retained_rows"] = retained
        details["retained_over_threshold"] = retained > self.config.max_changelog_rows
        return details

    def teardown(self) -> list[str]:
        return self.reset()  # the triggers and the changelog are all the replicator added

    def reset(self) -> list[str]:
        """Drop the triggers and the changelog: the next run installs them anew and copies everything."""
        conn = self._conn()
        dropped = self._retry("dropping the changelog", lambda: capture.uninstall(conn))
        log.info("changelog removed", path=self.path, dropped=dropped)
        if not dropped:
            return [f"nothing in {self.path} (no changelog or triggers were installed)"]
        return [f"{', '.join(dropped)} in {self.path}"]

    # -- the initial copy's lifecycle (persisted under ``source``) ------------------------------

    def snapshot_state(self) -> SnapshotState:
        return saved_snapshot_state(self.state)

    def restart_snapshot(self) -> None:
        """Copy everything again on the next run (streaming resumes where it was confirmed)."""
        self._save_snapshot(SnapshotState.RUNNING, {"cursor": None})

    def _save_snapshot(self, new: SnapshotState, fields: dict[str, Any]) -> None:
        save_snapshot(self.state, new, fields)

    # -- stream ---------------------------------------------------------------------------------

    def stream(self) -> Iterator[ChangeEvent | Committed | None]:
        # Statements outside ``_retry`` (the snapshot's reads) fail as ReplicatorErrors too.
        with translated(sqlite3.Error, lambda exc: translate(exc, self.path, "reading")):
            yield from self._run()

    def _run(self) -> Iterator[ChangeEvent | Committed | None]:
        conn = self._conn()
        self._retry("reading the tables", lambda: check_tables(conn, self.path))
        saved = self.state.get(SOURCE_STATE) or {}
        snapshot = SnapshotState.parse(saved.get("snapshot"))
        present = self._retry("reading the changelog setup", lambda: capture.existing(conn))
        if snapshot is not SnapshotState.NOT_STARTED and present != {capture.CHANGELOG, *capture.TRIGGERS}:
            missing = sorted({capture.CHANGELOG, *capture.TRIGGERS} - present)
            raise ReplicatorError(
                ErrorKind.SOURCE_LOST,
                f"the replicator's changelog in {self.path} is incomplete ({', '.join(missing)} missing) "
                "although the replicator started from it: changes made meanwhile were not captured. Fix: run "
                "`replicator reset --config FILE --yes` and start again; the daemon copies everything "
                "anew and the idempotent apply converges the target.",
            )
        created = self._retry("installing the changelog", lambda: capture.install(conn))
        if created:
            log.info("changelog installed", path=self.path, created=created)
        if snapshot is SnapshotState.NOT_STARTED:
            start = yield from self._first_snapshot(conn)
        else:
            start = int(saved["position"])
            if snapshot is SnapshotState.RUNNING:
                cursor = SnapshotCursor.from_json(saved.get("cursor"))
                log.info(
                    "resuming initial copy", cursor=cursor.to_json(), position=self.format_position(start)
                )
                with read_transaction(conn):  # a fresh, newer read: see snapshot.py for the overlap
                    yield from self._chunks(conn, cursor, start)
            start = max(start, int(saved.get("confirmed") or 0))
        self._check_retained(conn, start)
        log.info("streaming", changelog=capture.CHANGELOG, position=self.format_position(start))
        yield from self._stream(conn, start)

    def _first_snapshot(
        self, conn: sqlite3.Connection
    ) -> Generator[ChangeEvent | Committed | None, None, int]:
        """The copy in the same read transaction as the seq it hands off at; returns that seq."""
        with read_transaction(conn):
            start = capture.sequence(conn) + 1  # the first read: it fixes the WAL snapshot
            log.info("initial copy starts", position=self.format_position(start))
            self._save_snapshot(SnapshotState.RUNNING, {"cursor": None, "position": start})
            yield from self._chunks(conn, SnapshotCursor(0, None), start)
        return start

    def _chunks(
        self, conn: sqlite3.Connection, cursor: SnapshotCursor, start: int
    ) -> Iterator[ChangeEvent | Committed | None]:
        enter_phase("snapshot")
        meta = SourceMeta(position=start, snapshot=True)
        self.snapshot_total = count_rows(conn)
        if cursor.table_index == 0 and cursor.after is None:
            yield Control(kind=ControlKind.SNAPSHOT_START, source=meta, info={"rows": self.snapshot_total})
        started = time.monotonic()
        for chunk in read_chunks(
            conn, start=cursor, position=start, chunk_rows=self.config.snapshot_chunk_rows
        ):
            yield from chunk.events
            self.snapshot_rows += chunk.rows
            self.snapshot_bytes += chunk.bytes
            yield Committed(
                position=start,
                token=SnapshotToken(
                    chunk.cursor, self.snapshot_rows, chunk.cursor.finished(len(capture.TABLES))
                ),
            )
            fault_point("snapshot.between_chunks")
        log.info(
            "initial copy finished",
            rows=self.snapshot_rows,
            bytes=self.snapshot_bytes,
            seconds=round(time.monotonic() - started, 3),
        )
        yield Control(kind=ControlKind.SNAPSHOT_END, source=meta, info={"rows": self.snapshot_rows})
        yield Committed(
            position=start,
            token=self._token(SnapshotCursor(len(capture.TABLES), None)),
        )

    def _check_retained(self, conn: sqlite3.Connection, start: int) -> None:
        """Every row from ``start`` on is still in the changelog (none trimmed, none recreated)."""

        def read() -> tuple[int | None, int]:
            with read_transaction(conn):
                return changelog.bounds(conn)[0], capture.sequence(conn)

        low, last = self._retry("reading the changelog", read)
        if last + 1 < start or (last >= start and (low is None or low > start)):
            raise ReplicatorError(
                ErrorKind.SOURCE_LOST,
                f"the changelog in {self.path} no longer holds the changes from "
                f"{self.format_position(start)} on (oldest held: "
                f"{self.format_position(low) if low is not None else 'none'}, last given out: "
                f"{self.format_position(last)}): it was trimmed or recreated outside this replicator. "
                "Fix: run `replicator reset --config FILE --yes` and start again.",
            )

    def _stream(self, conn: sqlite3.Connection, start: int) -> Iterator[ChangeEvent | Committed | None]:
        enter_phase("streaming")
        position = start
        limit = self.config.stream_batch_rows
        last_heartbeat = time.monotonic()
        while True:
            read = functools.partial(changelog.read, conn, position, limit)
            rows = self._retry("reading the changelog", read)
            complete = len(rows) < limit
            units, held = changelog.plan(rows, complete)
            for unit in units:
                fault_point("source.after_read")
                yield unit.event
                yield Committed(position=unit.next_position, commit_ts=unit.commit_ts)
            if held is not None:
                position = held
                # A run of deletes longer than the read: read it whole next time.
                limit = min(limit * 2, _MAX_READ_ROWS) if not units else self.config.stream_batch_rows
                continue
            limit = self.config.stream_batch_rows
            if rows:
                position = rows[-1].seq + 1
            if not complete:
                continue
            yield None  # caught up: the moment to flush
            now = time.monotonic()
            if now - last_heartbeat >= self.config.heartbeat_interval_s:
                beat = SourceMeta(position=position, commit_ts=time.time())
                yield Control(kind=ControlKind.HEARTBEAT, source=beat)
                yield Committed(position=position, commit_ts=beat.commit_ts)
                last_heartbeat = now
            if not rows:
                self._trim()
                time.sleep(self.config.poll_interval_s)  # SQLite cannot wake another process

    def _token(self, cursor: SnapshotCursor) -> SnapshotToken:
        return SnapshotToken(cursor, self.snapshot_rows, cursor.finished(len(capture.TABLES)))

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
                ),
            )
            return
        self._confirmed = max(self._confirmed, committed.position)
        self._trim()

    def _trim(self) -> None:
        """Forget changelog rows below the confirmed position: saved first, then deleted, at most
        every ``trim_interval_s`` (the idle stream calls this too, so the last confirm is not left
        behind). A busy file only delays the trim: nothing depends on it."""
        below = self._confirmed
        now = time.monotonic()
        if below <= self._trimmed_below or now - self._trimmed_at < self.config.trim_interval_s:
            return
        saved = self.state.get(SOURCE_STATE) or {}
        if below > int(saved.get("confirmed") or 0):
            self.state.put(SOURCE_STATE, {**saved, "confirmed": below, "confirmed_at": time.time()})
        if self._trimmer is None:
            self._trimmer = connect(self.path, min(self.config.busy_timeout_s, _TRIM_BUSY_TIMEOUT_S))
        try:
            deleted = changelog.trim(self._trimmer, below)
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise translate(exc, self.path, "trimming the changelog") from None
            self._trimmed_at = now  # try again after trim_interval_s, not on every confirm
            log.info("changelog not trimmed: the database is busy; trimmed later", below=below)
            return
        self._trimmed_below, self._trimmed_at = below, now
        log.debug("changelog trimmed", below=self.format_position(below), rows=deleted)

    # -- saver view and whole threads (``replicator verify``, ``replicator copy``) ---------------

    def saver(self) -> SqliteSaver:
        from langgraph.checkpoint.sqlite import SqliteSaver

        if self._saver_conn is None:
            self._saver_conn = connect(self.path, self.config.busy_timeout_s)
        return SqliteSaver(self._saver_conn)

    def thread_ids(self) -> Iterable[str]:
        return self.threads()

    def threads(self) -> list[str]:
        """Every thread id the file holds, sorted."""
        conn = self._conn()
        return self._retry("listing threads", lambda: list_threads(conn))

    def thread_events(self, thread_id: str) -> list[DataChange]:
        """One thread as events (``ThreadDeletion`` first), read in one transaction."""
        conn = self._conn()

        def read() -> list[DataChange]:
            with read_transaction(conn):
                return read_thread(conn, thread_id)

        return self._retry(f"reading thread {thread_id!r}", read)

    def close(self) -> None:
        for conn in (self._main, self._trimmer, self._saver_conn):
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._main = self._trimmer = self._saver_conn = None
