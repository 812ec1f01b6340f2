"""Figure 1, initial copy: the replicator's snapshot versus copying through the savers' public API.

Same data, same moto target:

* baseline: what a migration script written against the public API does, one thread after
  another: ``PostgresSaver.list(thread)``, then ``DynamoDBSaver.put`` for every checkpoint and
  ``put_writes`` for its pending writes (grouped by task). It runs on an evenly spread sample of the
  threads (``--baseline-threads``; every thread has the same shape, so time scales with the
  checkpoint count) and its rate is extrapolated to the whole data set.
* replicator: ``replicator run`` as a child process on the same database, timed from process start
  until ``replicator status`` says the target caught up (``status.collect``: every partition applied
  up to the source head) -- group join, snapshot, Kafka and apply all included.
* snapshot capture only: the snapshot reader (keyset chunks, rows to events) and the Kafka encoding,
  without Kafka or a target: the upper bound the rest of the pipeline could reach.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver

from bench import data, profile
from bench.env import CpuMeter, DaemonProcess, Sampler, Services, log, rss_mib, wait_caught_up
from bench.report import Result, bar_chart, cores, fmt_rate, md_table
from connectors.sources.postgres.snapshot import read_snapshot
from connectors.sources.snapshot_progress import SnapshotCursor
from replicator import codec
from replicator.state import SOURCE_STATE, PostgresStateStore


@dataclass
class Params:
    threads: int = 2000
    real_threads: int = 200
    turns: int = 2
    baseline_threads: int = 200
    profile: bool = False  # py-spy slows the timed copy: the daemon profile comes from figure 4


def _baseline(dsn: str, s: Services, threads: list[str]) -> dict[str, float]:
    from langgraph_checkpoint_aws import DynamoDBSaver

    table = s.table("baseline")
    target = DynamoDBSaver(
        table_name=table,
        region_name="us-east-1",
        endpoint_url=s.moto.endpoint_url,
        s3_offload_config={"bucket_name": "offload", "endpoint_url": s.moto.endpoint_url},
    )
    checkpoints = writes = 0
    t0 = time.monotonic()
    with data.connect(dsn) as conn:
        source = PostgresSaver(conn)
        for thread_id in threads:
            for tup in source.list({"configurable": {"thread_id": thread_id}}):
                conf = tup.config["configurable"]
                parent: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": conf["checkpoint_ns"]}
                if tup.parent_config is not None:
                    parent["checkpoint_id"] = tup.parent_config["configurable"]["checkpoint_id"]
                saved = target.put(
                    {"configurable": parent},
                    tup.checkpoint,
                    tup.metadata,
                    tup.checkpoint["channel_versions"],
                )
                checkpoints += 1
                by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
                for task_id, channel, value in tup.pending_writes or ():
                    by_task[task_id].append((channel, value))
                for task_id, task_writes in by_task.items():
                    target.put_writes(saved, task_writes, task_id)
                    writes += len(task_writes)
    return {"seconds": time.monotonic() - t0, "checkpoints": checkpoints, "writes": writes}


def _capture_only(dsn: str, chunk_rows: int) -> dict[str, float]:
    """Snapshot reader alone, then reader + Kafka encoding, no broker or target involved."""
    out: dict[str, float] = {}
    for label, encode in (("read", False), ("read+encode", True)):
        events = 0
        t0 = time.monotonic()
        with psycopg.connect(dsn) as conn:
            for chunk in read_snapshot(
                conn, schema="public", start=SnapshotCursor(0, None), position=1, chunk_rows=chunk_rows
            ):
                events += len(chunk.events)
                if encode:
                    for event in chunk.events:
                        codec.encode(event, 1_000_000)
        out[label] = events / (time.monotonic() - t0)
        out["events"] = events
    return out


def _replicate(s: Services, dsn: str, p: Params) -> dict[str, Any]:
    table = s.table("copy")
    config, path = s.config(dsn, table, topic="bench.copy", partitions=4)
    state = PostgresStateStore(dsn)
    rss: list[float] = []
    result: dict[str, Any] = {}
    with DaemonProcess(path, s.workdir / "copy-daemon.log") as daemon:
        sampler = Sampler(lambda: rss.append(rss_mib(daemon.pid) or 0.0), 0.5)
        sampler.start()
        meter = CpuMeter(s.process_groups(daemon=lambda: [daemon.pid])).start()
        t0 = time.monotonic()
        with contextlib.ExitStack() as stack:
            prof = stack.enter_context(profile.record(daemon.pid, profile.path("copy"))) if p.profile else []
            while (state.get(SOURCE_STATE) or {}).get("snapshot") != "done":
                if not daemon.alive():
                    raise RuntimeError(f"copy daemon exited:\n{daemon.tail()}")
                time.sleep(0.05)
            result["snapshot_s"] = time.monotonic() - t0
            # Caught up: the target applied what the source had at the end of the copy.
            wait_caught_up(config, state, timeout=1800, alive=daemon.alive)
            result["copy_s"] = time.monotonic() - t0
            meter.stop()
        sampler.stop()
    result["cpu"] = meter.shares()
    result["rss_max"] = max(rss, default=0.0)
    result["events"] = int((state.get("applier:dynamo") or {}).get("events", 0))
    state.close()
    if prof:
        result["profile"] = prof[0]
    return result


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("copy")
    data.setup(dsn)
    gen_s = data.generate_real(dsn, "r", p.real_threads, p.turns)
    clone_s = data.clone(dsn, "r", "c", 0, max(0, p.threads - p.real_threads))
    c = data.counts(dsn)
    log(f"copy: {c['threads']} threads, {c['rows']:,} rows (real app {gen_s:.1f}s, clone {clone_s:.1f}s)")

    capture = _capture_only(dsn, 2000)
    log(f"copy: snapshot capture only {capture['read']:,.0f} events/s")

    with data.connect(dsn) as conn:
        ids = [r["thread_id"] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()]
    ids.sort()
    step = max(1, len(ids) // max(1, p.baseline_threads))
    sample = ids[::step][: p.baseline_threads]
    base = _baseline(dsn, s, sample)
    base_rate = base["checkpoints"] / base["seconds"]
    base_est_s = c["checkpoints"] / base_rate
    log(f"copy: baseline {base['checkpoints']} checkpoints in {base['seconds']:.1f}s ({base_rate:,.0f}/s)")

    rep = _replicate(s, dsn, p)
    rep_rate = c["checkpoints"] / rep["copy_s"]
    ratio = rep_rate / base_rate
    log(f"copy: replicator {rep['copy_s']:.1f}s (snapshot {rep['snapshot_s']:.1f}s), ratio {ratio:.1f}x")
    prof = rep.get("profile")

    plot = bar_chart(
        "copy.png",
        f"Initial copy, {c['threads']:,} threads x {c['checkpoints'] / c['threads']:.0f} checkpoints: "
        f"{ratio:.2f}x",
        ["savers' API\n(list + put)", "replicator\n(start to caught up)", "snapshot read\n(no Kafka/target)"],
        [base_rate, rep_rate, capture["read"] * c["checkpoints"] / c["rows"]],
        "checkpoints/s (with their blobs and writes)",
        outdir,
    )
    per_cp = c["rows"] / c["checkpoints"]
    table = md_table(
        ["path", "time", "checkpoints/s", "rows/s"],
        [
            [
                f"savers' API, {len(sample)} sampled threads ({base['checkpoints']:,} checkpoints, "
                f"{base['writes']:,} writes)",
                f"{base['seconds']:.1f} s",
                fmt_rate(base_rate),
                fmt_rate(base_rate * per_cp),
            ],
            [f"savers' API, extrapolated to all {c['threads']:,} threads", f"{base_est_s:.0f} s", "", ""],
            [
                "**replicator**, daemon start to target caught up",
                f"{rep['copy_s']:.1f} s",
                f"**{fmt_rate(rep_rate)}**",
                fmt_rate(c["rows"] / rep["copy_s"]),
            ],
            [
                "of which: snapshot captured and acknowledged by Kafka",
                f"{rep['snapshot_s']:.1f} s",
                "",
                fmt_rate(c["rows"] / rep["snapshot_s"]),
            ],
            ["snapshot read only (no Kafka, no target)", "", "", fmt_rate(capture["read"])],
            ["snapshot read + Kafka record encoding", "", "", fmt_rate(capture["read+encode"])],
        ],
    )
    section = f"""
