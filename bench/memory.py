"""Figure 4, memory: RSS of the daemon process while it works off a backlog.

The daemon (``replicator run``, a child process) first copies a small source and streams, so its
slot exists; then it is stopped (SIGTERM) and a backlog of ``--memory-events`` row changes is
committed (copies of real app threads, one transaction per thread). The daemon is started again
and its VmRSS is sampled from /proc every half second until the target caught up: the backlog
passes through every stage (slot, publisher, Kafka, applier, blob cache, DynamoDB).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from bench import data, previous, profile
from bench.env import DaemonProcess, Sampler, Services, log, rss_mib, wait_caught_up
from bench.report import Result, fmt_rate, new_figure, save
from replicator.state import PostgresStateStore, applier_positions


@dataclass
class Params:
    events: int = 150_000
    limit_mib: float = 300.0
    timeout: float = 1800.0
    profile: bool = True


def _applied(state: PostgresStateStore) -> int:
    return sum(int(v.get("events", 0)) for v in applier_positions(state, "dynamo").values())


def run(s: Services, p: Params, outdir: Any) -> Result:
    started = time.monotonic()
    dsn = s.database("memory")
    data.setup(dsn)
    data.generate_real(dsn, "r", 50, 2)
    table = s.table("memory")
    config, path = s.config(dsn, table, topic="bench.memory", partitions=4)
    state = PostgresStateStore(dsn)
    with DaemonProcess(path, s.workdir / "memory-daemon-1.log") as daemon:
        while (state.get("source") or {}).get("snapshot") != "done":
            if not daemon.alive():
                raise RuntimeError(f"memory daemon exited:\n{daemon.tail()}")
            time.sleep(0.05)
        wait_caught_up(config, state, timeout=300, alive=daemon.alive)
    before = _applied(state)
    per_thread = data.events_per_thread(dsn, "r%")
    threads = max(1, round(p.events / per_thread))
    clone_s = data.clone(dsn, "r", "b", 0, threads)
    backlog = data.counts(dsn, "b%")["rows"]
    log(f"memory: backlog of {backlog:,} events committed in {clone_s:.1f}s; restarting the daemon")

    samples: list[tuple[float, float, int]] = []  # seconds, RSS MiB, events applied
    with DaemonProcess(path, s.workdir / "memory-daemon-2.log") as daemon:
        t0 = time.monotonic()

        def sample() -> None:
            rss = rss_mib(daemon.pid)
            if rss is not None:
                samples.append((time.monotonic() - t0, rss, _applied(state) - before))

        sampler = Sampler(sample, 0.5)
        sampler.start()
        # The profiler does not change what is measured here (memory), so it rides along.
        with contextlib.ExitStack() as stack:
            prof = (
                stack.enter_context(profile.record(daemon.pid, profile.path("daemon"))) if p.profile else []
            )
            try:
                drain_s = wait_caught_up(config, state, timeout=p.timeout, poll=0.5, alive=daemon.alive)
            finally:
                sampler.stop()
    state.close()
    result = _report(samples, backlog, drain_s, p, outdir, time.monotonic() - started)
    if prof:
        result.data["profile"] = prof[0]
    return result


def _report(
    samples: list[tuple[float, float, int]],
    backlog: int,
    drain_s: float,
    p: Params,
    outdir: Any,
    seconds: float,
) -> Result:
    rss = [r for _, r, _ in samples]
    peak = max(rss, default=0.0)
    # Flatness: the peak of the second half of the run against the peak of the first half.
    half = [r for t, r, _ in samples if t >= drain_s / 2]
    first = [r for t, r, _ in samples if t < drain_s / 2]
    growth = (max(half, default=0.0) - max(first, default=0.0)) / max(1.0, max(first, default=1.0))
    fig, ax = new_figure(f"Daemon RSS over a backlog of {backlog:,} events: peak {peak:.0f} MiB")
    ax.plot([t for t, _, _ in samples], rss, label="RSS (MiB)")
    ax.axhline(p.limit_mib, color="red", linewidth=0.8, alpha=0.6, label=f"goal {p.limit_mib:.0f} MiB")
    ax.set_xlabel("seconds since the daemon started")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, max(p.limit_mib, peak) * 1.1)
    ax2 = ax.twinx()
    ax2.plot(
        [t for t, _, _ in samples], [e for _, _, e in samples], color="#2ca02c", alpha=0.6, label="applied"
    )
    ax2.set_ylabel("events applied")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower right")
    plot = save(fig, "memory.png", outdir)
    marks = []
    for q in (0.25, 0.5, 0.75, 1.0):
        at = next(((t, r) for t, r, e in samples if e >= q * backlog), samples[-1][:2] if samples else (0, 0))
        marks.append(f"| {q:.0%} applied | {at[0]:.0f} s | {at[1]:.0f} MiB |")
    flat = growth <= 0.1
    profiled = ", with py-spy sampling the daemon" if p.profile else ""
    full = p.events >= 1_000_000  # the backlog itself is a whole number of threads: 999,975 for 1M
    prior = None if full else previous.memory_1m()
    full_size = "" if full else "\n" + _full_size_note(prior) + "\n"
    section = f"""
