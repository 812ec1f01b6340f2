"""Figure 6, write pause at cutover: how long the app's writes wait while every app switches.

Writer processes run the real LangGraph app (``replicator.embedded.demo_app``) through
``RoutingSaver`` at a paced total rate, while the real daemon replicates. The bench then runs
``switches`` cutovers, each followed by a rollback (``run_cutover`` / ``run_rollback``, the
functions behind the commands), a second apart, with the writers going on throughout. The
pause of a switch is what it added to the app's calls: the fence (new writes wait) and, after
its release, the routing decision of each call until every partition drained (a thread the
target lacks stays on the source: no call waits for the pipeline); the writers time both in
the app, with every saver call. At the end the stores are
verified equal (through both official savers).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.env import DaemonProcess, Services, dynamodb_stores, log, wait_caught_up
from bench.report import Result, md_table, pct
from replicator.embedded.services import create_dynamodb_table
from replicator.state import PostgresStateStore

GOAL_P99_MS = 50.0
VERIFY_SAMPLE = 10


@dataclass
class Params:
    switches: int = 20  # cutovers, each followed by a rollback
    writers: int = 2
    rate: float = 8.0  # checkpoints/s, all writers together
    gap_s: float = 2.0  # between two switches
    turns: int = 3  # turns of each conversation (then a new one: the demo's history doubles each turn)


def _writer(path: str, index: int, rate: float, turns: int, stop: Any, out: str) -> None:
    """One app instance talking through RoutingSaver, a turn at a time, ``turns`` turns per
    conversation (so conversations are mid-way at every switch). Times every saver call, and
    every routing decision for a thread on the target (``held``: kept on the source because
    the target may lack its last changes; ``route``: sent to the target)."""
    from replicator.embedded.demo_app import build_graph, run_conversation
    from replicator.routing import RoutingSaver

    lines: list[str] = []  # kind,wall-clock start,ms

    def timing(kind: str, call: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, started = time.time(), time.monotonic()
            try:
                return call(*args, **kwargs)
            finally:
                lines.append(f"{kind},{wall:.6f},{(time.monotonic() - started) * 1000:.3f}")

        return timed

    with RoutingSaver.from_config(path) as saver:
        for name in ("put", "put_writes", "get_tuple"):
            setattr(saver, name, timing("call", getattr(saver, name)))
        decide = saver._held_on_source

        def routed(record: Any, thread_id: str) -> bool:
            wall, started = time.time(), time.monotonic()
            held = decide(record, thread_id)
            kind = "held" if held else "route"
            lines.append(f"{kind},{wall:.6f},{(time.monotonic() - started) * 1000:.3f}")
            return held

        saver._held_on_source = routed  # type: ignore[method-assign]
        graph = build_graph(saver)
        interval = 8 / rate  # one conversation turn: 8 checkpoints
        # Turns arrive at random (Poisson), not on a beat: a beat of the switches' period would
        # keep every turn clear of every switch, or on every one.
        arrivals = random.Random(index)
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            run_conversation(graph, f"w{index}-{n // turns}", turns=1)
            n += 1
            next_at += arrivals.expovariate(1 / interval)
            time.sleep(max(0.0, next_at - time.monotonic()))
    Path(out).write_text("\n".join(lines))


@contextlib.contextmanager
def _dynamodb(s: Services) -> Iterator[tuple[str, str, str]]:
    """(name, endpoint, table): dynalite when its npm package is installed (tests/services), else
    moto. moto sorts the whole table on every Query, so the gate's and the check's reads slow
    down as the run writes (one cutover took 8 minutes at cutover 17 of 20 on moto): that is
    moto, not the switch. dynalite keeps a table ordered by key, as DynamoDB does."""
    with dynamodb_stores(s, ("moto", "dynalite")) as stores:
        store = stores[-1]  # dynalite if it runs here
        table = s.unique("cutover")
        create_dynamodb_table(store.endpoint, table)
        yield store.name, store.endpoint, table


def run(s: Services, p: Params, outdir: Path) -> Result:
    with _dynamodb(s) as target:
        return _run(s, p, target)


def _run(s: Services, p: Params, dynamodb: tuple[str, str, str]) -> Result:
    from langgraph.checkpoint.base.id import uuid6

    from replicator.config import load_config
    from replicator.cutover import run_cutover, run_rollback, verified_state_name
    from replicator.verify import verify

    started = time.monotonic()
    dsn = s.database("cutover")
    data.setup(dsn)
    server, endpoint, table = dynamodb
    topic = s.unique("bench.cutover")
    target = {"endpoint_url": endpoint, "s3_endpoint_url": s.moto.endpoint_url}
    _, path = s.config(dsn, table, topic=topic, partitions=4, target=target)
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
                args=(str(path), i, p.rate / p.writers, p.turns, stop, str(outs[i])),
            )
            for i in range(p.writers)
        ]
        for w in writers:
            w.start()
        time.sleep(3.0)  # the writers' imports and first conversations
        for n in range(p.switches):
            time.sleep(p.gap_s)
            # On moto the gate verifies only what was written since this mark, so the run measures
            # the switch rather than moto, whose every Query sorts the whole table (0.7 s per Query
            # at 28,000 items). On dynalite the gate does what it does for users: it verifies
            # every thread changed since the previous cutover's verify.
            if n and server == "moto":
                state.put(verified_state_name("dynamo"), {"since": str(uuid6(node=0, clock_seq=0))})
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
                    "released_at": float(result.released_at or 0),
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
            # Every thread on both sides, and a sample read whole through both savers (a whole
            # verify reads every checkpoint through moto's table-scanning Query: many minutes).
            src_threads, tgt_threads = set(source.thread_ids()), set(sink.thread_ids())
            sample = random.Random(7).sample(sorted(src_threads), min(VERIFY_SAMPLE, len(src_threads)))
            report = verify(source, sink, thread_ids=sample)
            same_threads = src_threads == tgt_threads
        finally:
            source.close()
            sink.close()
    state.close()
    records = [
        (kind, float(w), float(v))
        for out in outs
        if out.exists()
        for kind, w, v in (line.split(",") for line in out.read_text().split() if line)
    ]
    calls = [(w, v) for kind, w, v in records if kind == "call"]
    decisions = [(kind, w, v) for kind, w, v in records if kind in ("held", "route")]
    fences = [c["pause_ms"] for c in cutovers]
    drains = [c["drain_ms"] for c in cutovers]
    # What app calls waited for at each cutover, measured where they wait: a call in flight while
    # the fence was held waited (at most) its overlap with the fence; a thread's first call after
    # the release waited in RoutingSaver until its partition applied the source up to the marker
    # (timed inside the routing saver). Not counted: a call's own time on either store.
    seen: list[float] = []
    per_cutover: list[float] = []
    held: list[int] = []  # per cutover: calls kept on the source instead of waiting
    met_switch: list[int] = []
    for i, c in enumerate(cutovers):
        begin, released = c["released_at"] - c["pause_ms"] / 1000, c["released_at"]
        until = (
            cutovers[i + 1]["released_at"] - cutovers[i + 1]["pause_ms"] / 1000
            if i + 1 < len(cutovers)
            else 1e18
        )
        fenced = [
            (min(w + v / 1000, released) - max(w, begin)) * 1000
            for w, v in calls
            if w <= released and w + v / 1000 >= begin
        ]
        # Calls between the release and every partition drained: the routing decision is all
        # the switch adds to them (a held thread's call goes to the source, it does not wait).
        drained_at = min(until, released + c["drain_ms"] / 1000)
        window = [(k, v) for k, w, v in decisions if released <= w < drained_at]
        decided = [v for _, v in window]
        held.append(sum(1 for k, _ in window if k == "held"))
        met_switch.append(len(fenced) + len(window))
        seen.extend(fenced + decided)
        per_cutover.append(max(fenced + decided, default=0.0))
    pauses = seen
    head = {
        "p50": pct(pauses, 50),
        "p99": pct(pauses, 99),
        "max": max(pauses, default=0.0),
    }
    every = [v for _, v in calls]

    def row(label: str, values: list[float], n: str | None = None) -> list[str]:
        stats = (pct(values, 50), pct(values, 99), max(values, default=0.0))
        return [label, *(f"{v:.1f}" for v in stats), n or str(len(values))]

    rows = [
        row(
            "**pause at cutover**: each app call that met a switch (in the fence, or routed before "
            "every partition drained)",
            pauses,
        ),
        row("longest such wait per cutover", per_cutover),
        row("fence held (all writes wait)", fences),
        row("every partition applied up to the marker, after release (no call waits for it)", drains),
        row(
            "routing decision of every call for a thread on the target, whole run",
            [v for _, _, v in decisions],
            f"{len(decisions):,}",
        ),
        row("rollback pause", rollbacks),
        row(
            "every app call (get_tuple, put, put_writes), whole run, wait and store", every, f"{len(every):,}"
        ),
    ]
    gate_scope = (
        "Each cutover's gate verifies every thread changed since the previous cutover's verify "
        "(the first: every thread), as for users."
        if server != "moto"
        else "Each cutover's gate verifies only the writes made since a mark set just before it "
        "(moto sorts the whole table on every Query: a verify of minutes of writes would measure "
        "moto); the first verifies everything."
    )
    met = bool(pauses) and head["p99"] < GOAL_P99_MS and not refused and report.ok and same_threads
    section = f"""{p.writers} app processes write through `RoutingSaver` at {p.rate:.0f} checkpoints/s
