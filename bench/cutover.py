"""Figure 6, write pause at cutover: how long the app's writes wait while every app switches.

Writer processes run the real LangGraph app (``replicator.embedded.demo_app``) through
``RoutingSaver`` at a paced total rate, while the real daemon replicates. The bench then runs
``switches`` cutovers, each followed by a rollback (``run_cutover`` / ``run_rollback``, the
functions behind the commands), a second apart, with the writers going on throughout. The
pause of a switch is what its waiting writes saw: the fence taken (new writes wait) to the
record stored and the fence released. Every writer also times each of its saver calls, so the
longest write of the run is measured on the app's side too. At the end the stores are
verified equal (through both official savers).
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.env import DaemonProcess, Services, log, wait_caught_up
from bench.report import Result, md_table, pct
from replicator.state import PostgresStateStore

GOAL_P99_MS = 50.0


@dataclass
class Params:
    switches: int = 20  # cutovers, each followed by a rollback
    writers: int = 4
    rate: float = 24.0  # checkpoints/s, all writers together
    gap_s: float = 1.0  # between two switches
    threads_per_writer: int = 5  # conversations each writer keeps going, turn after turn


def _writer(path: str, index: int, rate: float, threads: int, stop: Any, out: str) -> None:
    """One app instance keeping ``threads`` conversations going through RoutingSaver, a turn at
    a time in turn (a conversation is mid-interrupt at most switches); times every saver write."""
    from replicator.embedded.demo_app import build_graph, run_conversation
    from replicator.routing import RoutingSaver

    latencies: list[float] = []
    with RoutingSaver.from_config(path) as saver:
        for name in ("put", "put_writes"):
            call = getattr(saver, name)

            def timed(*args: Any, _call: Any = call, **kwargs: Any) -> Any:
                started = time.monotonic()
                try:
                    return _call(*args, **kwargs)
                finally:
                    latencies.append((time.monotonic() - started) * 1000)

            setattr(saver, name, timed)
        graph = build_graph(saver)
        interval = 8 / rate  # one conversation turn: 8 checkpoints
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            run_conversation(graph, f"w{index}-{n % threads}", turns=1)
            n += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    Path(out).write_text("\n".join(f"{v:.3f}" for v in latencies))


def run(s: Services, p: Params, outdir: Path) -> Result:
    from replicator.config import load_config
    from replicator.cutover import run_cutover, run_rollback
    from replicator.verify import verify

    started = time.monotonic()
    dsn = s.database("cutover")
    data.setup(dsn)
    table = s.table("cutover")
    topic = s.unique("bench.cutover")
    _, path = s.config(dsn, table, topic=topic, partitions=4)
    config = load_config(path)
    state = PostgresStateStore(dsn)
    cutovers: list[dict[str, float]] = []
    rollbacks: list[float] = []
    refused: list[str] = []
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    outs = [s.workdir / f"{topic}-w{i}.txt" for i in range(p.writers)]
    with DaemonProcess(path, s.workdir / f"{topic}-daemon.log") as daemon:
        while (state.get("source") or {}).get("snapshot") != "done":
            if not daemon.alive():
                raise RuntimeError(f"cutover daemon exited:\n{daemon.tail()}")
            time.sleep(0.05)
        wait_caught_up(config, state, timeout=120, alive=daemon.alive)
        writers = [
            ctx.Process(
                target=_writer,
                args=(str(path), i, p.rate / p.writers, p.threads_per_writer, stop, str(outs[i])),
            )
            for i in range(p.writers)
        ]
        for w in writers:
            w.start()
        time.sleep(3.0)  # the writers' imports and first conversations
        for n in range(p.switches):
            time.sleep(p.gap_s)
            result = run_cutover(
                config, timeout=30, max_lag=30, state=state, log=lambda line: log(f"  {line}")
            )
            if not result.ok:
                refused.append(result.reason)
                log(f"cutover {n + 1}: refused: {result.reason}")
                continue
            log(f"cutover {n + 1}: {result.steps[-1]}")
            cutovers.append(
                {
                    "pause_ms": float(result.pause_ms or 0),
                    "drain_ms": float(result.drain_ms or 0),
                    "checked": result.verified_threads,
                }
            )
            time.sleep(p.gap_s)
            back = run_rollback(config, timeout=30)
            if back.ok:
                rollbacks.append(float(back.pause_ms or 0))
            else:
                refused.append(back.reason)
        stop.set()
        for w in writers:
            w.join(120)
        wait_caught_up(config, state, timeout=300, alive=daemon.alive)
        from connectors.registry import make_sink, make_source
        from replicator.state import MemoryStateStore

        source, sink = make_source(config.source, MemoryStateStore()), make_sink(config.targets[0])
        try:
            report = verify(source, sink)
        finally:
            source.close()
            sink.close()
    state.close()
    writes = [float(v) for out in outs if out.exists() for v in out.read_text().split() if v]
    pauses = [c["pause_ms"] for c in cutovers]
    drains = [c["drain_ms"] for c in cutovers]
    head = {
        "p50": pct(pauses, 50),
        "p99": pct(pauses, 99),
        "max": max(pauses, default=0.0),
    }
    rows = [
        [
            "cutover pause (fence to release)",
            f"{head['p50']:.1f}",
            f"{head['p99']:.1f}",
            f"{head['max']:.1f}",
            str(len(pauses)),
        ],
        [
            "of which: drain to the marker",
            f"{pct(drains, 50):.1f}",
            f"{pct(drains, 99):.1f}",
            f"{max(drains, default=0):.1f}",
            str(len(drains)),
        ],
        [
            "rollback pause",
            f"{pct(rollbacks, 50):.1f}",
            f"{pct(rollbacks, 99):.1f}",
            f"{max(rollbacks, default=0):.1f}",
            str(len(rollbacks)),
        ],
        [
            "every app write (put, put_writes), whole run",
            f"{pct(writes, 50):.1f}",
            f"{pct(writes, 99):.1f}",
            f"{max(writes, default=0):.1f}",
            f"{len(writes):,}",
        ],
    ]
    met = bool(pauses) and head["p99"] < GOAL_P99_MS and not refused and report.ok
    section = f"""{p.writers} app processes write through `RoutingSaver` at {p.rate:.0f} checkpoints/s
