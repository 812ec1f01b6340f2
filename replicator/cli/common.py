"""What every command shares: loading the config, failing with one readable line, options.

Exit codes: 0 success; 1 the command ran and found a problem (verify found a difference, the
daemon stopped on a fatal error, status --wait timed out); 2 bad input or an error that
stopped the command (config, unreachable service, missing table). Errors are one readable
message on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from replicator.config import Config, PostgresStateConfig, load_config
from replicator.redact import redact, register_dsn, register_secret

EXIT_PROBLEM = 1
EXIT_ERROR = 2


def load(path: str) -> Config:
    """The config at ``path``, its secrets registered so that no output ever shows them."""
    config = load_config(path)
    source_dsn = getattr(config.source, "dsn", None)  # a file or an app-side source has none
    if source_dsn is not None:
        register_dsn(source_dsn.get_secret_value())
    state = config.state_store()
    if isinstance(state, PostgresStateConfig) and state.dsn is not None:
        register_dsn(state.dsn.get_secret_value())
    if config.kafka.sasl_password is not None:
        register_secret(config.kafka.sasl_password.get_secret_value())
    return config


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(code)


config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="TOML config file."
)
