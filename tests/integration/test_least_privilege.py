"""The whole pipeline as a least-privileged role: LOGIN REPLICATION, then what `replicator setup
--print-sql` grants it, applied by hand with psql as a superuser; nothing else.

The app writes real LangGraph conversations as the superuser (plain PostgresSaver) and as its
own role (through RoutingSaver, with the grants `--app-role` printed). The daemon, `check`,
`status` and the comparison through both savers all connect as the least-privileged role.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.embedded.services import find_postgres_bin_dir
from replicator.routing import RoutingSaver
from replicator.state import STATE_SCHEMA
from tests.integration.harness import (
    App,
    DaemonProcess,
    assert_equal,
    cli,
    load,
    wait_caught_up,
    write_config,
)

pytestmark = pytest.mark.integration

ROLE = "replicator_rl"
APP_ROLE = "app_rl"


def assert_error(result: Any, *fragments: str) -> str:
    output: str = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    return output


def as_role(config: Path, dsn: str, role: str, path: Path) -> Path:
    """``config`` (same slot, publication, topic, target) connecting as ``role``."""
    text = config.read_text().replace(f'dsn = "{dsn}"', f'dsn = "{make_conninfo(dsn, user=role)}"')
    path.write_text(text)
    return path


def psql(dsn: str, script: Path) -> None:
    """Apply a file the way a DBA does: psql, stop at the first error."""
    binary = find_postgres_bin_dir() / "psql"
    done = subprocess.run(
        [str(binary), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def published(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pubname FROM pg_publication"
            " UNION ALL SELECT nspname FROM pg_namespace WHERE nspname = %s",
            (STATE_SCHEMA,),
        ).fetchall()


@pytest.fixture
def roles(pg_dsn: str) -> Iterator[None]:
    """The replicator's role with LOGIN REPLICATION only, and an app role with LOGIN only."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN REPLICATION")
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
    yield
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for role in (ROLE, APP_ROLE):  # roles are the cluster's: leave none behind
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_pipeline_runs_as_least_privileged_role(
    tmp_path: Path,
    pg_dsn: str,
    roles: None,
    broker: Any,
    kafka_topic: str,
    moto: Any,
    dynamo_table: str,
    s3_bucket: str,
) -> None:
    app = App(pg_dsn)  # the superuser: PostgresSaver.setup() creates the three tables
    admin_config = write_config(
        tmp_path / "admin.toml",
        dsn=pg_dsn,
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        endpoint=moto.endpoint_url,
        table=dynamo_table,
        bucket=s3_bucket,
    )
    config_path = as_role(admin_config, pg_dsn, ROLE, tmp_path / "replicator.toml")
    app_config = as_role(admin_config, pg_dsn, APP_ROLE, tmp_path / "app.toml")
    config = load(config_path)

    # Before setup: the preflight names everything missing and how to fix it.
    assert_error(
        cli("check", "--config", str(config_path)),
        f"the source user '{ROLE}' lacks",
        "SELECT on public.checkpoint_blobs, public.checkpoint_writes, public.checkpoints",
        f"the publication '{config.source.publication}'",  # type: ignore[union-attr]
        f"the schema {STATE_SCHEMA}",
        f"replicator setup --config FILE --print-sql --role {ROLE}",
    )
    # The role cannot set itself up: named, exit 2, nothing created.
    assert_error(
        cli("setup", "--config", str(config_path)),
        f"as '{ROLE}', which lacks",
        "ownership of the checkpoint tables",
        "CREATE on the database",
        "Nothing was changed",
    )
    assert published(pg_dsn) == []

    printed = cli(
        "setup", "--config", str(admin_config), "--print-sql", "--role", ROLE, "--app-role", APP_ROLE
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("-- langgraph-replicator") and printed.stdout.rstrip().endswith(
        "COMMIT;"
    )
    assert published(pg_dsn) == []  # --print-sql changes nothing
    script = tmp_path / "setup.sql"
    script.write_text(printed.stdout)
    psql(pg_dsn, script)
    psql(pg_dsn, script)  # idempotent
    again = cli("setup", "--config", str(admin_config), "--role", ROLE, "--app-role", APP_ROLE)
    assert again.returncode == 0, again.stdout + again.stderr  # the command runs the same script
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (STATE_SCHEMA,)
        ).fetchone()
        assert owner == (ROLE,)
        (superuser,) = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (ROLE,)
        ).fetchone() or (True,)
        assert not superuser
        # The app's role owns its checkpoint tables in production; here it gets their rights.
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON checkpoints, checkpoint_blobs, checkpoint_writes"
            f" TO {APP_ROLE}"
        )

    check = cli("check", "--config", str(config_path))
    assert check.returncode == 0, check.stdout + check.stderr

    for i in range(2):  # before the daemon: carried by the initial copy, in the slot's snapshot
        app.converse(f"before-{i}", turns=2)
    daemon = DaemonProcess(config_path, tmp_path)
    daemon.start()
    try:
        app.converse("live-0", turns=2)
        with RoutingSaver.from_config(app_config, setup=False) as saver:  # the app's own role
            run_conversation(build_graph(saver), "routed-0", turns=2)
        app.delete("before-1")
        wait_caught_up(config, daemon, timeout=90)
        assert_equal(config, threads=3)  # the source read as the least-privileged role

        status = cli("status", "--config", str(config_path), "--json", "--wait", "30")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["caught_up"] is True
        assert report["migration"]["recorded"] is True
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    assert "permission denied" not in daemon.output()