together, each keeping {p.threads_per_writer} conversations going a turn at a time (real LangGraph
conversations, subgraph and interrupt included) while the daemon replicates to
DynamoDB on moto. {p.switches} cutovers, each followed by a rollback, {p.gap_s:g} s apart.
Refused: {len(refused)}{" (" + "; ".join(refused[:3]) + ")" if refused else ""}.
Stores equal at the end (verify through both savers): {"yes" if report.ok else "no"}
({report.threads} threads, {report.checkpoints} checkpoints).

{md_table(["ms", "p50", "p99", "max", "n"], rows)}

A cutover's pause is the fence (new writes wait) through the drain (the marker sent through the
slot, Kafka and the applier), the check of the threads changed during the last unfenced pass,
and the record's commit; a rollback's is the fence and the commit only (the source already holds
every write). Anchors: gh-ost's cut-over pauses writes for 1-2 s in its users' reports; Vitess
`SwitchTraffic` stops writes for the whole catch-up and documents a partial outage. Goal: p99
below {GOAL_P99_MS:.0f} ms.
"""
    seconds = time.monotonic() - started
    log(f"cutover: pause p50 {head['p50']:.1f} ms, p99 {head['p99']:.1f} ms, max {head['max']:.1f} ms")
    return Result(
        key="cutover",
        title="Write pause at cutover",
        measured=f"p50 {head['p50']:.0f} ms, p99 {head['p99']:.0f} ms, max {head['max']:.0f} ms "
        f"over {len(pauses)} cutovers at {p.rate:.0f} checkpoints/s",
        goal=f"p99 < {GOAL_P99_MS:.0f} ms",
        met=met,
        section=section,
        seconds=seconds,
        data={"cutovers": cutovers, "rollbacks": rollbacks, "refused": refused, **head},
    )