Backlog: {backlog:,} row changes committed while the daemon was stopped (copies of real app
threads, one transaction per thread), then `replicator run` started again and sampled every 0.5 s
until `status` reported the target caught up, {drain_s:.0f} s later
({fmt_rate(backlog / max(drain_s, 1e-6))} events/s end to end{profiled}).

| point | time | RSS |
|---|---:|---:|
{chr(10).join(marks)}

**Peak RSS {peak:.0f} MiB** (goal: under {p.limit_mib:.0f} MB and flat); the second half of the run peaked
{growth:+.0%} against the first half ({"flat within 10%" if flat else "still growing"}).
{full_size}"""
    return Result(
        key="memory",
        title="Daemon memory over a backlog",
        measured=f"peak {peak:.0f} MiB over {backlog:,} events, 2nd half {growth:+.0%} vs 1st"
        + ("" if full else _full_size_ref(prior)),
        goal="flat, < 300 MB over 1M events",
        met=(peak < p.limit_mib and flat) if full else None,
        section=section,
        plots=[plot],
        seconds=seconds,
        data={
            "peak": peak,
            "growth": growth,
            "samples": len(samples),
            "backlog": backlog,
            "full": full,
            "memory_1m": prior,
        },
    )


RERUN_1M = "`python -m bench --only memory --memory-events 1000000 --out bench/memory-1m`"


def _full_size_note(prior: dict[str, Any] | None) -> str:
    """Where the issue's size (1M events) is measured, and whether that run is of the current code."""
    why = (
        f"The issue's size, 1M events, takes about {previous.MEMORY_1M_MINUTES:.0f} minutes on this "
        "machine, so the default run uses a smaller backlog"
    )
    if prior is None:
        return f"{why}; no 1M-event run is committed in bench/memory-1m/ (run {RERUN_1M})."
    link = "[memory-1m/results.md](memory-1m/results.md)"
    if prior["predates"]:
        return (
            f"{why}. The 1M-event run in {link} is the one of commit {previous.MEMORY_1M_COMMIT} (peak "
            f"{prior['peak']:.0f} MiB over {prior['events']:,} events, about "
            f"{previous.MEMORY_1M_LEVEL_MIB:.0f} MiB from half-way on), made before the product changes "
            f"since (among them one Kafka record per thread's run of changes); rerun it with {RERUN_1M}."
        )
    return (
        f"{why}; the 1M-event run is committed as {link} ({RERUN_1M}): peak {prior['peak']:.0f} MiB "
        f"over {prior['events']:,} events, a rerun made after the run of commit {previous.MEMORY_1M_COMMIT}."
    )


def _full_size_ref(prior: dict[str, Any] | None) -> str:
    if prior is None:
        return " (1M events: not run)"
    if prior["predates"]:
        return (
            f" (1M events, run of {previous.MEMORY_1M_COMMIT}: see memory-1m/results.md, "
            f"{prior['peak']:.0f} MiB)"
        )
    return f" (1M events: see memory-1m/results.md, {prior['peak']:.0f} MiB)"
