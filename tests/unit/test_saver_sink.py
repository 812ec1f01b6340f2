"""The generic target's pure parts: loading a factory, telling a saver's errors apart, numbering
pending writes as savers do, and the config naming the wrong target. (The contract suite runs the
sink itself on InMemorySaver, SqliteSaver and the plain-Redis saver.)"""

from __future__ import annotations

import sqlite3

import pytest
from langgraph.checkpoint.base import CheckpointTuple

from connectors.sinks.saver import SaverLayout, load_factory, numbered_writes, saver_error
from replicator.config import parse_config
from replicator.errors import ErrorKind, ReplicatorError

BASE = {"source": {"dsn": "postgresql://app@db/app"}, "kafka": {"bootstrap_servers": "k:9092"}}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        ("tests.savers:no_such_factory", "has no 'no_such_factory'"),
        ("tests.savers:REDIS_URL_ENV", "is not callable"),
    ],
)
def test_a_factory_that_cannot_be_loaded_is_a_config_error_naming_the_target(
    spec: str, fragment: str
) -> None:
    with pytest.raises(ReplicatorError) as raised:
        load_factory(spec, "targets[redis-prod]")
    assert raised.value.kind is ErrorKind.CONFIG
    assert "targets[redis-prod].factory" in str(raised.value) and fragment in str(raised.value)


def test_a_factory_returning_something_else_is_refused_by_name() -> None:
    layout = SaverLayout("odd", "tests.savers:not_a_saver", None)
    with pytest.raises(ReplicatorError) as raised:
        layout.check()
    assert raised.value.kind is ErrorKind.CONFIG
    assert "targets[odd]" in str(raised.value) and "returned dict" in str(raised.value)


def test_a_factory_may_return_a_context_manager_which_close_exits() -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from tests.savers import bind

    layout = SaverLayout("cm", bind(lambda: SqliteSaver.from_conn_string(":memory:")), None)  # type: ignore[arg-type,return-value]
    saver = layout.saver()
    assert isinstance(saver, SqliteSaver)
    layout.close()
    with pytest.raises(sqlite3.ProgrammingError):  # the context manager closed its connection
        saver.conn.execute("SELECT 1")


def test_apply_without_the_state_store_says_where_blobs_live() -> None:
    layout = SaverLayout("memory", "langgraph.checkpoint.memory:InMemorySaver", None)
    with pytest.raises(ReplicatorError) as raised:
        layout.blob_store().get_many([("t", "", "messages", "1")])
    assert raised.value.kind is ErrorKind.INTERNAL and "state store" in str(raised.value)


class ConnectionError_(Exception):
    pass


ConnectionError_.__name__ = "ConnectionError"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionError_("Error 111 connecting to 127.0.0.1:6379"), ErrorKind.TARGET_UNREACHABLE),
        (TimeoutError("timed out"), ErrorKind.TARGET_UNREACHABLE),
        (sqlite3.OperationalError("database is locked"), ErrorKind.TARGET_THROTTLED),
        (ValueError("unsupported thing"), ErrorKind.TARGET_SETUP),
    ],
)
def test_saver_errors_are_told_apart_by_kind(exc: Exception, kind: ErrorKind) -> None:
    error = saver_error(exc, "redis-prod", "putting checkpoints")
    assert error.kind is kind
    assert "target 'redis-prod' (saver): putting checkpoints" in str(error)
    assert type(exc).__name__ in str(error)


def test_pending_writes_are_numbered_like_the_saver_numbered_them() -> None:
    tup = CheckpointTuple(
        config={"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c"}},
        checkpoint={},  # type: ignore[typeddict-item]
        metadata={},
        pending_writes=[
            ("a", "messages", 1),
            ("a", "__error__", "boom"),
            ("a", "flag", True),
            ("b", "messages", 2),
            ("b", "__interrupt__", ["why"]),
        ],
    )
    assert numbered_writes(tup) == {
        ("a", 0): ("messages", 1),
        ("a", -1): ("__error__", "boom"),
        ("a", 1): ("flag", True),
        ("b", 0): ("messages", 2),
        ("b", -3): ("__interrupt__", ["why"]),
    }


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ({"name": "r", "kind": "saver"}, "factory"),
        ({"name": "r", "kind": "saver", "factory": "no colon"}, "package.module:callable"),
        ({"name": "r", "kind": "saver", "factory": "m:f", "url": "redis://x"}, "url"),
    ],
)
def test_saver_target_config_errors_name_the_target(target: dict, fragment: str) -> None:
    with pytest.raises(ReplicatorError) as raised:
        parse_config({**BASE, "targets": [target]}, env={})
    assert raised.value.kind is ErrorKind.CONFIG
    assert "target 'r'" in str(raised.value) and fragment in str(raised.value)


def test_saver_target_config_is_accepted() -> None:
    config = parse_config(
        {**BASE, "targets": [{"name": "r", "kind": "saver", "factory": "myapp.savers:redis"}]}, env={}
    )
    assert config.targets[0].kind == "saver" and config.targets[0].factory == "myapp.savers:redis"
