"""Our change capture inside the app's SqliteSaver file: a changelog table and six triggers.

SQLite has no logical log, so AFTER INSERT/UPDATE/DELETE triggers on ``checkpoints`` and
``writes`` copy every change into ``replicator_changelog`` in the app's own transaction: a
change is in the changelog exactly when it committed. ``seq`` (AUTOINCREMENT, so never reused
even after rows are trimmed; SQLite has one writer at a time, so one transaction's rows are
contiguous) is the source position.

An upsert row carries the new values whole (the event is built from the changelog alone, never
from the table's current value). A delete row carries the key and ``emptied``: whether the
thread had no row left in either table right after this delete. ``delete_thread`` deletes every
row of a thread in one transaction, so its rows form one run of deletes of that thread ending
in ``emptied = 1``; ``changelog.plan`` turns such a run into one ``ThreadDeletion``.

No column is constrained (beyond ``seq``): a trigger must never make the app's write fail.
"""

from __future__ import annotations

import sqlite3

CHANGELOG = "replicator_changelog"
TABLES = ("checkpoints", "writes")

# Columns of the changelog that a row of each app table fills.
KEY_COLUMNS = {
    "checkpoints": ("thread_id", "checkpoint_ns", "checkpoint_id"),
    "writes": ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
}
VALUE_COLUMNS = {  # changelog column <- app column
    "checkpoints": {
        "parent_checkpoint_id": "parent_checkpoint_id",
        "type": "type",
        "value": "checkpoint",
        "metadata": "metadata",
    },
    "writes": {"task_path": "task_path", "channel": "channel", "type": "type", "value": "value"},
}
# What SqliteSaver's readers need of each table: checked before anything is installed.
REQUIRED_COLUMNS = {
    "checkpoints": {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "type"}
    | {"checkpoint", "metadata"},
    "writes": {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx"}
    | {"channel", "type", "value"},
}

CREATE_CHANGELOG = f"""
CREATE TABLE IF NOT EXISTS {CHANGELOG} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT,
    op TEXT,
    thread_id TEXT,
    checkpoint_ns TEXT,
    checkpoint_id TEXT,
    task_id TEXT,
    idx INTEGER,
    parent_checkpoint_id TEXT,
    task_path TEXT,
    channel TEXT,
    type TEXT,
    value BLOB,
    metadata BLOB,
    emptied INTEGER,
    ts REAL
)"""

# Epoch seconds with milliseconds, from SQLite's clock (unixepoch('subsec') needs 3.42).
_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _emptied(thread: str) -> str:
    return (
        f"(NOT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = {thread}) "
        f"AND NOT EXISTS (SELECT 1 FROM writes WHERE thread_id = {thread}))"
    )


def _upsert(table: str) -> str:
    keys = KEY_COLUMNS[table]
    values = VALUE_COLUMNS[table]
    columns = ", ".join(("tbl", "op", *keys, *values, "emptied", "ts"))
    new = ", ".join(
        (f"'{table}'", "'u'", *(f"NEW.{k}" for k in keys), *(f"NEW.{c}" for c in values.values()))
    )
    return f"INSERT INTO {CHANGELOG} ({columns}) VALUES ({new}, 0, {_NOW});"


def _delete(table: str, where: str = "") -> str:
    keys = KEY_COLUMNS[table]
    columns = ", ".join(("tbl", "op", *keys, "emptied", "ts"))
    old = ", ".join((f"'{table}'", "'d'", *(f"OLD.{k}" for k in keys), _emptied("OLD.thread_id"), _NOW))
    return f"INSERT INTO {CHANGELOG} ({columns}) SELECT {old}{where};"


def _key_changed(table: str) -> str:
    return " WHERE " + " OR ".join(f"OLD.{k} IS NOT NEW.{k}" for k in KEY_COLUMNS[table])


def trigger_name(table: str, event: str) -> str:
    return f"replicator_{table}_{event}"


def triggers() -> dict[str, str]:
    """Every trigger's name and its CREATE statement."""
    out: dict[str, str] = {}
    for table in TABLES:
        bodies = {
            "insert": _upsert(table),
            # An UPDATE that moves a row to another key deletes the old key first.
            "update": _delete(table, _key_changed(table)) + "\n    " + _upsert(table),
            "delete": _delete(table),
        }
        for event, body in bodies.items():
            name = trigger_name(table, event)
            out[name] = (
                f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event.upper()} ON {table} "
                f"FOR EACH ROW BEGIN\n    {body}\nEND"
            )
    return out


TRIGGERS = triggers()


def existing(conn: sqlite3.Connection) -> set[str]:
    """Which of our table and triggers exist in the file."""
    names = [CHANGELOG, *TRIGGERS]
    marks = ", ".join("?" * len(names))
    rows = conn.execute(f"SELECT name FROM sqlite_master WHERE name IN ({marks})", names).fetchall()
    return {row[0] for row in rows}


def install(conn: sqlite3.Connection) -> list[str]:
    """Create what is missing, in one write transaction; the names of what was created."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = existing(conn)
        conn.execute(CREATE_CHANGELOG)
        for statement in TRIGGERS.values():
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [name for name in (CHANGELOG, *TRIGGERS) if name not in before]


def uninstall(conn: sqlite3.Connection) -> list[str]:
    """Drop the triggers, then the changelog, in one write transaction; what was dropped."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = existing(conn)
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(f"DROP TABLE IF EXISTS {CHANGELOG}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [name for name in (*TRIGGERS, CHANGELOG) if name in before]


def sequence(conn: sqlite3.Connection) -> int:
    """The last seq ever given out (0 before the first change, or without a changelog)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is None:
        return 0  # no AUTOINCREMENT table in the file yet
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (CHANGELOG,)).fetchone()
    return int(row[0]) if row else 0
