"""The replicator's own tables are defined once: the runtime's create-if-missing statements and
`replicator setup`'s script are rendered from the same definitions, and `--print-sql` connects
nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from connectors.sources.postgres import ddl
from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.setup import default_role, setup_script
from replicator.cli import cli


def source(**overrides: str) -> PostgresSourceConfig:
    values = {"dsn": "postgresql://admin@db.example:5432/app", "slot": "s", "publication": "p", **overrides}
    return PostgresSourceConfig.model_validate(values)


def test_runtime_and_setup_share_each_table_definition() -> None:
    script = setup_script(source(), "replicator_rl")
    runtime = {
        "state": ddl.ENSURE_STATE,
        "meta": ddl.ENSURE_META,
        "blobs": ddl.ENSURE_BLOBS,
        "migration": ddl.ENSURE_MIGRATION,
        "held_threads": ddl.ENSURE_HELD,
    }
    assert set(runtime) == set(ddl.TABLES) == set(ddl.STATE_TABLES + ddl.CONTROL_TABLES)
    for table, ensure in runtime.items():
        create = ddl.create_table(table)
        assert create in ensure and f"to_regclass('{ddl.STATE_SCHEMA}.{table}') IS NULL" in ensure
        assert f'{create};\nALTER TABLE {ddl.STATE_SCHEMA}.{table} OWNER TO "replicator_rl";' in script
    assert ddl.create_schema() in ddl.ENSURE_SCHEMA
    assert ddl.MIGRATION_ROW.split("VALUES")[0] in script


def test_script_is_one_transaction_for_the_named_roles() -> None:
    script = setup_script(source(schema="app"), "replicator_rl", ("app_rl",))
    assert script.startswith("-- ") and script.rstrip().endswith("COMMIT;")
    assert "\nBEGIN;\n" in script and 'CREATE PUBLICATION "p" FOR TABLE' in script
    assert (
        'GRANT SELECT ON TABLE "app"."checkpoint_blobs", "app"."checkpoints", "app"."checkpoint_writes"'
        in script
    )
    assert 'GRANT USAGE ON SCHEMA "app" TO "replicator_rl";' in script
    assert f'GRANT SELECT, INSERT, UPDATE ON TABLE {ddl.STATE_SCHEMA}.migration TO "app_rl";' in script
    assert "<app_role>" not in script
    # Without an app role, its grants are a commented template; nothing creates the slot.
    template = setup_script(source(), "replicator_rl")
    assert f"-- GRANT USAGE ON SCHEMA {ddl.STATE_SCHEMA} TO <app_role>;" in template
    assert "CREATE_REPLICATION_SLOT" not in template and "pg_create_logical_replication_slot" not in template


def test_names_are_quoted() -> None:
    script = setup_script(source(), 'odd"name', ("o'app",))
    assert 'ALTER ROLE "odd""name" WITH REPLICATION;' in script
    assert "WHERE r.rolname = 'odd\"name'" in script
    assert 'TO "o\'app";' in script


def test_default_role_is_the_dsn_user() -> None:
    assert default_role("postgresql://rl:pw@h/db") == "rl"
    assert default_role("host=h dbname=db user=rl") == "rl"
    assert default_role("postgresql://h/db") is None


def test_print_sql_connects_nowhere(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[source]\ndsn = "postgresql://admin@127.0.0.1:1/app"\nslot = "s1"\npublication = "p1"\n'
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
        '[[targets]]\nname = "d"\nkind = "dynamodb"\ntable = "t"\n'
    )
    result = CliRunner().invoke(cli, ["setup", "--config", str(config), "--print-sql", "--role", "rl"])
    assert result.exit_code == 0, result.output
    assert result.output == setup_script(
        source(dsn="postgresql://admin@127.0.0.1:1/app", slot="s1", publication="p1"), "rl"
    )
    # Without --role: the DSN's user.
    result = CliRunner().invoke(cli, ["setup", "--config", str(config), "--print-sql"])
    assert re.search(r'ALTER ROLE "admin" WITH REPLICATION;', result.output)
