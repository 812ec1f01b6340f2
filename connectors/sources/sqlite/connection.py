"""Opening the app's SQLite file and turning SQLite's errors into ``ReplicatorError`` kinds.

The file is opened ``mode=rw``: a missing path is an error, never a new empty database. Every
statement waits up to ``busy_timeout`` for the app's lock (SQLite's own busy handler), and
``retrying`` repeats a statement that still found the file busy until ``locked_timeout`` has
passed, then fails with a retryable error (the daemon rebuilds the stage after a backoff).
Errors are told apart by SQLite's result code, never by message text.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import structlog

from replicator.errors import ErrorKind, ReplicatorError

log = structlog.get_logger("replicator.source.sqlite")

T = TypeVar("T")

# Primary result codes (the low byte of an extended code).
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED: the app holds the lock
_SETUP = {3, 8, 14, 23, 26}  # PERM, READONLY, CANTOPEN, AUTH, NOTADB
_UNREACHABLE = {10, 13, 15}  # IOERR, FULL, PROTOCOL
_CORRUPT = 11


def error_kind(exc: sqlite3.Error) -> ErrorKind:
    """What a failed statement means, by its SQLite result code."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _BUSY or primary in _UNREACHABLE:
        return ErrorKind.SOURCE_UNREACHABLE
    if primary in _SETUP or primary == _CORRUPT:
        return ErrorKind.SOURCE_SETUP
    return ErrorKind.INTERNAL


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY


def translate(exc: sqlite3.Error, path: str, what: str) -> ReplicatorError:
    kind = error_kind(exc)
    message = f"source database {path}: {what} failed: {exc}"
    if kind is ErrorKind.SOURCE_SETUP:
        message += " (is it a readable, writable SQLite file of SqliteSaver?)"
    return ReplicatorError(kind, message)


def connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """An autocommit connection to the existing file at ``path`` (transactions are explicit)."""
    if not Path(path).is_file():
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"source database {path} does not exist (or is not a file): set [source] path to the "
            "file the app's SqliteSaver writes",
        )
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=rw"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise translate(exc, path, "opening") from None
    return conn


def retrying(path: str, what: str, locked_timeout_s: float, action: Callable[[], T]) -> T:
    """``action()``, repeated while the file is busy, for at most ``locked_timeout_s``.

    Each attempt already waited ``busy_timeout`` inside SQLite; the pause between attempts
    grows to one second. Nothing is half done by a failed attempt: each one is a whole statement
    or an explicit transaction that the caller rolls back.
    """
    started = time.monotonic()
    pause = 0.02
    while True:
        try:
            return action()
        except sqlite3.Error as exc:
            waited = time.monotonic() - started
            if not is_busy(exc):
                raise translate(exc, path, what) from None
            if waited >= locked_timeout_s:
                raise ReplicatorError(
                    ErrorKind.SOURCE_UNREACHABLE,
                    f"source database {path} is locked: {what} waited {waited:.1f}s "
                    f"(source.locked_timeout_s = {locked_timeout_s}) for another process's lock; "
                    "retried after a backoff",
                ) from None
            log.debug("source database busy; retrying", what=what, waited=round(waited, 3))
            time.sleep(min(pause, max(0.0, locked_timeout_s - waited)))
            pause = min(pause * 2, 1.0)
