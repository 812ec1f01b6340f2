"""``replicator deadletters``: the threads a target paused, and releasing them once fixed."""

from __future__ import annotations

import json
import sys

import click

from replicator.cli.common import EXIT_PROBLEM, config_option, fail, load
from replicator.redact import redact


@click.command()
@config_option
@click.option(
    "--target", "target_name", default=None, help="Only this target (needed with --release if several)."
)
@click.option(
    "--release",
    "threads",
    default=None,
    help="Copy these paused threads (ids separated by commas) whole from the source and un-pause "
    "them. Stop every applier of the target first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def deadletters(config_path: str, target_name: str | None, threads: str | None, as_json: bool) -> None:
    """List the threads each target paused after a dead letter, with the last reasons; or
    release some (exit 1 if one stays paused: the target still refuses it)."""
    from replicator.deadletters import paused, release
    from replicator.migration import Refused
    from replicator.state import open_state_store

    config = load(config_path)
    targets = [config.target(target_name)] if target_name else list(config.targets)
    state = open_state_store(config, create=False)
    try:
        if threads is None:
            listing = {t.name: paused(state, t.name) for t in targets}
            if as_json:
                click.echo(json.dumps(listing, default=str))
                return
            for name, summary in listing.items():
                held = summary.get("paused_threads") or []
                click.echo(f"{name}: {summary.get('count', 0)} dead letters, {len(held)} threads paused")
                reasons: dict[str, str] = {}  # the first kept: the cause, not "paused by an earlier one"
                for entry in summary.get("recent") or []:
                    reasons.setdefault(str(entry.get("thread_id")), str(entry.get("reason")))
                for thread_id in held:
                    click.echo(f"  {thread_id}: {redact(str(reasons.get(thread_id) or 'paused'))}")
            return
        if len(targets) > 1:
            fail("--release needs --target NAME when the config has several targets")
        wanted = [t.strip() for t in threads.split(",") if t.strip()]
        if not wanted:
            fail("--release takes thread ids separated by commas")
        try:
            result = release(config, state, targets[0].name, wanted)
        except Refused as exc:
            fail(str(exc), EXIT_PROBLEM)
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps(result.__dict__))
    else:
        for thread_id in result.released:
            click.echo(f"released {thread_id!r} on {result.target}: copied whole from the source")
        for thread_id in result.not_paused:
            click.echo(f"{thread_id!r} is not paused on {result.target}: nothing to do")
        for thread_id, why in sorted(result.refused.items()):
            click.echo(f"still paused {thread_id!r}: the target refuses it: {redact(why)}", err=True)
        if result.released:
            click.echo("start `replicator run` again: the appliers apply these threads' later changes")
    sys.exit(EXIT_PROBLEM if result.refused else 0)


__all__ = ["deadletters"]
