"""``replicator run`` and ``replicator check``: the daemon and its preflight."""

from __future__ import annotations

import sys

import click

from replicator.cli.common import config_option, load


@click.command()
@config_option
@click.option(
    "--log-format", type=click.Choice(["json", "console"]), default=None, help="Overrides [log] format."
)
def run(config_path: str, log_format: str | None) -> None:
    """Run the replication daemon until SIGTERM or SIGINT."""
    from replicator import logs
    from replicator.daemon import Daemon

    config = load(config_path)
    logs.configure(log_format or config.log.format, config.log.level)
    code = Daemon(config).run()
    sys.exit(code)


@click.command()
@config_option
def check(config_path: str) -> None:
    """Check config, source, broker and targets without changing anything but the topic."""
    from replicator import logs
    from replicator.daemon import Daemon

    config = load(config_path)
    logs.configure("console", "warning")
    Daemon(config).preflight()
    click.echo("ok: source, broker and every target are reachable and set up")
