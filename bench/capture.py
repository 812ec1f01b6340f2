"""Figure 2, capture: events/s of the Postgres source reading a slot vs ``pg_recvlogical``.

Several logical slots (pgoutput) are created at the same LSN, then WAL is written: copies of real
app threads committed every ``tx_rows`` rows (the app's own transaction shape). Each reader then
consumes exactly that WAL from its own slot, one after the other, with nothing else running:

* ``pg_recvlogical`` (PostgreSQL's C client) with the options the source uses (pgoutput, proto 1,
  binary), writing to ``/dev/null``: what the server can decode and send on this machine, plus a
  C client's minimal cost;
* ``ReplicationConnection.read`` alone (psycopg2, no decoding): the transport;
* plus ``PgOutputDecoder.decode``: protocol decoding;
* ``PostgresSource.stream()``: the whole source (rows to LangGraph change events), the figure;
* ``Publisher`` over the source: capture and publish to the broker, acknowledged;
* the same with ``bench/proposed.py``'s ``FastPublisher`` (partition cache, ``linger_ms=20``): a
  prototype of a publisher change that is not in the product, on its own slot.

The walsender's decoding runs in Postgres for every reader alike; only the client differs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import data, profile
from bench.env import Services, log, run_publisher_until
from bench.report import BASELINE, OURS, PROPOSED, Result, bar_chart, fmt_rate
from connectors.sources.postgres import pgoutput
from connectors.sources.postgres.setup import ensure_publication
from connectors.sources.postgres.source import PostgresSource
from connectors.sources.postgres.stream import ReplicationConnection
from replicator.events import Committed, Control
from replicator.publisher import Publisher
from replicator.state import SOURCE_STATE, MemoryStateStore

PUBLICATION = "bench_capture"
READERS = ("pg_recvlogical", "raw", "decode", "source", "publish", "publish+")
SLOTS = ("pg_recvlogical", "raw", "decode", "source", "publish", "publish_p", "profile")


@dataclass
class Params:
    events: int = 200_000
    tx_rows: int = 3
    template_threads: int = 50
    profile: bool = True


def _recvlogical(s: Services, dsn_tcp: str, slot: str, end_lsn: str) -> float:
    binary = s.pg._bin or Path("/usr/lib/postgresql/15/bin")
    cmd = [
        str(Path(binary) / "pg_recvlogical"),
        "-d", dsn_tcp, "--slot", slot, "--start", "--no-loop", "-E", end_lsn,
        "--plugin=pgoutput", "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}",
        "-o", "binary=true", "-f", "/dev/null",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pg_recvlogical failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def _decode(dsn: str, slot: str, expected: int) -> tuple[float, int, int]:
    """Transport + pgoutput decoding, up to the commit after the ``expected``-th row change: the
    seconds, the messages read, and that commit's WAL position (where ``_raw`` stops)."""
    repl = ReplicationConnection(dsn, slot, PUBLICATION)
    decoder = pgoutput.PgOutputDecoder()
    messages = changes = 0
    try:
        t0 = time.monotonic()
        repl.start()
        while True:
            raw = repl.read()
            if raw is None:
                repl.wait(0.05)
                continue
            messages += 1
            msg = decoder.decode(raw.payload)
            if isinstance(msg, pgoutput.Insert | pgoutput.Update | pgoutput.Delete):
                changes += 1
            elif isinstance(msg, pgoutput.Commit) and changes >= expected:
                return time.monotonic() - t0, messages, raw.data_start
    finally:
        repl.close()


