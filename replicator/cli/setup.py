"""``replicator setup``: the source database's publication, the replicator's schema and the
privileges of a least-privileged role, made by the command or printed for a DBA.

The SQL is one script (``connectors.sources.postgres.setup.setup_script``): ``--print-sql``
prints it and connects nowhere; without it, the command runs that same script with the config's
DSN, in one transaction, after checking that DSN's user may (else exit 2, nothing changed).
"""

from __future__ import annotations

import click

from replicator.cli.common import config_option, load
from replicator.errors import ErrorKind, ReplicatorError


@click.command()
@config_option
@click.option(
    "--print-sql",
    is_flag=True,
    help="Print the SQL for a DBA to run (psql -v ON_ERROR_STOP=1 -f FILE) and change nothing.",
)
@click.option(
    "--role",
    default=None,
    metavar="NAME",
    help="The role the replicator runs as (default: the user of source.dsn).",
)
@click.option(
    "--app-role",
    "app_roles",
    multiple=True,
    metavar="NAME",
    help="A role the app's RoutingSaver connects as: grant it the migration record (repeatable; "
    "without it the grants are printed commented out, to adapt).",
)
def setup(config_path: str, print_sql: bool, role: str | None, app_roles: tuple[str, ...]) -> None:
    """Create the publication and the replicator's schema, and grant a role what it needs.

    Needs a superuser (or the tables' owner, member of the role) in source.dsn; with
    --print-sql, prints exactly the SQL it would run, for a DBA, and connects nowhere. The
    replication slot is left to the first `replicator run`, which copies the tables in the
    snapshot the new slot exports.
    """
    from connectors.sources.postgres.config import PostgresSourceConfig
    from connectors.sources.postgres.setup import default_role, run_setup, setup_script

    config = load(config_path)
    source = config.source
    if not isinstance(source, PostgresSourceConfig):
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"source.kind {source.kind!r}: `replicator setup` prepares a Postgres source; "
            "this source needs no setup",
        )
    name = role or default_role(source.dsn.get_secret_value())
    if not name:
        raise ReplicatorError(
            ErrorKind.CONFIG, "source.dsn names no user: name the replicator's role with --role NAME"
        )
    if print_sql:
        click.echo(setup_script(source, name, app_roles), nl=False)
        return
    click.echo(run_setup(source, name, app_roles))