Data: {c["threads"]:,} threads, {c["checkpoints"]:,} checkpoints ({c["checkpoints"] / c["threads"]:.1f} per
thread, in the root and a subgraph namespace), {c["checkpoint_blobs"]:,} blobs, {c["checkpoint_writes"]:,}
pending writes on {c["checkpoints_with_writes"]:,} checkpoints: {c["rows"]:,} rows. {p.real_threads} threads
were written by the real LangGraph app ({p.turns} turns, the last one left at its interrupt) in
{gen_s:.1f} s; the other {c["threads"] - p.real_threads:,} are SQL copies of them under new thread ids
(`INSERT ... SELECT`, {clone_s:.1f} s).

{table}

**Replicator / savers' API = {ratio:.2f}x** (goal: at least 10x). The replicator's time includes
process start, the consumer-group join (about 3 s with `session_timeout_ms=6000` on this broker) and
the wait for the last batch. Daemon peak RSS during the copy: {rep["rss_max"]:.0f} MiB.

Average cores used during the replicator copy: {cores(rep["cpu"])}. moto, a single Python process,
does most of the work on both paths; the baseline pays it one request per item (`PutItem` for each
checkpoint, payload chunk and write), the replicator one `BatchWriteItem` per 25 items.
"""
    result = Result(
        key="copy",
        title="Initial copy vs savers' API",
        measured=f"{ratio:.2f}x ({fmt_rate(rep_rate)} vs {fmt_rate(base_rate)} checkpoints/s)",
        goal=">= 10x",
        met=ratio >= 10,
        section=section,
        plots=[plot],
        seconds=time.monotonic() - started,
        data={
            "ratio": ratio,
            "rate": rep_rate,
            "base_rate": base_rate,
            "counts": c,
            "baseline": base,
            "replicator": rep,
            "capture": capture,
        },
    )
    if prof is not None:
        result.data["profile"] = prof
    return result
