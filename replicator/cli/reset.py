"""``replicator reset``: the source forgets the replicator, the state store forgets every position."""

from __future__ import annotations

import click

from replicator.cli.common import config_option, fail, load
from replicator.config import Config


def forget(config: Config, *, teardown: bool = False) -> list[str]:
    """Drop what the source keeps for the replicator and every saved position; what was dropped.
    ``teardown`` (``finish --drop``): also what setup added to the source (the publication)."""
    from connectors.registry import COPY_ONLY, make_source
    from replicator.state import open_state_store

    state = open_state_store(config, create=False)
    try:
        if config.source.kind in COPY_ONLY:  # read through its API: nothing added to it
            dropped: list[str] = []
        else:
            source = make_source(config.source, state)
            try:
                dropped = source.teardown() if teardown else source.reset()
            finally:
                source.close()
        state.clear()
    finally:
        state.close()
    return dropped


def running_appliers(config: Config) -> list[str]:
    """Apply processes of this config that recorded themselves recently (``host:pid`` per target):
    what ``finish --drop`` must not run beside, since it removes what they read."""
    from replicator.applier import group_members
    from replicator.state import open_state_store

    state = open_state_store(config, create=False)
    try:
        return [
            f"{target.name} on {member['host']}:{member['pid']}"
            for target in config.targets
            for member in group_members(state, target.name)
        ]
    finally:
        state.close()


def drop_target_state(config: Config) -> list[str]:
    """Remove what only the replicator reads from every target (blob state, write index): the
    migration is over, no stream continues there. The targets' saver data stays."""
    from connectors.registry import make_sink

    dropped: list[str] = []
    for target in config.targets:
        sink = make_sink(target)
        try:
            dropped += [f"target {target.name!r}: {line}" for line in sink.drop_own_state()]
        finally:
            sink.close()
    return dropped


@click.command()
@config_option
@click.option("--yes", is_flag=True, help="Confirm: drop the slot and every saved position.")
def reset(config_path: str, yes: bool) -> None:
    """Drop the replication slot and saved positions, so the next run copies everything anew."""
    config = load(config_path)
    if not yes:
        fail("reset drops the replication slot and every saved position; add --yes to confirm")
    dropped = forget(config)
    click.echo(f"dropped {' and '.join(dropped)} and saved positions; the next run starts with a full copy")