def _raw(dsn: str, slot: str, last: int) -> float:
    """The transport alone: psycopg2 reads XLogData payloads up to the one at WAL position
    ``last`` (the final commit ``_decode`` read), decodes nothing. (Counting messages instead
    once waited forever: a slot created a moment earlier need not see the same message count.)"""
    repl = ReplicationConnection(dsn, slot, PUBLICATION)
    try:
        t0 = time.monotonic()
        quiet_since = t0
        repl.start()
        while True:
            raw = repl.read()
            if raw is None:
                if time.monotonic() - quiet_since > 60:
                    raise RuntimeError(f"the raw reader got nothing for 60 s before WAL position {last}")
                repl.wait(0.05)
                continue
            quiet_since = time.monotonic()
            if raw.data_start >= last:
                return time.monotonic() - t0
    finally:
        repl.close()


def _source(config: Any, expected: int) -> tuple[float, int]:
    state = MemoryStateStore()
    state.put(SOURCE_STATE, {"snapshot": "done"})
    source = PostgresSource(config.source, state)
    events = 0
    try:
        t0 = time.monotonic()
        for item in source.stream():
            if item is None or isinstance(item, Control):
                continue
            if isinstance(item, Committed):
                if events >= expected:
                    break
                continue
            events += 1
        return time.monotonic() - t0, events
    finally:
        source.close()


def _publish(config: Any, expected: int, publisher_class: type[Publisher]) -> tuple[float, int]:
    state = MemoryStateStore()
    state.put(SOURCE_STATE, {"snapshot": "done"})
    source = PostgresSource(config.source, state)
    publisher = publisher_class(source, config.kafka, state)
    try:
        # Done when every event was produced and acknowledged; polled often, as it is timed.
        elapsed = run_publisher_until(publisher, lambda: publisher.stats.events >= expected, poll_s=0.002)
    finally:
        source.close()
    return elapsed, publisher.stats.events


def child(argv: list[str]) -> tuple[float, int]:
    """One reader in this process: ``CONFIG SLOT EVENTS MODE`` (source, publish, publish+: the
    publisher prototype of ``bench/proposed.py``)."""
    from replicator.config import load_config

    config_path, slot, expected, mode = argv[0], argv[1], int(argv[2]), argv[3]
    config = load_config(config_path)
    config = config.model_copy(
        update={"source": config.source.model_copy(update={"slot": slot, "publication": PUBLICATION})}
    )
    publisher_class: type[Publisher] = Publisher
    if mode == "publish+":
        from bench import proposed

        publisher_class = proposed.FastPublisher
    if mode.startswith("publish"):
        return _publish(config, expected, publisher_class)
    return _source(config, expected)


