"""Saver factories for the generic target in tests: ``[[targets]] kind = "saver"`` with
``factory = "tests.savers:<name>"``, called with no arguments as a user's factory is.

A daemon process reads its store's address from the environment (``redis_from_env``,
``sqlite_from_env``), as a user's factory would; the in-process contract suite binds one factory
per store (``bind``), so that every sink of a store and the test share one saver (an
InMemorySaver lives only in its instance).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

REDIS_URL_ENV = "REPLICATOR_TEST_REDIS_URL"
REDIS_PREFIX_ENV = "REPLICATOR_TEST_REDIS_PREFIX"
SQLITE_PATH_ENV = "REPLICATOR_TEST_SQLITE_PATH"


def bind(make: Callable[[], BaseCheckpointSaver[Any]]) -> str:
    """Make ``make`` importable as a factory of this module; returns its ``module:callable``."""
    name = f"bound_{uuid.uuid4().hex[:12]}"
    setattr(sys.modules[__name__], name, make)
    return f"{__name__}:{name}"


def redis_saver(url: str, prefix: str = "lg") -> BaseCheckpointSaver[Any]:
    from langgraph_checkpoint_plainredis import RedisSaver

    saver: BaseCheckpointSaver[Any] = RedisSaver(url=url, prefix=prefix)
    return saver


def sqlite_saver(path: str) -> BaseCheckpointSaver[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def redis_from_env() -> BaseCheckpointSaver[Any]:
    return redis_saver(os.environ[REDIS_URL_ENV], os.environ.get(REDIS_PREFIX_ENV, "lg"))


def sqlite_from_env() -> BaseCheckpointSaver[Any]:
    return sqlite_saver(os.environ[SQLITE_PATH_ENV])


def not_a_saver() -> object:
    """A factory that returns something else: the target must be refused by name."""
    return {"not": "a saver"}
