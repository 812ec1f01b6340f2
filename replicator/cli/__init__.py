"""``replicator``: one module per command group, joined by the table below.

Exit codes and the error format are in ``common``: 0 success, 1 a problem found, 2 an error
that stopped the command; errors are one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import sys

import click

from replicator.cli.common import EXIT_ERROR, EXIT_PROBLEM, fail
from replicator.cli.copy import copy
from replicator.cli.cutover import cutover, dual_write, finish, rollback
from replicator.cli.deadletters import deadletters
from replicator.cli.demo import demo
from replicator.cli.reset import reset
from replicator.cli.run import check, run
from replicator.cli.setup import setup
from replicator.cli.status import status
from replicator.cli.verify import verify
from replicator.errors import ReplicatorError

COMMANDS: tuple[click.Command, ...] = (
    run,
    check,
    setup,
    status,
    deadletters,
    verify,
    copy,
    cutover,
    rollback,
    finish,
    dual_write,
    reset,
    demo,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Replicate LangGraph checkpoints from one store to another while the app keeps running."""
    from replicator import logs

    # Logs go to stderr, warnings and up, so that --json output stays one JSON object on stdout;
    # `run` configures the daemon's own logging from the config.
    logs.configure("console", "warning")


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", EXIT_PROBLEM)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except ReplicatorError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        fail(f"unexpected {type(exc).__name__}: {exc}")
