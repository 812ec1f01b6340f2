"""Figure 8, ``replicator copy`` (the big-bang move) against a migration script.

Same data, same run: real conversations (subgraph, interrupt left pending) written by
PostgresSaver, then copied to a fresh DynamoDB table on moto

* by ``replicator copy`` (in this process: ``replicator.copy.copy``, one consistent read per
  thread, the DynamoDB sink's batched writes on ``workers`` writers), and
* by what a team would write without the replicator: ``PostgresSaver.list`` of each thread, then
  ``DynamoDBSaver.put`` / ``put_writes`` for every checkpoint (``bench.targets._through_api``).

A second ``replicator copy`` of the unchanged store is timed too: it copies nothing (per-thread
digests in the state store) and says so. Rates are checkpoints per second, with their writes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import data
from bench.env import Services, log
from bench.report import Result, fmt_rate, md_table
from bench.targets import _through_api
from replicator.copy import copy as run_copy
from replicator.state import MemoryStateStore

GOAL = 10.0
SCRIPT = "PostgresSaver.list, then DynamoDBSaver.put / put_writes"


@dataclass
class Params:
    threads: int = 60
    turns: int = 2
    workers: int = 4


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("copycmd")
    data.setup(dsn)
    gen_s = data.generate_real(dsn, "c", p.threads, p.turns)
    checkpoints = data.counts(dsn)["checkpoints"]
    copied_table = s.table("f8-copy")
    config, _ = s.config(dsn, copied_table, topic=s.unique("unused"))
    state = MemoryStateStore()
    t0 = time.monotonic()
    first = run_copy(config, state, workers=p.workers)[0]
    copy_s = time.monotonic() - t0
    t0 = time.monotonic()
    second = run_copy(config, state, workers=p.workers)[0]
    again_s = time.monotonic() - t0

    from connectors.sinks.dynamodb import DynamoDBSink

    api_sink = DynamoDBSink(
        "api", s.table("f8-api"), "us-east-1", endpoint_url=s.moto.endpoint_url, s3_bucket="offload"
    )
    threads = [f"c{i}" for i in range(p.threads)]
    api_s = _through_api(dsn, api_sink.saver(), threads)
    api_sink.close()
    limit_s, items = _bulk_limit(s, copied_table, p.workers)
    copy_rate, api_rate, limit_rate = checkpoints / copy_s, checkpoints / api_s, checkpoints / limit_s
    ratio = copy_rate / api_rate
    of_limit = copy_rate / limit_rate
    log(
        f"copy command: {first.copied} threads, {checkpoints} checkpoints in {copy_s:.2f}s "
        f"({copy_rate:,.0f}/s); savers' API {api_rate:,.0f}/s; {ratio:.1f}x; second run {again_s:.2f}s "
        f"({second.copied} copied, {second.unchanged} unchanged); app {gen_s:.1f}s"
    )
    table = md_table(
        ["path", "seconds", "checkpoints/s", "vs the savers' API"],
        [
            [
                f"`replicator copy` ({p.workers} workers)",
                f"{copy_s:.2f}",
                fmt_rate(copy_rate),
                f"**{ratio:.1f}x**",
            ],
            [
                f"the limit: the same {items:,} items, prebuilt, `BatchWriteItem` on {p.workers} threads",
                f"{limit_s:.2f}",
                fmt_rate(limit_rate),
                f"{limit_rate / api_rate:.1f}x",
            ],
            [
                "PostgresSaver.list, then DynamoDBSaver.put / put_writes",
                f"{api_s:.2f}",
                fmt_rate(api_rate),
                "1.0x",
            ],
            [
                f"`replicator copy` again ({second.copied} copied, {second.unchanged} unchanged)",
                f"{again_s:.2f}",
                "-",
                "-",
            ],
        ],
        right=1,
    )
    section = f"""
Data: {p.threads} real conversations of {p.turns} turns (subgraph, the last turn left at its interrupt),
{checkpoints:,} checkpoints, copied from PostgreSQL 15 to a fresh DynamoDB table on moto (same machine).

{table}

Both paths read the same source and write the same server; the script is what a team writes
without the replicator (one `put` per checkpoint, one `put_writes` per task). The limit is the
server's own bulk write path with no replicator logic: the items `replicator copy` wrote, read
back and written again into a fresh table, 25 per `BatchWriteItem`, on as many threads as the
copy's workers (no source read, no encoding). `replicator copy` runs at **{of_limit:.2f}x the
limit**. Goals: at least {GOAL:.0f}x the savers' API and 0.8x the limit.
"""
    return Result(
        key="copy-command",
        title="replicator copy against a migration script",
        measured=f"{ratio:.1f}x the savers' API ({copy_rate:,.0f} vs {api_rate:,.0f} checkpoints/s), "
        f"{of_limit:.2f}x the limit",
        goal=f">= {GOAL:.0f}x, >= 0.8x the limit",
        met=ratio >= GOAL and of_limit >= 0.8,
        section=section,
        seconds=time.monotonic() - started,
        data={
            "copy_s": copy_s,
            "api_s": api_s,
            "again_s": again_s,
            "limit_s": limit_s,
            "checkpoints": checkpoints,
        },
    )


def _bulk_limit(s: Services, copied: str, workers: int) -> tuple[float, int]:
    """Seconds to write the copied table's items into a fresh table of the same server, prebuilt
    (scanned back, not timed), 25 per BatchWriteItem on ``workers`` threads; and the item count."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=s.moto.endpoint_url, region_name="us-east-1")
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=copied):
        items.extend(page["Items"])
    dest = s.table("f8-limit")
    batches = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(batch: list[dict[str, Any]]) -> None:
        pending = {dest: [{"PutRequest": {"Item": item}} for item in batch]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, batches))
    return time.monotonic() - started, len(items)
