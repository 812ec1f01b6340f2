"""Bad input gets one clear message naming what is wrong, a non-zero exit, and no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres import PostgresSaver

from replicator.embedded import EmbeddedPostgres, free_port
from tests.integration.harness import DaemonProcess, cli, load, wait_caught_up, write_config

pytestmark = pytest.mark.integration


def assert_error(result: Any, *fragments: str, code: int = 2) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"


@pytest.fixture
def saver_db(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        PostgresSaver(conn).setup()  # type: ignore[arg-type]
    return pg_dsn


def config(tmp_path: Path, **overrides: Any) -> Path:
    values: dict[str, Any] = {
        "dsn": "postgresql://postgres@127.0.0.1:1/none",
        "bootstrap": "127.0.0.1:1",
        "topic": "t",
        "endpoint": "http://127.0.0.1:1",
        "table": "checkpoints",
        "bucket": None,
        **overrides,
    }
    return write_config(tmp_path / "c.toml", **values)


def test_unreadable_config(tmp_path: Path) -> None:
    assert_error(cli("run", "--config", str(tmp_path / "missing.toml")), "cannot read config", "missing.toml")


def test_config_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[source\ndsn = 1\n")
    assert_error(cli("run", "--config", str(path)), "not valid TOML")


def test_invalid_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[source]\ndsn = "postgresql://x@h/db"\nslott = "x"\n[kafka]\n'
        '[[targets]]\nname = "d"\nkind = "dynamodb"\ntable = "t"\nbatch_events = 0\n'
    )
    assert_error(
        cli("check", "--config", str(path)),
        "source.slott: unknown key",
        "kafka.bootstrap_servers: required key is missing",
        "targets.0.batch_events",
    )


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text(
        '[source]\ndsn = "postgresql://app:${LGR_TEST_UNSET_PW}@h/db"\n'
        '[kafka]\nbootstrap_servers = "h:9092"\n'
        '[[targets]]\nname = "d"\ntable = "t"\n'
    )
    assert_error(cli("check", "--config", str(path)), "source.dsn", "LGR_TEST_UNSET_PW is not set")


def test_postgres_unreachable(tmp_path: Path) -> None:
    path = config(tmp_path, dsn=f"postgresql://app:hunter2secret@127.0.0.1:{free_port()}/app")
    result = cli("run", "--config", str(path))
    assert_error(result, "cannot connect to the source Postgres")
    assert "hunter2secret" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def replica_pg() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(wal_level="replica") as server:
        yield server


def test_wal_level_not_logical_says_how_to_fix(tmp_path: Path, replica_pg: EmbeddedPostgres) -> None:
    path = config(tmp_path, dsn=replica_pg.dsn)
    assert_error(
        cli("run", "--config", str(path)), "wal_level=replica", "ALTER SYSTEM SET wal_level = logical"
    )


def test_checkpoint_tables_missing(tmp_path: Path, pg_dsn: str) -> None:
    assert_error(
        cli("run", "--config", str(config(tmp_path, dsn=pg_dsn))),
        "no PostgresSaver table",
        "PostgresSaver.setup()",
    )


def test_broker_unreachable(tmp_path: Path, saver_db: str) -> None:
    port = free_port()
    path = config(tmp_path, dsn=saver_db, bootstrap=f"127.0.0.1:{port}")
    text = path.read_text().replace(
        "session_timeout_ms = 6000", "session_timeout_ms = 6000\nbootstrap_timeout_ms = 2000"
    )
    path.write_text(text)
    assert_error(cli("run", "--config", str(path)), "cannot reach Kafka", f"127.0.0.1:{port}")


def test_target_table_missing(
    tmp_path: Path, saver_db: str, broker: Any, kafka_topic: str, moto: Any
) -> None:
    path = config(
        tmp_path,
        dsn=saver_db,
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        endpoint=moto.endpoint_url,
        table="no-such-table",
    )
    assert_error(cli("run", "--config", str(path)), "no-such-table")


def test_reset_needs_confirmation(tmp_path: Path, saver_db: str) -> None:
    assert_error(cli("reset", "--config", str(config(tmp_path, dsn=saver_db))), "--yes")


def test_password_never_reaches_logs_status_or_metrics(
    tmp_path: Path, saver_db: str, broker: Any, kafka_topic: str, moto: Any, dynamo_table: str
) -> None:
    import urllib.request

    secret = "s3cr3t-Pa55word"
    dsn = saver_db.replace("postgres@", f"postgres:{secret}@")  # trust auth accepts any password
    port = free_port()
    path = write_config(
        tmp_path / "c.toml",
        dsn=dsn,
        bootstrap=broker.bootstrap_servers,
        topic=kafka_topic,
        endpoint=moto.endpoint_url,
        table=dynamo_table,
        bucket=None,
        extra=f'[http]\nlisten = "127.0.0.1:{port}"\n',
    )
    # Human console logs at debug level: the most verbose output there is.
    path.write_text(
        path.read_text().replace('level = "info"', 'level = "debug"').replace('"json"', '"console"')
    )
    daemon = DaemonProcess(path, tmp_path)
    daemon.start()
    try:
        wait_caught_up(load(path), daemon)
        pages = [
            urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=5).read().decode()
            for p in ("/status", "/metrics", "/readyz")
        ]
        status = cli("status", "--config", str(path), "--json")
        table = cli("status", "--config", str(path))
        verify = cli("verify", "--config", str(path))
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    everything = "".join(
        [daemon.output(), *pages, status.stdout, status.stderr, table.stdout, verify.stdout, verify.stderr]
    )
    assert (
        "daemon started" in everything
        and "caught_up" in everything
        and "langgraph_replicator_up" in everything
    )
    assert "[info     ] daemon started" in daemon.output()  # the console format, not JSON
    assert secret not in everything
