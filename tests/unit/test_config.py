"""Config: every error names the key and the reason; secrets come from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.config import load_config, parse_config
from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import redact, register_dsn

MINIMAL = {
    "source": {"dsn": "postgresql://app:${PG_PW}@db:5432/app"},
    "kafka": {"bootstrap_servers": "k1:9092, k2:9092", "sasl_password": "${KAFKA_PW}"},
    "targets": [{"name": "dynamo", "table": "checkpoints"}],
}


def test_environment_references_are_expanded_and_kept_secret() -> None:
    config = parse_config(MINIMAL, env={"PG_PW": "pg-secret", "KAFKA_PW": "kafka-secret"})
    assert config.source.dsn.get_secret_value() == "postgresql://app:pg-secret@db:5432/app"
    assert "pg-secret" not in repr(config) and "kafka-secret" not in repr(config)
    assert config.kafka.client_options()["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert config.targets[0].region == "us-east-1"


def test_missing_environment_variable_names_key_and_variable() -> None:
    with pytest.raises(ReplicatorError) as raised:
        parse_config(MINIMAL, env={"PG_PW": "x"})
    assert "kafka.sasl_password" in str(raised.value) and "KAFKA_PW is not set" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"source": {"dsn": "x", "slot": "Bad-Slot"}}, "source.slot"),
        ({"kafka": {"bootstrap_servers": "k:1", "max_message_bytes": 10}}, "kafka.max_message_bytes"),
        ({"targets": []}, "targets"),
        ({"targets": [{"name": "a", "table": "t"}, {"name": "a", "table": "u"}]}, "repeated: a"),
        ({"targets": [{"name": "a", "table": "t", "kind": "cassandra"}]}, "targets.0"),
        ({"log": {"format": "xml"}}, "log.format"),
    ],
)
def test_invalid_values_name_the_key(change: dict, fragment: str) -> None:
    with pytest.raises(ReplicatorError) as raised:
        parse_config({**MINIMAL, **change}, env={"PG_PW": "x", "KAFKA_PW": "y"})
    assert raised.value.kind is ErrorKind.CONFIG
    assert fragment in str(raised.value)


def test_unreadable_and_non_toml_files(tmp_path: Path) -> None:
    with pytest.raises(ReplicatorError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\n")
    with pytest.raises(ReplicatorError, match="not valid TOML"):
        load_config(bad)


def test_redaction_masks_dsn_passwords_everywhere() -> None:
    register_dsn("postgresql://app:Zq9-secret@db/app")
    assert "Zq9-secret" not in redact("connect failed for postgresql://app:Zq9-secret@db/app: Zq9-secret")
    assert redact("password=hunter2 host=x") == "password=*** host=x"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"targets": [{"name": "a", "table": "t", "kind": "foo"}]},
            "targets.0.kind: 'foo' is not a target kind; one of: dynamodb",
        ),
        (
            {"source": {"dsn": "x", "kind": "mysql"}},
            "source.kind: 'mysql' is not a source kind; one of: postgres",
        ),
        (
            {"state": {"kind": "redis"}},
            "state.kind: 'redis' is not a state store kind; one of: postgres, sqlite",
        ),
        ({"state": {"kind": "sqlite"}}, "state.path: required key is missing"),
        ({"targets": [{"name": "a"}]}, "targets.0.table: required key is missing"),
    ],
)
def test_unknown_kinds_list_the_kinds_and_member_keys_keep_their_path(change: dict, message: str) -> None:
    with pytest.raises(ReplicatorError) as raised:
        parse_config({**MINIMAL, **change}, env={"PG_PW": "x", "KAFKA_PW": "y"})
    assert raised.value.kind is ErrorKind.CONFIG
    assert message in str(raised.value)


def test_state_store_defaults_to_the_source_database() -> None:
    env = {"PG_PW": "x", "KAFKA_PW": "y"}
    default = parse_config(MINIMAL, env=env).state_store()
    assert default.kind == "postgres" and default.dsn is not None
    assert default.dsn.get_secret_value() == "postgresql://app:x@db:5432/app"
    own = parse_config({**MINIMAL, "state": {"dsn": "postgresql://s/state"}}, env=env).state_store()
    assert own.kind == "postgres" and own.dsn is not None and own.dsn.get_secret_value().endswith("/state")
    sqlite = parse_config({**MINIMAL, "state": {"kind": "sqlite", "path": "/var/lib/r.db"}}, env=env)
    assert sqlite.state_store().kind == "sqlite"


def test_connector_configs_are_reexported() -> None:
    from connectors.sinks.dynamodb_config import DynamoDBTargetConfig
    from connectors.sources.postgres.config import PostgresSourceConfig
    from replicator import config

    assert config.DynamoDBTargetConfig is DynamoDBTargetConfig
    assert config.PostgresSourceConfig is PostgresSourceConfig
