"""``replicator cutover``, ``rollback``, ``finish`` and ``dual-write``: the switch of every app, and back.

Exit 0 when the switch happened, 1 when it was refused (the reason is printed, nothing changed
for the app), 2 on bad input.
"""

from __future__ import annotations

import sys
import time

import click

from replicator.cli.common import EXIT_PROBLEM, config_option, fail, load
from replicator.cli.threads import selected_threads, threads_from_option, threads_option
from replicator.config import Config
from replicator.redact import redact


def _echo(line: str) -> None:
    click.echo(redact(line))


@click.command()
@config_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Longest fence, seconds.")
@click.option(
    "--max-lag", type=float, default=5.0, show_default=True, help="Refuse when further behind, seconds."
)
@click.option("--target", "target_name", default=None, help="Target to switch to (needed if several).")
@click.option(
    "--percent",
    type=click.IntRange(0, 100),
    default=None,
    help="Canary: this share of threads (stable hash).",
)
@threads_option
@threads_from_option
@click.option(
    "--wait", "wait_s", type=float, default=0.0, help="Wait up to this many seconds for the gate to pass."
)
def cutover(
    config_path: str,
    timeout: float,
    max_lag: float,
    target_name: str | None,
    percent: int | None,
    thread_ids: str | None,
    threads_from: str | None,
    wait_s: float,
) -> None:
    """Fence writes, drain, verify and switch every RoutingSaver app to the target; exit 1 if refused."""
    from replicator.cutover import Scope, run_cutover

    config = load(config_path)
    threads = frozenset(selected_threads(thread_ids, threads_from) or ())
    scope = Scope(percent if percent is not None else (0 if threads else 100), threads)
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        waiting = time.monotonic() < deadline
        result = run_cutover(
            config, timeout, max_lag, target=target_name, scope=scope, log=None if waiting else _echo
        )
        if result.ok or not waiting or not _gate_refusal(result.reason):
            break
        _echo(f"waiting for the gate: {result.reason}")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    if waiting and result.ok:
        for line in result.steps:
            _echo(line)
    sys.exit(0 if result.ok else EXIT_PROBLEM)


def _gate_refusal(reason: str) -> bool:
    """Refusals that waiting can cure: not caught up yet, in-flight differences, a busy fence."""
    return any(
        cue in reason
        for cue in (
            "behind the source",
            "initial copy is not done",
            "has not published",
            "differences",
            "timed out",
        )
    )


@click.command()
@config_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Longest fence, seconds.")
def rollback(config_path: str, timeout: float) -> None:
    """Fence writes and switch every RoutingSaver app back to the source; exit 1 if refused."""
    from replicator.cutover import run_rollback

    config = load(config_path)
    result = run_rollback(config, timeout, log=_echo)
    sys.exit(0 if result.ok else EXIT_PROBLEM)


@click.command()
@config_option
@click.option(
    "--drop",
    is_flag=True,
    help="Also drop the replication slot and publication, saved positions, and what only the "
    "replicator reads in each target (blob state, write index).",
)
def finish(config_path: str, drop: bool) -> None:
    """End the migration: close the rollback window (no more shadow writes to the source; a
    source without a migration record has none) and list what can be removed."""
    from connectors.registry import SWITCHBOARDS
    from replicator.cutover import run_finish
    from replicator.migration import Refused, Store

    config = load(config_path)
    if config.source.kind not in SWITCHBOARDS:
        _finish_moved_by_hand(config, drop)
        return
    try:
        record = run_finish(config)
    except Refused as exc:
        fail(str(exc), EXIT_PROBLEM)
    on = "the target" if record.store is Store.TARGET else "the source"
    _echo(f"finished: the app stays on {on}; routing saver writes no shadow copies any more")
    removed = [
        f"replication slot {getattr(config.source, 'slot', '?')} and publication "
        f"{getattr(config.source, 'publication', '?')} on the source",
        "saved positions in the state store",
        "what only the replicator reads in each target (blob state, write index)",
    ]
    kept = [
        f"Kafka topics {config.kafka.topic} and {config.kafka.topic}.dlq (with your Kafka tools)",
        "the migration record (RoutingSaver reads it: first give the app the target's own saver)",
    ]
    _clean_up(config, drop, removed, kept, "now")


def _finish_moved_by_hand(config: Config, drop: bool) -> None:
    """A source with no migration record (SQLite, an in-memory or any saver): its app moved by
    hand (``target_saver``), so there is no switch to close, only the replicator's pieces."""
    kind = config.source.kind
    _echo(f"a {kind} source has no migration record: its app moves to the target by hand (target_saver)")
    removed = [
        *(["the changelog table and its triggers in the SQLite file"] if kind == "sqlite" else []),
        "saved positions and copy digests in the state store",
        "what only the replicator reads in each target (blob state, write index)",
    ]
    kept = [f"Kafka topics {config.kafka.topic} and {config.kafka.topic}.dlq (with your Kafka tools)"]
    _clean_up(config, drop, removed, kept, "once the app uses the target")


def _clean_up(config: Config, drop: bool, removed: list[str], kept: list[str], when: str) -> None:
    """List what can be removed, or (``drop``) remove ``removed``: the source's side first (once
    the slot is gone no stream applies into a target whose blob state is going), then each
    target's. Every step is idempotent, so a drop that failed half-way is run again whole."""
    from replicator.cli.reset import drop_target_state, forget, running_appliers

    if not drop:
        _echo(f"can be removed {when} (stop `replicator run` first):")
        for item in [*removed, *kept]:
            _echo(f"  - {item}")
        _echo("`replicator finish --drop` removes: " + "; ".join(removed))
        return
    running = running_appliers(config)
    if running:
        fail(
            "stop `replicator run` first: it still applies into "
            + ", ".join(running)
            + " (nothing was dropped; a killed process drops out after its Kafka session timeout)",
            EXIT_PROBLEM,
        )
    dropped = forget(config, teardown=True)
    _echo(f"dropped {'; '.join([*dropped, 'saved positions'])}")
    for line in drop_target_state(config):
        _echo(f"dropped {line}")
    _echo(f"kept: {'; '.join(kept)}")


@click.command("dual-write")
@config_option
@click.option("--target", "target_name", default=None, help="Target to write to (needed if several).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Longest fence, seconds.")
def dual_write(config_path: str, target_name: str | None, timeout: float) -> None:
    """No logical replication on the source: RoutingSaver writes both stores; history is back-filled."""
    from replicator.dualwrite import run_dual_write
    from replicator.migration import Refused

    config = load(config_path)
    try:
        run_dual_write(config, target=target_name, timeout=timeout, log=_echo)
    except Refused as exc:
        fail(str(exc), EXIT_PROBLEM)
