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
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.env import CpuMeter, DaemonProcess, Services, log, wait_caught_up
from bench.report import Result, cores, fmt_rate, new_figure, pct, save
from replicator.state import PostgresStateStore


@dataclass
class Params:
    seconds: float = 40.0
    writers: int = 4
    rate: float = 250.0  # checkpoints/s, all writers together
    warmup: float = 5.0


# -------------------------------------------------------------------------------------- writers


def _writer(dsn: str, index: int, rate: float, seconds: float, start_at: float, counter: Any) -> None:
    """One app instance: conversations of one turn (8 checkpoints each), paced to ``rate``."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from replicator.embedded.demo_app import build_graph, run_conversation

    with data.connect(dsn) as conn:
        graph = build_graph(PostgresSaver(conn))
        per_conversation = 8
        interval = per_conversation / rate
        while time.time() < start_at:
            time.sleep(0.01)
        next_at = start_at
        n = 0
        while time.time() < start_at + seconds:
            run_conversation(graph, f"w{index}-{n}", turns=1)
            n += 1
            with counter.get_lock():
                counter.value += 1
            next_at += interval
            delay = next_at - time.time()
            if delay > 0:
                time.sleep(delay)


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
                        event = codec.decode_value(record.value)
                    except Exception:  # a piece of a split event: not timed
                        continue
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
    daemon.Applier = _recording_applier(samples)  # type: ignore[attr-defined, misc]
    cli.cli(["run", "--config", config_path])


# -------------------------------------------------------------------------------------- figure

Sample = tuple[float, float, float, float, str]  # commit, produced, polled, durable, table


def _read(samples: Path) -> list[Sample]:
    out = []
    for line in samples.read_text().splitlines():
        commit, produced, polled, durable, table = line.split(",")
        out.append((float(commit), float(produced), float(polled), float(durable), table))
    return out


@dataclass
class Run:
    rate: float
    samples: list[Sample]
    start_at: float
    conversations: int
    cpu: dict[str, float]
    drain_s: float
    batches: list[tuple[float, int, int]]  # polled, timed events, blob states looked up


def _read_batches(path: Path) -> list[tuple[float, int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        polled, events, lookups = line.split(",")
        out.append((float(polled), int(events), int(lookups)))
    return out


def _one(s: Services, p: Params, rate: float) -> Run:
    dsn = s.database("lag")
    data.setup(dsn)
    table = s.table("lag")
    topic = s.unique("bench.lag")
    config, path = s.config(dsn, table, topic=topic, partitions=4)
    samples = s.workdir / f"{topic}.csv"
    state = PostgresStateStore(dsn)
    counter = multiprocessing.Value("i", 0)
    with DaemonProcess(path, s.workdir / f"{topic}-daemon.log", "bench.lag", str(samples)) as daemon:
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
        pids = [w.pid for w in writers if w.pid]
        meter = CpuMeter(s.process_groups(daemon=lambda: [daemon.pid], writers=lambda: pids))
        time.sleep(max(0.0, start_at - time.time()))
        meter.start()
        time.sleep(max(0.0, start_at + p.seconds - 0.5 - time.time()))
        meter.stop()  # just before the writers exit, so that their CPU time is still readable
        for w in writers:
            w.join(120)
        drain_s = wait_caught_up(config, state, timeout=600, alive=daemon.alive)
    state.close()
    rows = _read(samples)
    log(f"lag: {rate:.0f}/s: {len(rows):,} events timed; caught up {drain_s:.1f}s after the writers stopped")
    return Run(
        rate,
        rows,
        start_at,
        counter.value,
        meter.shares(),
        drain_s,
        _read_batches(samples.with_suffix(".batches")),
    )


def run_rates(s: Services, p: Params, rates: list[float], outdir: Any) -> Result:
    started = time.monotonic()
    runs = [_one(s, p, rate) for rate in rates]
    return _report(runs, p, outdir, time.monotonic() - started)


def _window(run: Run, p: Params) -> list[Sample]:
    return [x for x in run.samples if run.start_at + p.warmup <= x[0] <= run.start_at + p.seconds]


def _report(runs: list[Run], p: Params, outdir: Any, seconds: float) -> Result:
    fig, ax = new_figure("Source commit to durable in DynamoDB, per second of commit time")
    for run, color in zip(runs, ("#1f77b4", "#2ca02c", "#9467bd"), strict=False):
        buckets: dict[int, list[float]] = {}
        for c, _, _, d, _ in run.samples:
            buckets.setdefault(int(c - run.start_at), []).append((d - c) * 1000)
        xs = sorted(buckets)
        label = f"{run.rate:.0f} checkpoints/s"
        ax.plot(xs, [pct(buckets[x], 50) for x in xs], "-", color=color, label=f"p50, {label}")
        ax.plot(xs, [pct(buckets[x], 99) for x in xs], "--", color=color, label=f"p99, {label}")
        ax.plot(xs, [max(buckets[x]) for x in xs], ":", color=color, label=f"max, {label}")
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
    head = None
    summary: list[dict[str, Any]] = []
    for run in runs:
        w = _window(run, p)
        lags = [(d - c) * 1000 for c, _, _, d, _ in w]
        span = max(1e-6, p.seconds - p.warmup)
        cp_rate = sum(1 for x in w if x[4] == "checkpoints") / span
        row = {
            "rate": cp_rate,
            "events": len(w) / span,
            "p50": pct(lags, 50),
            "p90": pct(lags, 90),
            "p99": pct(lags, 99),
            "max": max(lags, default=0.0),
        }
        head = head or row
        table.append(
            f"| {run.rate:.0f} | **{cp_rate:.0f}** ({fmt_rate(row['events'])} events/s) | "
            f"{row['p50']:.0f} ms | {row['p90']:.0f} ms | **{row['p99']:.0f} ms** | {row['max']:.0f} ms | "
            f"{run.drain_s:.1f} s |"
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
                f"| {run.rate:.0f} | {label} | {pct(values, 50):.0f} ms | {pct(values, 99):.0f} ms |"
            )
        data_batches = [b for b in run.batches if b[1]]
        lookups = sum(b[2] for b in run.batches)
        looked_up = sum(1 for b in data_batches if b[2])
        prefetch.append(
            f"| {run.rate:.0f} | {run.conversations:,} | {lookups:,} | "
            f"{lookups / max(1, run.conversations):.1f} | {looked_up:,} of {len(data_batches):,} |"
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
        stages.append(f"| {run.rate:.0f} | _average cores used while writing: {cores(run.cpu)}_ | | |")
    assert head is not None
    section = f"""
