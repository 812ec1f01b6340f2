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
    config, _ = s.config(dsn, s.table("f8-copy"), topic=s.unique("unused"))
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
    copy_rate, api_rate = checkpoints / copy_s, checkpoints / api_s
    ratio = copy_rate / api_rate
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
without the replicator (one `put` per checkpoint, one `put_writes` per task). Goal: at least
{GOAL:.0f}x.
"""
    return Result(
        key="copy-command",
        title="replicator copy against a migration script",
        measured=f"{ratio:.1f}x the savers' API ({copy_rate:,.0f} vs {api_rate:,.0f} checkpoints/s)",
        goal=f">= {GOAL:.0f}x",
        met=ratio >= GOAL,
        section=section,
        seconds=time.monotonic() - started,
        data={"copy_s": copy_s, "api_s": api_s, "again_s": again_s, "checkpoints": checkpoints},
    )
