"""``replicator run`` and ``replicator check``: the daemon and its preflight."""

from __future__ import annotations

import sys

import click

from replicator.cli.common import config_option, load

# replicator.daemon.ROLES, spelt out: importing the daemon here would slow every command down.
ROLES = ("all", "capture", "apply")


@click.command()
@config_option
@click.option(
    "--log-format", type=click.Choice(["json", "console"]), default=None, help="Overrides [log] format."
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    show_default=True,
    help="capture: the publisher (owns the slot; run exactly one). apply: the appliers (run any "
    "number; they share each target's consumer group). all: both, in this process.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME",
    help="With --role apply: run only this target's applier (repeatable; default: every target).",
)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Overrides [http] listen (several processes of one config on one machine).",
)
def run(
    config_path: str, log_format: str | None, role: str, targets: tuple[str, ...], listen: str | None
) -> None:
    """Run the replication daemon until SIGTERM or SIGINT."""
    from replicator import logs
    from replicator.config import HttpConfig
    from replicator.daemon import Daemon
    from replicator.http import parse_listen

    config = load(config_path)
    if listen is not None:
        parse_listen(listen)  # a CONFIG error naming the expected form
        config = config.model_copy(update={"http": HttpConfig(listen=listen)})
    logs.configure(log_format or config.log.format, config.log.level)
    code = Daemon(config, role=role, only_targets=targets).run()
    sys.exit(code)


@click.command()
@config_option
def check(config_path: str) -> None:
    """Check config, source, broker and targets; creates only what `run` would create first
    (the topic, and a Postgres or SQLite target's tables), never a slot or a publication."""
    from replicator import logs
    from replicator.daemon import Daemon

    config = load(config_path)
    logs.configure("console", "warning")
    Daemon(config).preflight()
    click.echo("ok: source, broker and every target are reachable and set up")
