"""``replicator copy``, the big-bang move, as a user runs it: real PostgresSaver and plain-Redis
saver sources written by a real graph (subgraph interrupts, a large value, unicode, deletes),
copied without Kafka to DynamoDB (moto) and SqliteSaver, compared through the savers' own reads
(``replicator verify``); a second run copies nothing; a changed thread is copied again; a
phased move copies only the threads named; bad input is refused with a named error."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.migration import Phase
from replicator.target_saver import target_saver
from tests.integration.harness import OTHER_KINDS, App, cli, move_phase, other_kind_targets, replicator_items
from tests.savers import REDIS_PREFIX_ENV, REDIS_URL_ENV, redis_saver

pytestmark = pytest.mark.integration


def _copy(config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = cli("copy", "--config", str(config), "--json", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return {t["target"]: t for t in report["targets"]}


def _verify(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = cli("verify", "--config", str(config), *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _has_blob_table(path: Path) -> bool:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'lgrepl_blobs'").fetchone() is not None


def _postgres_config(tmp_path: Path, dsn: str, moto: Any, table: str, bucket: str) -> Path:
    path, sqlite = tmp_path / "r.toml", tmp_path / "t.sqlite"
    path.write_text(
        f"""
[source]
kind = "postgres"
dsn = "{dsn}"

[kafka]  # not used by copy
bootstrap_servers = "127.0.0.1:9"

