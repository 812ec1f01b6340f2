"""Figure 3, end-to-end lag under a sustained app load: source commit to target durable.

Several writer processes run the real LangGraph app (``replicator.embedded.demo_app``) through
``PostgresSaver`` at a paced total rate of checkpoints per second, while the daemon replicates.
The daemon is the real one (``replicator run`` in a child process), with one bench-only addition:
its ``Applier`` is subclassed to time every data event of every batch: Postgres' commit timestamp
(in the event), the Kafka record's CreateTime (handed to the producer), the applier's ``poll`` and
the return of ``DynamoDBSink.apply`` (durable in the target). Same machine, same clock. Lag is
measured per change event, not per checkpoint: a checkpoint's blobs and writes count too. It also
counts, per batch, the blob states the sink looked up in the table (``DynamoDBSink.blob_lookups``:
the keys of its ``BatchGetItem`` prefetch).

Each load runs on two DynamoDB implementations, moto and dynalite (a second one, faster per
request; S3 stays on moto), each beside its **floor**: the same writer processes at the same rate
writing the same conversations straight into that store through its own LangGraph saver
(``DynamoDBSaver``), no replicator, timing each ``put`` and ``put_writes``. On two cores the store,
Postgres, the writers and the daemon share the CPU: the floor says what the store alone costs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.env import CpuMeter, DaemonProcess, Services, Store, dynamodb_stores, log, wait_caught_up
from bench.report import Result, cores, fmt_rate, new_figure, pct, save
from replicator.embedded import create_dynamodb_table
from replicator.state import PostgresStateStore


@dataclass
class Params:
    seconds: float = 30.0
    writers: int = 4
    rate: float = 200.0  # checkpoints/s, all writers together
    warmup: float = 5.0
    stores: tuple[str, ...] = ("moto", "dynalite")
    # "all": one `replicator run` (capture and apply share a process); "split": `--role capture`
    # and `--role apply` in two processes, as the deploy files run them.
    roles: tuple[str, ...] = ("all", "split")
    appliers: int = 1  # apply processes when split (one consumer group)


# -------------------------------------------------------------------------------------- writers


def _paced(
    graph: Any, prefix: str, rate: float, seconds: float, start_at: float, counter: Any = None
) -> None:
    """One-turn conversations (8 checkpoints each) from ``start_at`` for ``seconds``, paced to
    ``rate`` checkpoints/s: the load of both the replicated app and the floor."""
    from replicator.embedded.demo_app import run_conversation

    interval = 8 / rate
    while time.time() < start_at:
        time.sleep(0.01)
    next_at, n = start_at, 0
    while time.time() < start_at + seconds:
        run_conversation(graph, f"{prefix}-{n}", turns=1)
        n += 1
        if counter is not None:
            with counter.get_lock():
                counter.value += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.time()))


def _writer(dsn: str, index: int, rate: float, seconds: float, start_at: float, counter: Any) -> None:
    """One app instance writing through ``PostgresSaver``, paced to ``rate``."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from replicator.embedded.demo_app import build_graph

    with data.connect(dsn) as conn:
        _paced(build_graph(PostgresSaver(conn)), f"w{index}", rate, seconds, start_at, counter)