def _spawn(config_path: Path, slot: str, expected: int, mode: str) -> tuple[float, int]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.capture", str(config_path), slot, str(expected), mode],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"capture reader {mode} failed:\n{proc.stderr[-3000:]}")
    seconds, events = proc.stdout.split()[-2:]
    return float(seconds), int(events)


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("capture")
    data.setup(dsn)
    data.generate_real(dsn, "r", p.template_threads, 2)
    per_thread = data.events_per_thread(dsn, "r%")
    threads = max(1, round(p.events / per_thread))
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_publication(conn, PUBLICATION, "public")
        for name in SLOTS:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"cap_{name}",))
    clone_s = data.clone(dsn, "r", "w", 0, threads, tx_rows=p.tx_rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        end_text = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        wal_bytes = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots "
            "WHERE slot_name = 'cap_raw'"
        ).fetchone()[0]  # type: ignore[index]
    expected = data.counts(dsn, "w%")["rows"]
    log(f"capture: {expected:,} events in {clone_s:.1f}s of SQL, {int(wal_bytes) / 2**20:.0f} MiB of WAL")

    seconds: dict[str, float] = {}
    seconds["pg_recvlogical"] = _recvlogical(s, dsn, "cap_pg_recvlogical", end_text)
    seconds["decode"], messages, last_commit = _decode(dsn, "cap_decode", expected)
    seconds["raw"] = _raw(dsn, "cap_raw", last_commit)
    _, config_path = s.config(dsn, "unused", topic="bench.capture", partitions=4)
    seconds["source"], got = _spawn(config_path, "cap_source", expected, "source")
    seconds["publish"], published = _spawn(config_path, "cap_publish", expected, "publish")
    seconds["publish+"], _ = _spawn(config_path, "cap_publish_p", expected, "publish+")
    rates = {k: expected / v for k, v in seconds.items()}
    ratio = rates["source"] / rates["pg_recvlogical"]
    log(f"capture: {', '.join(f'{k} {v:,.0f}/s' for k, v in rates.items())}; ratio {ratio:.2f}")
    cmd = [sys.executable, "-m", "bench.capture", str(config_path), "cap_profile", str(expected), "publish"]
    prof = [profile.spawn(cmd, "capture", focus="Publisher.run")] if p.profile else []

    plot = bar_chart(
        "capture.png",
        f"Same WAL ({expected:,} row changes): PostgresSource / pg_recvlogical = {ratio:.2f}",
        [
            "pg_recv-\nlogical",
            "psycopg2\nread",
            "+ pgoutput\ndecode",
            "Postgres-\nSource",
            "+ publish\n(acked)",
            "publish\nprototype",
        ],
        [rates[k] for k in READERS],
        "row changes/s",
        outdir,
        colors=[BASELINE, OURS, OURS, OURS, OURS, PROPOSED],
    )
    rows = "\n".join(
        f"| {label} | {seconds[k]:.2f} s | {fmt_rate(rates[k])} | {rates[k] / rates['pg_recvlogical']:.2f} |"
        for k, label in (
            ("pg_recvlogical", "`pg_recvlogical` to /dev/null (the decoding limit)"),
            ("raw", "psycopg2 `ReplicationConnection.read`, no decoding"),
            ("decode", "+ `PgOutputDecoder.decode`"),
            ("source", "`PostgresSource.stream()`: change events (**the figure**)"),
            ("publish", "`Publisher`: events produced to the broker and acknowledged"),
            (
                "publish+",
                "prototype, not in the product: `Publisher` + partition cache + `linger_ms=20` "
                "(bench/proposed.py)",
            ),
        )
    )
    section = f"""
WAL: {expected:,} row changes ({threads:,} copies of {p.template_threads} real app threads, a commit
every {p.tx_rows} rows: {expected // p.tx_rows:,} transactions, {messages:,} pgoutput messages,
{int(wal_bytes) / 2**20:.0f} MiB of WAL). One slot per reader was created at the same LSN before it was
written; each reader consumed it to the same end, alone (Python readers in a child process each,
timed from the start of their loop).

| reader | time | row changes/s | vs pg_recvlogical |
|---|---:|---:|---:|
{rows}

**PostgresSource / pg_recvlogical = {ratio:.2f}** (goal: at least 0.5). The source is the product's:
JSON/JSONB decoded with msgspec and pgoutput messages as `msgspec.Struct`s (commit 20f128c). The source
got {got:,} events; the publisher produced {published:,}. The daemon's capture path is the publisher
row: it runs at {rates["publish"] / rates["source"]:.0%} of the source alone. The publisher prototype
(partition cache and a longer linger; not in the product) ran at {rates["publish+"] / rates["publish"]:.2f}x
the publisher's rate on the same WAL.
"""
    result = Result(
        key="capture",
        title="Capture vs pg_recvlogical",
        measured=f"{ratio:.2f}x ({fmt_rate(rates['source'])} vs {fmt_rate(rates['pg_recvlogical'])} "
        "events/s)",
        goal=">= 0.5x",
        met=ratio >= 0.5,
        section=section,
        plots=[plot],
        seconds=time.monotonic() - started,
        data={"rates": rates, "ratio": ratio, "events": expected},
    )
    if prof:
        result.data["profile"] = prof[0]
    return result


def main() -> None:
    from replicator import logs

    logs.configure("console", "warning")
    seconds, events = child(sys.argv[1:])
    print(f"{seconds:.6f} {events}")


if __name__ == "__main__":
    main()