together, conversations of {p.turns} turns one turn at a time (real LangGraph
conversations, subgraph and interrupt included) while the daemon replicates to
DynamoDB on {server} (S3 on moto). {p.switches} cutovers, each followed by a rollback,
{p.gap_s:g} s apart. {gate_scope}
Refused: {len(refused)}{" (" + "; ".join(refused[:3]) + ")" if refused else ""}.
At the end, the same {len(src_threads)} threads on both sides: {"yes" if same_threads else "no"}; a
sample of {report.threads} threads ({report.checkpoints} checkpoints) read whole through both savers
equal: {"yes" if report.ok else "no"}.

{md_table(["ms", "p50", "p99", "max", "n"], rows)}

The fence (every write waits) holds only the marker and the record's flip. After it no call
waits for the pipeline: a thread whose partition has not applied the source up to the marker
stays on the source, reads and writes, until the target holds all of it
({sum(held)} calls of {sum(met_switch)} that met a switch were kept on the source this way). The
headline is what the switch added to the app calls that met it: a call in flight during the
fence, its overlap with the fence; a call between the release and every partition drained, its
routing decision inside `RoutingSaver` (a lookup of the thread's hold and, while its partition
is behind, of the applied positions). A call's own time on the stores is not a pause of the
switch, and on moto it is not small (the last row: moto answers the gate's verify reads
meanwhile). Turns arrive at random (Poisson), so switches meet them at any
point. A rollback holds
the fence for the flip only (the source already holds every write). Anchors: gh-ost's cut-over
pauses writes for 1-2 s in its users' reports; Vitess
`SwitchTraffic` stops writes for the whole catch-up and documents a partial outage. Goal: p99
below {GOAL_P99_MS:.0f} ms.
"""
    seconds = time.monotonic() - started
    log(f"cutover: pause p50 {head['p50']:.1f} ms, p99 {head['p99']:.1f} ms, max {head['max']:.1f} ms")
    return Result(
        key="cutover",
        title="Write pause at cutover",
        measured=f"p50 {head['p50']:.0f} ms, p99 {head['p99']:.0f} ms, max {head['max']:.0f} ms "
        f"over {len(pauses)} waiting calls in {len(cutovers)} cutovers at {p.rate:.0f} checkpoints/s",
        goal=f"p99 < {GOAL_P99_MS:.0f} ms",
        met=met,
        section=section,
        seconds=seconds,
        data={"cutovers": cutovers, "rollbacks": rollbacks, "refused": refused, "held": held, **head},
    )