def _floor_writer(
    endpoint: str,
    s3_endpoint: str,
    table: str,
    index: int,
    rate: float,
    seconds: float,
    start_at: float,
    out: str,
) -> None:
    """The same app and pace as ``_writer``, writing straight into DynamoDB through its own saver
    (as the DynamoDB target builds it); every ``put`` / ``put_writes`` timed (start time,
    seconds), written to ``out``."""
    from connectors.sinks.dynamodb import DynamoDBSink
    from replicator.embedded.demo_app import build_graph

    sink = DynamoDBSink(
        "floor", table, "us-east-1", endpoint_url=endpoint, s3_bucket="offload", s3_endpoint_url=s3_endpoint
    )
    saver = sink.saver()
    timings: list[tuple[float, float]] = []
    for name in ("put", "put_writes"):
        inner = getattr(saver, name)

        def timed(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            t0, w0 = time.perf_counter(), time.time()
            result = _inner(*args, **kwargs)
            timings.append((w0, time.perf_counter() - t0))
            return result

        setattr(saver, name, timed)
    _paced(build_graph(saver), f"f{index}", rate, seconds, start_at)
    sink.close()
    Path(out).write_text("".join(f"{w:.6f},{d:.6f}\n" for w, d in timings))


# -------------------------------------------------------------------------------------- daemon side


def _recording_applier(out: Path) -> type:
    """An ``Applier`` that also writes, for every data event of every batch: its source commit
    time, when it was handed to the Kafka producer (the record's CreateTime), when the applier got
    it from ``poll``, and when ``sink.apply`` returned (durable in the target); and, per batch, in
    ``out`` with the suffix ``.batches``: the blob states the sink looked up (``BatchGetItem`` keys)."""
    from replicator import codec
    from replicator.applier import Applier

    stream = out.open("a", buffering=1 << 16)
    batches = out.with_suffix(".batches").open("a", buffering=1 << 12)

    class TimedSink:
        def __init__(self, sink: Any) -> None:
            self._sink = sink
            self.durable_at = 0.0

        def lookups(self) -> int:
            return int(getattr(self._sink, "blob_lookups", 0))

        def apply(self, events: Any) -> None:
            self._sink.apply(events)
            self.durable_at = time.time()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._sink, name)

    class RecordingApplier(Applier):  # type: ignore[misc, valid-type]
        def __init__(self, sink: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(TimedSink(sink), *args, **kwargs)

        def _apply(self, batch: Any) -> None:
            polled = time.time()
            seen = []
            for records in batch.values():
                for record in records:
                    try:
                        decoded = codec.decode_record(record.value, record.headers)
                    except Exception:  # a piece of a split event: not timed
                        continue
                    for event in decoded:
                        source = event.source
                        if source.commit_ts and not source.snapshot and not hasattr(event, "kind"):
                            seen.append((source.commit_ts, record.timestamp / 1000, source.table))
            sink: Any = self.sink  # the TimedSink
            lookups = sink.lookups()
            super()._apply(batch)
            durable = sink.durable_at
            stream.writelines(f"{c:.6f},{p:.6f},{polled:.6f},{durable:.6f},{t}\n" for c, p, t in seen)
            stream.flush()
            batches.write(f"{polled:.6f},{len(seen)},{sink.lookups() - lookups}\n")
            batches.flush()

    return RecordingApplier


def main() -> None:
    """``python -m bench.lag CONFIG SAMPLES``: the real daemon, its appliers timing each event."""
    from replicator import cli, daemon

    config_path, samples = sys.argv[1], Path(sys.argv[2])
    samples = Path(f"{samples}.{os.getpid()}.csv")  # one file per apply process
    daemon.Applier = _recording_applier(samples)  # type: ignore[attr-defined, misc]
    cli.cli(["run", "--config", config_path, *sys.argv[3:]])


# -------------------------------------------------------------------------------------- figure

Sample = tuple[float, float, float, float, str]  # commit, produced, polled, durable, table


def _read(samples: Path) -> list[Sample]:
    out = []
    lines = [
        line for f in samples.parent.glob(f"{samples.name}.*.csv") for line in f.read_text().splitlines()
    ]
    for line in lines:
        commit, produced, polled, durable, table = line.split(",")
        out.append((float(commit), float(produced), float(polled), float(durable), table))
    return out


@dataclass
class Run:
    store: str
    roles: str
    rate: float
    samples: list[Sample]
    start_at: float
    conversations: int
    cpu: dict[str, float]
    drain_s: float
    batches: list[tuple[float, int, int]]  # polled, timed events, blob states looked up
    floor_ms: list[float]  # put / put_writes straight into the store, same load, in the window


def _read_batches(samples: Path) -> list[tuple[float, int, int]]:
    out = []
    lines = [
        line for f in samples.parent.glob(f"{samples.name}.*.batches") for line in f.read_text().splitlines()
    ]
    for line in lines:
        polled, events, lookups = line.split(",")
        out.append((float(polled), int(events), int(lookups)))
    return out


def _one(
    s: Services, p: Params, rate: float, store: Store, roles: str, floors: dict[Any, list[float]]
) -> Run:
    dsn = s.database("lag")
    data.setup(dsn)
    table = s.unique("lag")
    create_dynamodb_table(store.endpoint, table)
    topic = s.unique("bench.lag")
    config, path = s.config(
        dsn,
        table,
        topic=topic,
        partitions=4,
        target={"endpoint_url": store.endpoint, "s3_endpoint_url": s.moto.endpoint_url},
    )
    samples = s.workdir / f"{topic}.csv"
    state = PostgresStateStore(dsn)
    counter = multiprocessing.Value("i", 0)
    with contextlib.ExitStack() as stack:
        log_path = s.workdir / f"{topic}-daemon.log"
        if roles == "split":  # the capture role alone in one process, the timed applier in another
            capture = stack.enter_context(
                DaemonProcess(path, log_path, "replicator.cli", "--role", "capture")
            )
            appliers = [
                stack.enter_context(
                    DaemonProcess(
                        path, log_path, "bench.lag", str(samples), "--role", "apply", "--target", "dynamo"
                    )
                )
                for _ in range(p.appliers)
            ]
            daemon = appliers[0]
            pids: Callable[[], list[int]] = lambda: [capture.pid, *(a.pid for a in appliers)]  # noqa: E731
        else:
            daemon = stack.enter_context(DaemonProcess(path, log_path, "bench.lag", str(samples)))
            pids = lambda: [daemon.pid]  # noqa: E731
        # Empty source: the copy is instant; wait until the daemon streams.
        while (state.get("source") or {}).get("snapshot") != "done":
            if not daemon.alive():
                raise RuntimeError(f"lag daemon exited:\n{daemon.tail()}")
            time.sleep(0.05)
        wait_caught_up(config, state, timeout=120, alive=daemon.alive)
        ctx = multiprocessing.get_context("fork")
        start_at = time.time() + 2.0
        writers = [
            ctx.Process(target=_writer, args=(dsn, i, rate / p.writers, p.seconds, start_at, counter))
            for i in range(p.writers)
        ]
        for w in writers:
            w.start()
        writer_pids = [w.pid for w in writers if w.pid]
        groups = s.process_groups(daemon=pids, writers=lambda: writer_pids)
        if store.name != "moto":
            groups[store.name] = store.pids
        meter = CpuMeter(groups)
        time.sleep(max(0.0, start_at - time.time()))
        meter.start()
        time.sleep(max(0.0, start_at + p.seconds - 0.5 - time.time()))
        meter.stop()  # just before the writers exit, so that their CPU time is still readable
        for w in writers:
            w.join(120)
        drain_s = wait_caught_up(config, state, timeout=600, alive=daemon.alive)
    state.close()
    rows = _read(samples)
    log(
        f"lag on {store.name}: {rate:.0f}/s: {len(rows):,} events timed; caught up {drain_s:.1f}s "
        "after the writers stopped"
    )
    if (store.name, rate) not in floors:  # one floor per store and load, whatever the roles
        floors[store.name, rate] = _floor(s, p, rate, store)
    floor = floors[store.name, rate]
    log(f"floor on {store.name}: {rate:.0f}/s: p50 {pct(floor, 50):.0f} ms, p99 {pct(floor, 99):.0f} ms")
    return Run(
        store.name,
        roles,
        rate,
        rows,
        start_at,
        counter.value,
        meter.shares(),
        drain_s,
        _read_batches(samples),
        floor,
    )


def _floor(s: Services, p: Params, rate: float, store: Store) -> list[float]:
    """Milliseconds of each saver call of the same load written straight into ``store``."""
    table = s.unique("floor")
    create_dynamodb_table(store.endpoint, table)
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 2.0
    outs = [s.workdir / f"{table}-{i}.csv" for i in range(p.writers)]
    writers = [
        ctx.Process(
            target=_floor_writer,
            args=(
                store.endpoint,
                s.moto.endpoint_url,
                table,
                i,
                rate / p.writers,
                p.seconds,
                start_at,
                str(out),
            ),
        )
        for i, out in enumerate(outs)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(p.seconds + 120)
    window = (start_at + p.warmup, start_at + p.seconds)
    out_ms = []
    for out in outs:
        for line in out.read_text().splitlines() if out.exists() else []:
            started, seconds = map(float, line.split(","))
            if window[0] <= started <= window[1]:
                out_ms.append(seconds * 1000)
    return out_ms


def run_rates(s: Services, p: Params, rates: list[float], outdir: Any) -> Result:
    started = time.monotonic()
    with dynamodb_stores(s, p.stores) as stores:
        floors: dict[Any, list[float]] = {}
        runs = [
            _one(s, p, rate, store, roles, floors) for store in stores for roles in p.roles for rate in rates
        ]
    return _report(runs, p, outdir, time.monotonic() - started)


def _window(run: Run, p: Params) -> list[Sample]:
    return [x for x in run.samples if run.start_at + p.warmup <= x[0] <= run.start_at + p.seconds]


_LAG_HEADER = (
    "| store | roles | paced checkpoints/s | measured checkpoints/s | p50 | p90 | p99 | max | floor p50 "
    "| floor p99 | caught up after the load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)
_BATCH_HEADER = (
    "| run | conversations | batches with data | timed events per batch | blob states looked up "
    "| per conversation | batches with a lookup |\n|---|---:|---:|---:|---:|---:|---:|"
)


def _label(run: Run) -> str:
    return f"{run.store}, {run.roles}, {run.rate:.0f}/s"


def _report(runs: list[Run], p: Params, outdir: Any, seconds: float) -> Result:
    fig, ax = new_figure("Source commit to durable in DynamoDB, per second of commit time")
    colors = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")
    for run, color in zip(runs, colors, strict=False):
        buckets: dict[int, list[float]] = {}
        for c, _, _, d, _ in run.samples:
            buckets.setdefault(int(c - run.start_at), []).append((d - c) * 1000)
        xs = sorted(buckets)
        ax.plot(xs, [pct(buckets[x], 50) for x in xs], "-", color=color, label=f"p50, {_label(run)}")
        ax.plot(xs, [pct(buckets[x], 99) for x in xs], "--", color=color, label=f"p99, {_label(run)}")
        ax.axhline(
            pct(run.floor_ms, 99),
            color=color,
            linewidth=0.8,
            linestyle=":",
            label=f"floor p99, {_label(run)}",
        )
    ax.axhline(200, color="red", linewidth=0.8, alpha=0.6, label="goal p99 200 ms")
    ax.axvspan(0, p.warmup, color="grey", alpha=0.15, label="warm-up (not counted)")
    ax.set_xlabel("seconds since the writers started")
    ax.set_ylabel("lag (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    plot = save(fig, "lag.png", outdir)

    table = []
    stages = []
    prefetch = []
    summary: list[dict[str, Any]] = []
    for run in runs:
        w = _window(run, p)
        lags = [(d - c) * 1000 for c, _, _, d, _ in w]
        span = max(1e-6, p.seconds - p.warmup)
        cp_rate = sum(1 for x in w if x[4] == "checkpoints") / span
        row: dict[str, Any] = {
            "store": run.store,
            "roles": run.roles,
            "rate": cp_rate,
            "events": len(w) / span,
            "p50": pct(lags, 50),
            "p90": pct(lags, 90),
            "p99": pct(lags, 99),
            "max": max(lags, default=0.0),
            "floor_p50": pct(run.floor_ms, 50),
            "floor_p99": pct(run.floor_ms, 99),
        }
        table.append(
            f"| {run.store} | {run.roles} | {run.rate:.0f} | "
            f"**{cp_rate:.0f}** ({fmt_rate(row['events'])} events/s) | "
            f"{row['p50']:.0f} ms | {row['p90']:.0f} ms | **{row['p99']:.0f} ms** | {row['max']:.0f} ms | "
            f"{row['floor_p50']:.0f} ms | {row['floor_p99']:.0f} ms | {run.drain_s:.1f} s |"
        )
        parts = (
            ("commit to produced (source + publisher)", [(pr - c) * 1000 for c, pr, _, _, _ in w]),
            (
                "produced to polled (Kafka, queued behind the applier)",
                [(po - pr) * 1000 for _, pr, po, _, _ in w],
            ),
            ("polled to durable (sink apply of the batch)", [(d - po) * 1000 for _, _, po, d, _ in w]),
        )
        for label, values in parts:
            stages.append(
                f"| {_label(run)} | {label} | {pct(values, 50):.0f} ms | {pct(values, 99):.0f} ms |"
            )
        data_batches = [b for b in run.batches if b[1]]
        lookups = sum(b[2] for b in run.batches)
        looked_up = sum(1 for b in data_batches if b[2])
        prefetch.append(
            f"| {_label(run)} | {run.conversations:,} | {len(data_batches):,} | "
            f"{sum(b[1] for b in data_batches) / max(1, len(data_batches)):.0f} | {lookups:,} | "
            f"{lookups / max(1, run.conversations):.1f} | {looked_up:,} |"
        )
        summary.append(
            {
                **row,
                "paced": run.rate,
                "conversations": run.conversations,
                "lookups": lookups,
                "batches": len(data_batches),
                "batches_looked_up": looked_up,
                "drain_s": run.drain_s,
                "cpu": run.cpu,
                "stages_p50": [pct(values, 50) for _, values in parts],
                "stages_p99": [pct(values, 99) for _, values in parts],
            }
        )
        stages.append(f"| {_label(run)} | _average cores used while writing: {cores(run.cpu)}_ | | |")
    high = max((r.rate for r in runs), default=0.0)
    heads = [x for x in summary if x["paced"] == high]
    low = [x for x in summary if x["paced"] != high]
    measured = "; ".join(
        f"{x['store']} ({x['roles']}): p99 {x['p99']:.0f} ms at {x['rate']:.0f}/s "
        f"(floor p99 {x['floor_p99']:.0f} ms)"
        for x in heads
    )
    if low:
        measured += "; at " + ", ".join(
            f"{x['rate']:.0f}/s on {x['store']} ({x['roles']}): p99 {x['p99']:.0f} ms" for x in low
        )
    stores = " and ".join(dict.fromkeys(r.store for r in runs)) or "-"
    roles = " and ".join(
        dict.fromkeys(
            "one `replicator run` process (all)"
            if r.roles == "all"
            else f"`--role capture` + {p.appliers} `--role apply` process(es) (split)"
            for r in runs
        )
    )
    section = f"""
Load: {p.writers} writer processes, each an instance of the real LangGraph app writing through
`PostgresSaver` (one-turn conversations: 8 checkpoints with their blobs and pending writes), paced
to a total rate for {p.seconds:.0f} s while the daemon replicates; the first {p.warmup:.0f} s are
warm-up and not counted. Lag is per change event: Postgres' commit timestamp to the moment
`DynamoDBSink.apply` returned for the batch holding it (the daemon in these runs is the real one with
a timing wrapper around its applier; see `bench/lag.py`). DynamoDB on: {stores} (S3 on moto);
daemon: {roles}. **Floor**: right after each run, the same writers at the same rate write
the same conversations straight into that store through `DynamoDBSaver` (no Postgres, no
replicator), each `put` / `put_writes` timed: what one write into that store costs on this machine
under this load.

{_LAG_HEADER}
{chr(10).join(table)}

Where the time goes (per event; the record's Kafka CreateTime and the applier's poll time split it):

| run | stage | p50 | p99 |
|---|---|---:|---:|
{chr(10).join(stages)}

Batches and blob lookups of the sink (`DynamoDBSink.blob_lookups`: the blob states its prefetch
read from the table with `BatchGetItem` before writing a batch; whole run, drain included):

{_BATCH_HEADER}
{chr(10).join(prefetch)}
"""
    return Result(
        key="lag",
        title="End-to-end lag under app load",
        measured=measured,
        goal="p99 < 200 ms at >= 200 checkpoints/s; < 100 ms at 80",
        met=bool(heads)
        and all(x["p99"] < 200 and x["rate"] >= 0.95 * 200 for x in heads)
        and all(x["p99"] < 100 for x in low),
        section=section,
        plots=[plot],
        seconds=seconds,
        data={"runs": summary, **(heads[0] if heads else {})},
    )


if __name__ == "__main__":
    main()
