"""Workload: real LangGraph conversations through PostgresSaver, multiplied at the SQL level.

Running the real graph for every thread of a big data set would take most of the time budget,
so a few hundred *template* threads are produced by the real app (``replicator.embedded.demo_app``: a
subgraph namespace, an interrupt that leaves pending writes, a parallel branch, unicode), and
bulk data is made of copies of their rows under new thread ids (``INSERT ... SELECT``): every
row is one the real saver wrote, byte for byte, only the thread id differs.

The copies are written by a stored procedure that commits every ``tx_rows`` rows, so the WAL has
the transaction shape chosen by the caller: the app itself commits 2-3 rows per transaction
(one ``put`` = a checkpoint and its new blobs, one ``put_writes`` = a task's writes).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

from replicator.embedded.demo_app import build_graph, run_conversation

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")

_CLONE = """
CREATE OR REPLACE PROCEDURE bench_clone(src text[], dst text, first_id int, n int, tx_rows int)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    t text;
    k int := 0;
    r record;
BEGIN
    FOR i IN first_id .. first_id + n - 1 LOOP
        t := src[1 + (i % array_length(src, 1))];
        IF tx_rows <= 0 THEN
            INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
                SELECT dst || i, checkpoint_ns, channel, version, type, blob
                FROM checkpoint_blobs WHERE thread_id = t;
            INSERT INTO checkpoints
                (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
                SELECT dst || i, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
                       metadata
                FROM checkpoints WHERE thread_id = t;
            INSERT INTO checkpoint_writes
                (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
                SELECT dst || i, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path
                FROM checkpoint_writes WHERE thread_id = t;
            COMMIT;
            CONTINUE;
        END IF;
        FOR r IN SELECT * FROM checkpoint_blobs WHERE thread_id = t LOOP
            INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
                VALUES (dst || i, r.checkpoint_ns, r.channel, r.version, r.type, r.blob);
            k := k + 1;
            IF k % tx_rows = 0 THEN COMMIT; END IF;
        END LOOP;
        FOR r IN SELECT * FROM checkpoints WHERE thread_id = t LOOP
            INSERT INTO checkpoints
                (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
                VALUES (dst || i, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, r.type,
                        r.checkpoint, r.metadata);
            k := k + 1;
            IF k % tx_rows = 0 THEN COMMIT; END IF;
        END LOOP;
        FOR r IN SELECT * FROM checkpoint_writes WHERE thread_id = t LOOP
            INSERT INTO checkpoint_writes
                (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path)
                VALUES (dst || i, r.checkpoint_ns, r.checkpoint_id, r.task_id, r.idx, r.channel, r.type,
                        r.blob, r.task_path);
            k := k + 1;
            IF k % tx_rows = 0 THEN COMMIT; END IF;
        END LOOP;
    END LOOP;
    COMMIT;
END $$;
"""


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A connection set up the way PostgresSaver wants it."""
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)


def setup(dsn: str) -> None:
    """PostgresSaver's tables, and the clone procedure."""
    with connect(dsn) as conn:
        PostgresSaver(conn).setup()
        conn.execute(_CLONE)


def generate_real(dsn: str, prefix: str, threads: int, turns: int = 2) -> float:
    """``threads`` real conversations of ``turns`` turns; the last turn is left at its interrupt,
    so every thread ends with pending writes (its ``__interrupt__`` and the branch's writes).
    Returns the seconds it took."""
    t0 = time.monotonic()
    with connect(dsn) as conn:
        graph = build_graph(PostgresSaver(conn))
        for i in range(threads):
            run_conversation(graph, f"{prefix}{i}", turns=turns, resume=False)
    return time.monotonic() - t0


def clone(dsn: str, src_prefix: str, dst_prefix: str, first: int, count: int, tx_rows: int = 0) -> float:
    """Threads ``dst_prefix{first..first+count-1}``, each a copy of a template thread whose id
    starts with ``src_prefix``; a commit every ``tx_rows`` rows (0: one transaction per thread).
    Returns the seconds it took."""
    t0 = time.monotonic()
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id LIKE %s ORDER BY 1",
            (src_prefix.replace("_", r"\_") + "%",),
        ).fetchall()
        templates = [r["thread_id"] for r in rows]
        if not templates:
            raise RuntimeError(f"no template threads {src_prefix}*")
        conn.execute("CALL bench_clone(%s, %s, %s, %s, %s)", (templates, dst_prefix, first, count, tx_rows))
    return time.monotonic() - t0


def counts(dsn: str, like: str = "%") -> dict[str, int]:
    """Rows per table (threads matching ``like``), threads, and checkpoints with pending writes."""
    with connect(dsn) as conn:
        out = {
            t: int(
                conn.execute(f"SELECT count(*) AS n FROM {t} WHERE thread_id LIKE %s", (like,)).fetchone()[
                    "n"
                ]
            )  # type: ignore[index]
            for t in TABLES
        }
        out["threads"] = int(
            conn.execute(
                "SELECT count(DISTINCT thread_id) AS n FROM checkpoints WHERE thread_id LIKE %s", (like,)
            ).fetchone()["n"]  # type: ignore[index]
        )
        out["checkpoints_with_writes"] = int(
            conn.execute(
                "SELECT count(*) AS n FROM (SELECT DISTINCT thread_id, checkpoint_ns, checkpoint_id "
                "FROM checkpoint_writes WHERE thread_id LIKE %s) w",
                (like,),
            ).fetchone()["n"]  # type: ignore[index]
        )
    out["rows"] = sum(out[t] for t in TABLES)
    return out


def events_per_thread(dsn: str, like: str) -> float:
    c = counts(dsn, like)
    return c["rows"] / max(1, c["threads"])
