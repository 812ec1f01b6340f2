"""Figure 8, ``replicator copy`` (the big-bang move) against a migration script.

Same data, same run: real conversations (subgraph, interrupt left pending) written by
PostgresSaver, then copied to a fresh DynamoDB table on moto, then on dynalite (when installed)

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
from bench.env import Services, dynamodb_stores, log
from bench.report import Result, fmt_rate, md_table
from bench.targets import _through_api
from replicator.copy import copy as run_copy
from replicator.embedded import create_dynamodb_table
from replicator.state import MemoryStateStore

GOAL = 10.0
SCRIPT = "PostgresSaver.list, then DynamoDBSaver.put / put_writes"


@dataclass
class Params:
    threads: int = 60
    turns: int = 2
    workers: int = 4
    stores: tuple[str, ...] = ("moto", "dynalite")


def run(s: Services, p: Params, outdir: Any) -> Result:
    """The figure on moto and, when installed, on dynalite (faster per request), same data."""
    started = time.monotonic()
    dsn = s.database("copycmd")
    data.setup(dsn)
    gen_s = data.generate_real(dsn, "c", p.threads, p.turns)
    checkpoints = data.counts(dsn)["checkpoints"]
    runs: list[dict[str, Any]] = []
    with dynamodb_stores(s, p.stores) as stores:
        for store in stores:
            runs.append(_one(s, p, dsn, checkpoints, store.name, store.endpoint))
    stores = [r["store"] for r in runs]
    rows = []
    for r in runs:
        rows += [
            [
                r["store"],
                f"`replicator copy` ({p.workers} workers)",
                f"{r['copy_s']:.2f}",
                fmt_rate(r["copy_rate"]),
                f"**{r['ratio']:.1f}x**",
            ],
            [
                r["store"],
                f"the limit: the same {r['items']:,} items, prebuilt, `BatchWriteItem` "
                f"on {p.workers} threads",
                f"{r['limit_s']:.2f}",
                fmt_rate(r["limit_rate"]),
                f"{r['limit_rate'] / r['api_rate']:.1f}x",
            ],
            [r["store"], SCRIPT, f"{r['api_s']:.2f}", fmt_rate(r["api_rate"]), "1.0x"],
            [
                r["store"],
                f"`replicator copy` again ({r['again_copied']} copied, {r['again_unchanged']} unchanged)",
                f"{r['again_s']:.2f}",
                "-",
                "-",
            ],
        ]
    table = md_table(["DynamoDB", "path", "seconds", "checkpoints/s", "vs the savers' API"], rows, right=2)
    of_limit = "; ".join(f"{r['store']}: **{r['of_limit']:.2f}x the limit**" for r in runs)
    section = f"""
Data: {p.threads} real conversations of {p.turns} turns (subgraph, the last turn left at its interrupt),
{checkpoints:,} checkpoints (written by the app in {gen_s:.1f} s), copied from PostgreSQL 15 to a fresh
DynamoDB table on {" and on ".join(stores)} (same machine; S3 on moto).

{table}

Both paths read the same source and write the same server; the script is what a team writes
without the replicator (one `put` per checkpoint, one `put_writes` per task). The limit is the
server's own bulk write path with no replicator logic: the items `replicator copy` wrote, read
back and written again into a fresh table, 25 per `BatchWriteItem`, on as many threads as the
copy's workers (no source read, no encoding). `replicator copy` runs at {of_limit}.
Goals: at least {GOAL:.0f}x the savers' API and 0.8x the limit.
"""
    best = max(runs, key=lambda r: r["ratio"])
    return Result(
        key="copy-command",
        title="replicator copy against a migration script",
        measured="; ".join(
            f"{r['store']}: {r['ratio']:.1f}x the savers' API ({r['copy_rate']:,.0f} vs {r['api_rate']:,.0f} "
            f"checkpoints/s), {r['of_limit']:.2f}x the limit"
            for r in runs
        ),
        goal=f">= {GOAL:.0f}x, >= 0.8x the limit",
        met=best["ratio"] >= GOAL and best["of_limit"] >= 0.8,
        section=section,
        seconds=time.monotonic() - started,
        data={"runs": runs, "checkpoints": checkpoints},
    )


def _one(s: Services, p: Params, dsn: str, checkpoints: int, store: str, endpoint: str) -> dict[str, Any]:
    copied_table = s.unique("f8-copy")
    create_dynamodb_table(endpoint, copied_table)
    target = {"endpoint_url": endpoint, "s3_endpoint_url": s.moto.endpoint_url}
    config, _ = s.config(dsn, copied_table, topic=s.unique("unused"), target=target)
    state = MemoryStateStore()
    t0 = time.monotonic()
    first = run_copy(config, state, workers=p.workers)[0]
    copy_s = time.monotonic() - t0
    t0 = time.monotonic()
    second = run_copy(config, state, workers=p.workers)[0]
    again_s = time.monotonic() - t0

    from connectors.sinks.dynamodb import DynamoDBSink

    api_table = s.unique("f8-api")
    create_dynamodb_table(endpoint, api_table)
    api_sink = DynamoDBSink(
        "api",
        api_table,
        "us-east-1",
        endpoint_url=endpoint,
        s3_bucket="offload",
        s3_endpoint_url=s.moto.endpoint_url,
    )
    threads = [f"c{i}" for i in range(p.threads)]
    api_s = _through_api(dsn, api_sink.saver(), threads)
    api_sink.close()
    limit_s, items = _bulk_limit(s, endpoint, copied_table, p.workers)
    copy_rate, api_rate, limit_rate = checkpoints / copy_s, checkpoints / api_s, checkpoints / limit_s
    log(
        f"copy command on {store}: {first.copied} threads, {checkpoints} checkpoints in {copy_s:.2f}s "
        f"({copy_rate:,.0f}/s); savers' API {api_rate:,.0f}/s; {copy_rate / api_rate:.1f}x; limit "
        f"{limit_rate:,.0f}/s; second run {again_s:.2f}s "
        f"({second.copied} copied, {second.unchanged} unchanged)"
    )
    return {
        "store": store,
        "copy_s": copy_s,
        "api_s": api_s,
        "again_s": again_s,
        "limit_s": limit_s,
        "items": items,
        "copy_rate": copy_rate,
        "api_rate": api_rate,
        "limit_rate": limit_rate,
        "ratio": copy_rate / api_rate,
        "of_limit": copy_rate / limit_rate,
        "again_copied": second.copied,
        "again_unchanged": second.unchanged,
    }


def _bulk_limit(s: Services, endpoint: str, copied: str, workers: int) -> tuple[float, int]:
    """Seconds to write the copied table's items into a fresh table of the same server, prebuilt
    (scanned back, not timed), 25 per BatchWriteItem on ``workers`` threads; and the item count."""
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=copied):
        items.extend(page["Items"])
    dest = s.unique("f8-limit")
    create_dynamodb_table(endpoint, dest)
    batches = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(batch: list[dict[str, Any]]) -> None:
        pending = {dest: [{"PutRequest": {"Item": item}} for item in batch]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, batches))
    return time.monotonic() - started, len(items)
