"""``replicator copy``: the big-bang move, every thread copied once to every target (no Kafka)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from replicator.cli.common import EXIT_PROBLEM, config_option, load
from replicator.cli.threads import selected_threads, threads_from_option, threads_option
from replicator.redact import redact

if TYPE_CHECKING:
    from replicator.config import Config
    from replicator.copy import TargetReport
    from replicator.state import StateStore


@click.command()
@config_option
@threads_option
@threads_from_option
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Parallel writers per target that takes several (DynamoDB, Postgres).",
)
@click.option("--force", is_flag=True, help="Copy threads again even when unchanged since the last copy.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a progress bar.")
def copy(
    config_path: str,
    thread_ids: str | None,
    threads_from: str | None,
    workers: int,
    force: bool,
    as_json: bool,
) -> None:
    """Copy every thread (or some) from the source store to every target once, without Kafka.

    Stop the app's writes first (or copy again once they stopped): a thread is read whole in
    one read, but a thread written after it was read is copied by the next run. A second run
    copies only threads that changed since. Exit 1 if a target refused a thread.
    """
    from replicator.copy import copy as run_copy
    from replicator.state import open_state_store

    wanted = selected_threads(thread_ids, threads_from)
    config = load(config_path)
    state = open_state_store(config)
    try:
        if as_json:
            reports = run_copy(config, state, thread_ids=wanted, workers=workers, force=force)
        else:
            reports = _with_progress(config, state, wanted, workers, force)
    finally:
        state.close()
    failed = any(r.failed for r in reports)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "targets": [r.as_dict() for r in reports]}))
    else:
        for r in reports:
            click.echo(
                f"{r.name}: {r.copied} threads copied ({r.events} events), {r.unchanged} unchanged, "
                f"{len(r.failed)} refused, in {r.seconds:.1f} s"
            )
            for thread_id, why in sorted(r.failed.items()):
                click.echo(f"  refused {thread_id!r}: {redact(why)}", err=True)
    sys.exit(EXIT_PROBLEM if failed else 0)


def _with_progress(
    config: Config, state: StateStore, wanted: list[str] | None, workers: int, force: bool
) -> list[TargetReport]:
    """The copy under a rich progress bar per target (threads done of all)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from replicator.copy import copy as run_copy

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        tasks: dict[str, TaskID] = {}

        def on_total(total: int) -> None:
            for target in config.targets:
                tasks[target.name] = bar.add_task(f"copy to {target.name}", total=total)

        def on_progress(target: str, done: int) -> None:
            bar.update(tasks[target], completed=done)

        return run_copy(
            config,
            state,
            thread_ids=wanted,
            workers=workers,
            force=force,
            progress=on_progress,
            on_total=on_total,
        )


__all__ = ["copy"]
