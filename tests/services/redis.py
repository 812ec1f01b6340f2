"""A throwaway Redis server for the tests: Debian's ``redis-server`` (core Redis, no modules).

The generic target (``kind = "saver"``) is verified on it through the plain-Redis LangGraph
saver (``langgraph-checkpoint-plainredis``), which needs no RedisJSON or RediSearch. In memory
only (no RDB snapshot, no AOF): a test's data lives as long as its server.
"""

from __future__ import annotations

import shutil
import socket

from replicator.embedded.services import _ProcessService
from replicator.errors import ErrorKind, ReplicatorError

__all__ = ["EmbeddedRedis", "redis_server_bin"]

HOST = "127.0.0.1"


def redis_server_bin() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            "redis-server is not installed: `apt-get install -y redis-server` (.ci/run does this)",
        )
    return found


class EmbeddedRedis(_ProcessService):
    """``redis-server`` as a child process on a free 127.0.0.1 port, persistence off."""

    _name = "redis"
    _prefix = "replicator-redis-"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        redis_server_bin()
        super().start()

    def _command(self) -> list[str]:
        return [
            redis_server_bin(),
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_file.parent),
        ]

    def _ready(self) -> bool:
        """It answers PING."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