Load: {p.writers} writer processes, each an instance of the real LangGraph app writing through
`PostgresSaver` (one-turn conversations: 8 checkpoints with their blobs and pending writes), paced
to a total rate for {p.seconds:.0f} s while the daemon replicates; the first {p.warmup:.0f} s are
warm-up and not counted. Lag is per change event: Postgres' commit timestamp to the moment
`DynamoDBSink.apply` returned for the batch holding it (the daemon in these runs is the real one with
a timing wrapper around its applier; see `bench/lag.py`).

| paced checkpoints/s | measured checkpoints/s | p50 | p90 | p99 | max | caught up after the load |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(table)}

Where the time goes (per event; the record's Kafka CreateTime and the applier's poll time split it):

| paced | stage | p50 | p99 |
|---:|---|---:|---:|
{chr(10).join(stages)}

Blob lookups of the sink (`DynamoDBSink.blob_lookups`: the blob states its prefetch read from the
table with `BatchGetItem` before writing a batch; whole run, drain included):

| paced | conversations | blob states looked up | per conversation | batches with a lookup |
|---:|---:|---:|---:|---:|
{chr(10).join(prefetch)}
"""
    return Result(
        key="lag",
        title="End-to-end lag under app load",
        measured=f"p50 {head['p50']:.0f} ms, p99 {head['p99']:.0f} ms, max {head['max']:.0f} ms "
        f"at {head['rate']:.0f} checkpoints/s",
        goal="p99 < 200 ms at >= 200 checkpoints/s",
        met=head["p99"] < 200 and head["rate"] >= 200,
        section=section,
        plots=[plot],
        seconds=seconds,
        data={"runs": summary, **head},
    )


if __name__ == "__main__":
    main()