[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "{table}"
region = "us-east-1"
endpoint_url = "{moto.endpoint_url}"
s3_bucket = "{bucket}"
batch_events = 50

[[targets]]
name = "file"
kind = "sqlite"
path = "{sqlite}"
""",
        encoding="utf-8",
    )
    return path


def _to_a_sqlite_file(tmp_path: Path, source: str) -> Path:
    """A config copying the ``[source]`` given to the SQLite target ``file``."""
    return _config(
        tmp_path, source, f'[[targets]]\nname = "file"\nkind = "sqlite"\npath = "{tmp_path / "t.sqlite"}"\n'
    )


def _config(tmp_path: Path, source: str, targets: str) -> Path:
    """A config copying the ``[source]`` given to ``targets`` (positions and digests in a SQLite
    state store: the source is not Postgres)."""
    path = tmp_path / "r.toml"
    path.write_text(
        f"""
[source]
{source}

[state]
kind = "sqlite"
path = "{tmp_path / "state.sqlite"}"

[kafka]  # not used by copy
bootstrap_servers = "127.0.0.1:9"

{targets}""",
        encoding="utf-8",
    )
    return path


def test_copy_postgres_to_dynamodb_and_sqlite(
    app: App, pg_dsn: str, moto: Any, dynamo_table: str, s3_bucket: str, tmp_path: Path
) -> None:
    for i in range(6):
        app.converse(f"conv-{i}-ünï 🚀", turns=2, resume=i % 3 != 0)  # every third left at interrupt
    app.converse("big", attachment_bytes=600_000)  # over DynamoDB's item limit: offloaded to S3
    app.converse("gone", turns=1)
    app.delete("gone")
    config = _postgres_config(tmp_path, pg_dsn, moto, dynamo_table, s3_bucket)

    first = _copy(config)
    for name in ("dynamo", "file"):
        assert first[name]["copied"] == 7 and first[name]["unchanged"] == 0 and first[name]["failed"] == {}
        assert first[name]["events"] > 7 * 10
    out = _verify(config)
    assert "dynamo: 7 threads" in out and "file: 7 threads" in out and out.count("0 differences") == 2

    again = _copy(config)  # idempotent: nothing changed, nothing copied
    assert {n: (r["copied"], r["unchanged"]) for n, r in again.items()} == {"dynamo": (0, 7), "file": (0, 7)}

    app.converse("conv-1-ünï 🚀", turns=1)  # one thread changes, one is new, one is deleted
    app.converse("late", turns=1)
    app.delete("conv-2-ünï 🚀")
    third = _copy(config)
    assert {n: (r["copied"], r["unchanged"]) for n, r in third.items()} == {"dynamo": (2, 5), "file": (2, 5)}
    # The deleted thread is no longer listed by the source: a whole-store copy does not see it.
    # Named, it is copied as what the source holds (nothing), so the target drops it.
    listed = tmp_path / "threads.txt"
    listed.write_text("# phased: these two\nconv-2-ünï 🚀\nlate\n", encoding="utf-8")
    phased = _copy(config, "--threads-from", str(listed))
    assert {n: (r["threads"], r["copied"]) for n, r in phased.items()} == {"dynamo": (2, 1), "file": (2, 1)}
    out = _verify(config, "--target", "file")  # DynamoDB through its saver on moto: slow; once above
    assert "file: 7 threads" in out and "0 differences" in out

    # The app moves to the SQLite file and resumes a conversation left at its interrupt.
    with target_saver(config, "file") as saver:
        graph = build_graph(saver)
        pending = {"configurable": {"thread_id": "conv-0-ünï 🚀"}}
        assert graph.get_state(pending).next
        graph.invoke(Command(resume="on the file"), pending)
        assert "approved: on the file" in graph.get_state(pending).values["messages"]


def test_copy_from_any_saver_redis_to_sqlite(redis_server: Any, tmp_path: Path) -> None:
    prefix = f"src{uuid.uuid4().hex[:8]}"
    source = redis_saver(redis_server.url, prefix)
    graph = build_graph(source)
    for i in range(4):
        run_conversation(graph, f"r-{i} ✓", turns=2, resume=i != 0)
    source.delete_thread("r-3 ✓")
    env = {REDIS_URL_ENV: redis_server.url, REDIS_PREFIX_ENV: prefix}
    config = _to_a_sqlite_file(tmp_path, 'kind = "saver"\nfactory = "tests.savers:redis_from_env"')
    first = _copy(config, env=env)
    assert (first["file"]["copied"], first["file"]["failed"]) == (3, {})
    assert "file: 3 threads" in _verify(config, env=env)
    assert _copy(config, env=env)["file"]["unchanged"] == 3

    # `replicator run` cannot stream a saver: it says what to use instead.
    refused = cli("run", "--config", str(config), env=env)
    assert refused.returncode == 2 and "replicator copy" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_copy_refuses_bad_input_and_a_switched_app(
    app: App, pg_dsn: str, moto: Any, dynamo_table: str, s3_bucket: str, tmp_path: Path
) -> None:
    app.converse("one", turns=1)
    config = _postgres_config(tmp_path, pg_dsn, moto, dynamo_table, s3_bucket)

    both = cli("copy", "--config", str(config), "--threads", "a", "--threads-from", str(config))
    assert both.returncode == 2 and "--threads and --threads-from" in both.stderr

    bad_factory = tmp_path / "bad.toml"
    bad_factory.write_text(
        config.read_text(encoding="utf-8").replace(
            f'kind = "postgres"\ndsn = "{pg_dsn}"',
            'kind = "saver"\nfactory = "no_such_module_xyz:make"\n\n[state]\nkind = "sqlite"\n'
            f'path = "{tmp_path / "s.sqlite"}"',
        ),
        encoding="utf-8",
    )
    failed = cli("copy", "--config", str(bad_factory))
    assert failed.returncode == 2 and "source.factory" in failed.stderr
    assert "no_such_module_xyz" in failed.stderr
    assert "Traceback" not in failed.stderr

    move_phase(config, Phase.FENCING, Phase.CUT_OVER)  # the app now writes the target
    switched = cli("copy", "--config", str(config))
    assert switched.returncode == 2 and "cut_over" in switched.stderr
    assert not (tmp_path / "t.sqlite").exists()  # nothing was written


def test_copy_from_a_sqlite_saver_file_installs_nothing_in_it(tmp_path: Path) -> None:
    import sqlite3

    from tests.savers import sqlite_saver

    source_path = tmp_path / "app.sqlite"
    source = sqlite_saver(str(source_path))
    graph = build_graph(source)
    for i in range(3):
        run_conversation(graph, f"s-{i} ✓", turns=2, resume=i != 0, attachment_bytes=300_000 if i == 1 else 0)
    config = _to_a_sqlite_file(tmp_path, f'kind = "sqlite"\npath = "{source_path}"')
    first = _copy(config)
    assert (first["file"]["copied"], first["file"]["failed"]) == (3, {})
    out = _verify(config)
    assert "file: 3 threads" in out and "0 differences" in out
    assert _copy(config)["file"]["unchanged"] == 3
    with sqlite3.connect(source_path) as conn:  # a copy installs no changelog or trigger
        names = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'replicator%'")
        ]
    assert names == []


def test_copy_postgres_to_a_bigger_postgres_and_any_saver(
    app: App, pg_dsn: str, pg: Any, redis_server: Any, tmp_path: Path
) -> None:
    """The other target kinds that run here: PostgresSaver's tables in another database, and
    the generic target over the plain-Redis saver (Cosmos DB: no server here, see README)."""
    for i in range(3):
        app.converse(f"p-{i} ✓", turns=2, resume=i != 0)
    database = f"copy_{uuid.uuid4().hex[:10]}"
    target_dsn = pg.create_database(database)
    env = {REDIS_URL_ENV: redis_server.url, REDIS_PREFIX_ENV: f"cp{uuid.uuid4().hex[:8]}"}
    config = tmp_path / "r.toml"
    config.write_text(
        f"""
[source]
kind = "postgres"
dsn = "{pg_dsn}"

[kafka]
bootstrap_servers = "127.0.0.1:9"

[[targets]]
name = "bigger"
kind = "postgres"
dsn = "{target_dsn}"

[[targets]]
name = "redis"
kind = "saver"
factory = "tests.savers:redis_from_env"
""",
        encoding="utf-8",
    )
    try:
        first = _copy(config, env=env)
        assert {n: (r["copied"], r["failed"]) for n, r in first.items()} == {
            "bigger": (3, {}),
            "redis": (3, {}),
        }
        out = _verify(config, env=env)
        assert "bigger: 3 threads" in out and "redis: 3 threads" in out and out.count("0 differences") == 2
        again = _copy(config, env=env)
        assert {n: r["unchanged"] for n, r in again.items()} == {"bigger": 3, "redis": 3}
    finally:
        pg.drop_database(database)


@pytest.mark.parametrize("source_kind", ["sqlite", "saver"])
def test_copy_from_a_sqlite_file_or_any_saver_into_every_target_kind(
    source_kind: str,
    pg: Any,
    moto: Any,
    dynamo_table: str,
    s3_bucket: str,
    redis_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two sources besides Postgres (whose copies into every kind are above), each copied in
    one run into DynamoDB, a Postgres database, a SqliteSaver file and the generic saver target
    (here SqliteSaver through ``factory``), then equal through every target's saver; a deleted
    thread stays absent; a second run copies nothing; a conversation resumes on each target."""
    from tests.savers import SQLITE_PATH_ENV, sqlite_saver

    env = {SQLITE_PATH_ENV: str(tmp_path / "generic.sqlite")}
    if source_kind == "sqlite":
        source_path = tmp_path / "app.sqlite"
        source = sqlite_saver(str(source_path))
        source_toml = f'kind = "sqlite"\npath = "{source_path}"'
    else:
        prefix = f"src{uuid.uuid4().hex[:8]}"
        source = redis_saver(redis_server.url, prefix)
        env |= {REDIS_URL_ENV: redis_server.url, REDIS_PREFIX_ENV: prefix}
        source_toml = 'kind = "saver"\nfactory = "tests.savers:redis_from_env"'
    for key, value in env.items():  # the factories read it here too (target_saver below)
        monkeypatch.setenv(key, value)
    graph = build_graph(source)
    for i in range(3):  # the first left at its interrupt; the second with a large value
        run_conversation(graph, f"k-{i} ✓", turns=2, resume=i != 0, attachment_bytes=200_000 if i == 1 else 0)
    run_conversation(graph, "gone", turns=1)
    source.delete_thread("gone")

    database = f"copy_{uuid.uuid4().hex[:10]}"
    target_dsn = pg.create_database(database)
    config = _config(
        tmp_path,
        source_toml,
        f"""
[[targets]]
name = "dynamo"
kind = "dynamodb"
table = "{dynamo_table}"
region = "us-east-1"
endpoint_url = "{moto.endpoint_url}"
s3_bucket = "{s3_bucket}"

{other_kind_targets(target_dsn, tmp_path)}""",
    )
    targets = ("dynamo", *OTHER_KINDS)
    try:
        first = _copy(config, env=env)
        assert {n: (r["copied"], r["failed"]) for n, r in first.items()} == {t: (3, {}) for t in targets}
        out = _verify(config, env=env)
        assert out.count("0 differences") == 4, out
        assert all(f"{t}: 3 threads" in out for t in targets), out
        again = _copy(config, env=env)
        assert {n: (r["copied"], r["unchanged"]) for n, r in again.items()} == {t: (0, 3) for t in targets}

        # The move is over: `finish --drop` removes what only the replicator reads in each target
        # (no migration record for these sources), and every target's saver still reads the same.
        listed = cli("finish", "--config", str(config), env=env)
        assert listed.returncode == 0 and "no migration record" in listed.stdout, (
            listed.stdout + listed.stderr
        )
        file_target = tmp_path / "t.sqlite"
        assert replicator_items(moto.endpoint_url, dynamo_table) > 0 and _has_blob_table(file_target)
        dropped = cli("finish", "--config", str(config), "--drop", env=env)
        assert dropped.returncode == 0, dropped.stdout + dropped.stderr
        assert "target 'dynamo'" in dropped.stdout and "target 'file'" in dropped.stdout, dropped.stdout
        assert replicator_items(moto.endpoint_url, dynamo_table) == 0 and not _has_blob_table(file_target)
        assert _verify(config, env=env).count("0 differences") == 4
        for name in targets:  # and the app resumes on each, from what its saver reads
            with target_saver(config, name) as saver:
                assert saver.get_tuple({"configurable": {"thread_id": "gone", "checkpoint_ns": ""}}) is None
                moved = build_graph(saver)
                pending = {"configurable": {"thread_id": "k-0 ✓"}}
                assert moved.get_state(pending).next, name
                moved.invoke(Command(resume=f"on {name}"), pending)
                assert f"approved: on {name}" in moved.get_state(pending).values["messages"], name
    finally:
        pg.drop_database(database)
