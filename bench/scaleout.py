"""Figure 5, scale-out: applier throughput with 1, 2 and 4 consumers of one group.

A multi-partition topic is filled once with the initial copy of a data set (the publisher alone,
before any applier runs). Then, for each consumer count, that many applier processes (the real
``replicator.applier.Applier`` over the real ``DynamoDBSink``, one consumer group, a fresh
DynamoDB table each time) drain the whole topic; throughput counts the records committed after
every member applied its first batch, so process start and group joins stay out of it.

The same runs are repeated with a *planning-only* sink (bench-only: ``DynamoDBSink`` whose
DynamoDB/S3 calls are replaced by no-ops), which shows what the appliers themselves can do
without the target: consume, decode, reassemble, plan the items.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench import data
from bench.env import CpuMeter, Services, fill_topic, log
from bench.report import Result, cores, fmt_rate, new_figure, save
from replicator.state import PostgresStateStore, applier_positions


@dataclass
class Params:
    events: int = 60_000
    partitions: int = 8
    consumers: tuple[int, ...] = (1, 2, 4)
    null_sink: bool = True
    timeout: float = 300.0


def main() -> None:
    """``python -m bench.scaleout CONFIG TARGET [null]``: one applier process until SIGTERM."""
    from connectors.registry import make_sink
    from replicator import logs
    from replicator.applier import Applier
    from replicator.config import load_config

    config = load_config(sys.argv[1])
    logs.configure("json", "warning")
    target = config.target(sys.argv[2])
    sink: Any = make_sink(target)
    if len(sys.argv) > 3 and sys.argv[3] == "null":
        sink._execute = lambda plan: None
        sink._read_blobs = lambda refs: {}
    state = PostgresStateStore(config.source.dsn.get_secret_value())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    first: list[float] = []

    def on_batch(events: int, seconds: float, commit_ts: float) -> None:
        if not first:  # tells the parent this member has joined and applies
            first.append(time.time())
            print(f"first-batch {first[0]:.6f}", flush=True)

    try:
        Applier(sink, config.kafka, state, batch_events=target.batch_events, on_batch=on_batch).run(stop)
    finally:
        sink.close()
        state.close()


def _drain(
    s: Services, path: Any, dsn: str, target: str, n: int, total: int, null: bool, p: Params
) -> dict[str, Any]:
    import subprocess

    state = PostgresStateStore(dsn)
    logs = [(s.workdir / f"scaleout-{target}-{i}.log").open("ab") for i in range(n)]
    args = [sys.executable, "-m", "bench.scaleout", str(path), target, *(["null"] if null else [])]
    procs = [subprocess.Popen(args, stdout=log_, stderr=subprocess.STDOUT) for log_ in logs]
    meter = CpuMeter(s.process_groups(appliers=lambda: [pr.pid for pr in procs])).start()
    # (seconds, records committed, events applied): records tell when the topic is drained, events
    # are the rate (a record holds one or more of a thread's changes).
    samples: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    try:
        while True:
            positions = applier_positions(state, target).values()
            done = sum(int(v.get("offset", 0)) for v in positions)
            samples.append((time.monotonic() - t0, done, sum(int(v.get("events", 0)) for v in positions)))
            if done >= total:
                break
            if any(pr.poll() is not None for pr in procs):
                raise RuntimeError(f"an applier exited: see {s.workdir}")
            if time.monotonic() - t0 > p.timeout:
                raise TimeoutError(f"{n} appliers did not drain the topic in {p.timeout:.0f} s")
            time.sleep(0.1)
        meter.stop()
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(30)
            except subprocess.TimeoutExpired:
                pr.kill()
        for log_ in logs:
            log_.close()
        state.close()

    def crossing(fraction: float) -> float:
        return next(t for t, d, _ in samples if d >= fraction * total)

    # Every member has joined once each printed its first batch: measure from the last of them.
    joined_at = []
    for i in range(n):
        text = (s.workdir / f"scaleout-{target}-{i}.log").read_text(errors="replace")
        stamps = [float(line.split()[1]) for line in text.splitlines() if line.startswith("first-batch ")]
        joined_at.extend(stamps[:1])
    wall0 = time.time() - (time.monotonic() - t0)  # wall clock at t0
    t_joined = max(joined_at) - wall0 if len(joined_at) == n else crossing(0.1)
    events_joined = next((e for t, _, e in samples if t >= t_joined), samples[-1][2])
    end, events = samples[-1][0], samples[-1][2]
    return {
        "rate": (events - events_joined) / max(1e-6, end - t_joined),
        "measured_events": events - events_joined,
        "total_s": samples[-1][0],
        "first_s": crossing(0.001),
        "joined_s": t_joined,
        "cpu": meter.shares(),
    }


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("scaleout")
    data.setup(dsn)
    data.generate_real(dsn, "r", 50, 2)
    per_thread = data.events_per_thread(dsn, "r%")
    data.clone(dsn, "r", "c", 0, max(0, round(p.events / per_thread) - 50))
    series = {"dynamodb": [], "planning only": []} if p.null_sink else {"dynamodb": []}
    targets: list[dict[str, Any]] = []
    for kind in series:
        for n in p.consumers:
            table = s.table("scaleout")
            targets.append({"name": f"{'n' if kind != 'dynamodb' else 'd'}{n}", "table": table})
    config, path = s.config(dsn, targets[0]["table"], topic="bench.scaleout", partitions=p.partitions)
    # One config file naming every target, so each applier process picks its own.
    base = config.targets[0].model_dump()
    text = path.read_text().split("[[targets]]")[0]
    from bench.env import to_toml

    text += to_toml({"targets": [{**base, **t} for t in targets]})
    path.write_text(text)
    state = PostgresStateStore(dsn)
    filled = fill_topic(config, state)
    state.close()
    total = filled["records"]
    log(f"scaleout: {filled['events']:,} events ({total:,} records) in Kafka in {filled['seconds']:.1f}s")
    results: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in series}
    tables = {t["name"]: t["table"] for t in targets}
    for kind in series:
        for n in p.consumers:
            name = f"{'n' if kind != 'dynamodb' else 'd'}{n}"
            r = _drain(s, path, dsn, name, n, total, kind != "dynamodb", p)
            if kind == "dynamodb":
                r["items_per_event"] = _item_count(s, tables[name]) / filled["events"]
            results[kind][n] = r
            log(f"scaleout: {kind}, {n} consumers: {r['rate']:,.0f} events/s, cpu {r['cpu']}")
    result = _report(results, filled, p, outdir, time.monotonic() - started)
    ddb = results["dynamodb"]
    items = ", ".join(f"{ddb[n]['rate'] * ddb[n]['items_per_event']:,.0f}" for n in sorted(ddb))
    result.section += (
        f"\nEach event became {ddb[min(ddb)]['items_per_event']:.1f} DynamoDB items (counted in each run's "
        f"table): the appliers wrote {items} items/s with {', '.join(str(n) for n in sorted(ddb))} "
        "consumers.\n"
    )
    return result


def _item_count(s: Services, table: str) -> int:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=s.moto.endpoint_url, region_name="us-east-1")
    return int(client.describe_table(TableName=table)["Table"].get("ItemCount", 0))


def _report(
    results: dict[str, dict[int, dict[str, Any]]],
    filled: dict[str, Any],
    p: Params,
    outdir: Any,
    seconds: float,
) -> Result:
    fig, ax = new_figure("Applier throughput by consumers in one group")
    for kind, runs in results.items():
        xs = sorted(runs)
        ax.plot(xs, [runs[n]["rate"] for n in xs], "o-", label=kind)
    ax.set_xticks(list(p.consumers))
    ax.set_xlabel("applier processes (consumers in the group)")
    ax.set_ylabel("events/s once all joined")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    plot = save(fig, "scaleout.png", outdir)
    lines = []
    for kind, runs in results.items():
        one = runs[min(runs)]["rate"]
        for n in sorted(runs):
            r = runs[n]
            cpu = cores(r["cpu"])
            lines.append(
                f"| {kind} | {n} | {fmt_rate(r['rate'])} | {r['rate'] / one:.2f}x | {r['joined_s']:.1f} s | "
                f"{r['measured_events']:,} | {r['total_s']:.1f} s | {cpu} |"
            )
    ddb = results["dynamodb"]
    best = max(ddb)  # the most consumers measured: the headline is what adding them gave
    speedup = ddb[best]["rate"] / ddb[min(ddb)]["rate"]
    section = f"""
Topic: {p.partitions} partitions holding the initial copy of {filled["events"]:,} change events
({filled["records"]:,} records with the control records), produced by the publisher alone before
any applier started. Each run: N applier processes in one consumer group (`session_timeout_ms=6000`),
a fresh DynamoDB table, until every partition's committed offset reached the end.

| sink | consumers | events/s | vs 1 | all joined | events measured | drained | average cores used |
|---|---:|---:|---:|---:|---:|---:|---|
{chr(10).join(lines)}

"all joined": seconds from process start until every member had applied its first batch (process
start, group join, rebalances); the rate counts only the events applied after that, to the end (a
record holds one or more of a thread's changes, so events, not records, are the unit).
"average cores" covers the whole run, joins included.
"""
    return Result(
        key="scaleout",
        title="Scale-out of appliers",
        measured=f"{speedup:.2f}x with {best} consumers vs 1 ({fmt_rate(ddb[best]['rate'])} vs "
        f"{fmt_rate(ddb[min(ddb)]['rate'])} events/s)",
        goal="(report what limits)",
        met=None,
        section=section,
        plots=[plot],
        seconds=seconds,
        data={"results": results},
    )


if __name__ == "__main__":
    main()
