"""Figure 7, apply rate per target kind: each sink against that target saver's own API.

Same data for every target: real conversations (subgraph, interrupt left pending) written by
PostgresSaver, read as change events by the snapshot reader (what the initial copy sends through
Kafka). For each target kind, on a fresh store of its own:

* sink, copy batches: the events applied through the target's sink in batches of 2,000 (an
  applier's batch while the initial copy streams in);
* sink, stream batches: the same events in batches of 10 (about one checkpoint with its blobs and
  writes: what a caught-up daemon applies while the app writes);
* the saver's API: the same threads written with the target saver's own ``put`` and ``put_writes``
  (read with ``PostgresSaver.list``), as a migration script would; the saver has no batch API, so
  this is its rate for both shapes.

Rates are checkpoints per second (with their blobs and writes), timed in this process; the
target's server shares the machine. Cosmos DB has no server here and is not measured.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver

from bench import data
from bench.env import Services, log
from bench.report import Result, fmt_rate, md_table
from connectors.base import Sink
from connectors.sources.postgres.snapshot import read_snapshot
from connectors.sources.snapshot_progress import SnapshotCursor
from replicator.events import DataChange
from replicator.state import MemoryStateStore

COPY_BATCH = 2000
STREAM_BATCH = 10


@dataclass
class Params:
    threads: int = 60
    turns: int = 2


@dataclass
class Row:
    kind: str
    store: str
    copy: float  # checkpoints/s
    stream: float
    api: float


def _events(dsn: str) -> list[DataChange]:
    events: list[DataChange] = []
    with psycopg.connect(dsn) as conn:
        for chunk in read_snapshot(
            conn, schema="public", start=SnapshotCursor(0, None), position=1, chunk_rows=2000
        ):
            events.extend(e for e in chunk.events if isinstance(e, DataChange))
    return events


def _apply(sink: Sink, events: list[DataChange], size: int) -> float:
    t0 = time.monotonic()
    for start in range(0, len(events), size):
        sink.apply(events[start : start + size])
    return time.monotonic() - t0


def _through_api(dsn: str, saver: Any, threads: list[str]) -> float:
    t0 = time.monotonic()
    with data.connect(dsn) as conn:
        source = PostgresSaver(conn)
        for thread_id in threads:
            for tup in reversed(list(source.list({"configurable": {"thread_id": thread_id}}))):
                conf = tup.config["configurable"]
                parent: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": conf["checkpoint_ns"]}
                if tup.parent_config is not None:
                    parent["checkpoint_id"] = tup.parent_config["configurable"]["checkpoint_id"]
                saved = saver.put(
                    {"configurable": parent}, tup.checkpoint, tup.metadata, tup.checkpoint["channel_versions"]
                )
                by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
                for task_id, channel, value in tup.pending_writes or ():
                    by_task[task_id].append((channel, value))
                for task_id, task_writes in by_task.items():
                    saver.put_writes(saved, task_writes, task_id)
    return time.monotonic() - t0


StoreFactory = Callable[[str], contextlib.AbstractContextManager[Sink]]


def _kinds(s: Services, stack: contextlib.ExitStack) -> list[tuple[str, str, StoreFactory]]:
    """(kind, where its store runs, a fresh sink on a fresh store per call)."""
    from connectors.sinks.dynamodb import DynamoDBSink
    from connectors.sinks.postgres import PostgresSink
    from connectors.sinks.saver import SaverSink
    from connectors.sinks.sqlite import SqliteSink

    def closing(build: Callable[[str], Sink]) -> StoreFactory:
        @contextlib.contextmanager
        def factory(label: str) -> Iterator[Sink]:
            sink = build(label)
            sink.check()  # creates the saver's tables where the target does (Postgres, SQLite)
            try:
                yield sink
            finally:
                sink.close()

        return factory

    def dynamodb(endpoint: str) -> StoreFactory:
        from replicator.embedded import create_dynamodb_table

        def build(label: str) -> Sink:
            table = s.unique(f"t7-{label}")
            create_dynamodb_table(endpoint, table)
            return DynamoDBSink(
                label,
                table,
                "us-east-1",
                endpoint_url=endpoint,
                s3_bucket="offload",
                s3_key_prefix=table,
                s3_endpoint_url=s.moto.endpoint_url,
            )

        return closing(build)

    kinds = [("dynamodb", "moto", dynamodb(s.moto.endpoint_url))]
    with contextlib.suppress(Exception):  # dynalite comes from npm (tests/services): optional here
        from tests.services.dynalite import EmbeddedDynalite

        dynalite = stack.enter_context(EmbeddedDynalite())
        kinds.append(("dynamodb", "dynalite", dynamodb(dynalite.endpoint_url)))
    kinds.append(
        ("postgres", "PostgreSQL 15", closing(lambda label: PostgresSink(label, s.database("t7"), None)))
    )
    kinds.append(
        (
            "sqlite",
            "a file",
            closing(lambda label: SqliteSink(label, str(s.workdir / f"{s.unique('t7')}.sqlite"))),
        )
    )
    if shutil.which("redis-server"):
        from tests.savers import bind, redis_saver
        from tests.services.redis import EmbeddedRedis

        redis = stack.enter_context(EmbeddedRedis())

        def saver_sink(label: str) -> Sink:
            saver = redis_saver(redis.url, s.unique("t7"))
            return SaverSink(label, bind(lambda: saver), MemoryStateStore())

        kinds.append(("saver", "plain-Redis saver on redis-server", closing(saver_sink)))
    return kinds


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("targets")
    data.setup(dsn)
    gen_s = data.generate_real(dsn, "t", p.threads, p.turns)
    counts = data.counts(dsn)
    events = _events(dsn)
    threads = sorted({e.key.thread_id for e in events})  # type: ignore[union-attr]
    checkpoints = counts["checkpoints"]
    log(
        f"targets: {len(threads)} threads, {checkpoints} checkpoints, {len(events):,} events "
        f"(app {gen_s:.1f}s)"
    )
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        for kind, store, fresh in _kinds(s, stack):
            with fresh("copy") as sink:
                copy_s = _apply(sink, events, COPY_BATCH)
            with fresh("stream") as sink:
                stream_s = _apply(sink, events, STREAM_BATCH)
            with fresh("api") as sink:
                api_s = _through_api(dsn, sink.saver(), threads)
            row = Row(kind, store, checkpoints / copy_s, checkpoints / stream_s, checkpoints / api_s)
            rows.append(row)
            log(
                f"targets: {kind} ({store}): copy {row.copy:,.0f}/s, stream {row.stream:,.0f}/s, "
                f"saver API {row.api:,.0f}/s"
            )
    copy_ratios = [r.copy / r.api for r in rows]
    stream_ratios = [r.stream / r.api for r in rows]
    table = md_table(
        [
            "target",
            "store",
            "sink, copy batches",
            "sink, stream batches",
            "saver's API",
            "copy / API",
            "stream / API",
        ],
        [
            [
                r.kind,
                r.store,
                fmt_rate(r.copy),
                fmt_rate(r.stream),
                fmt_rate(r.api),
                f"**{r.copy / r.api:.1f}x**",
                f"{r.stream / r.api:.1f}x",
            ]
            for r in rows
        ],
        right=2,
    )
    section = f"""
Data: {len(threads)} real conversations of {p.turns} turns (subgraph, the last turn left at its
interrupt), {checkpoints:,} checkpoints, {counts["checkpoint_blobs"]:,} blobs, {counts["checkpoint_writes"]:,}
pending writes: {len(events):,} change events as the snapshot reader emits them. Rates in checkpoints/s
(with their blobs and writes), each on a fresh store; batches of {COPY_BATCH:,} events (copy) and
{STREAM_BATCH} events (stream).

{table}

The sinks batch what the store allows (`BatchWriteItem`, one transaction per batch, pipelined
`executemany`); the generic `saver` target goes through the saver's own `put` / `put_writes`, so
its rate is the saver's, plus the blob assembly from the state store. Cosmos DB is not measured:
no server runs here.
"""
    return Result(
        key="targets",
        title="Apply rate per target kind",
        measured=(
            f"copy {min(copy_ratios):.1f}-{max(copy_ratios):.1f}x, stream {min(stream_ratios):.1f}-"
            f"{max(stream_ratios):.1f}x the target saver's own API ({len(rows)} target kinds)"
        ),
        goal="measured per target (no goal set)",
        met=None,
        section=section,
        seconds=time.monotonic() - started,
        data={"rows": [r.__dict__ for r in rows]},
    )
