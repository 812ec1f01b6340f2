"""SqliteSaver's file read one whole thread at a time, for ``replicator copy`` (a
``connectors.base.ThreadSource``): the source's own ``threads`` and ``thread_events``, without
installing anything in the file."""

from __future__ import annotations

from connectors.sources.sqlite.config import SqliteSourceConfig
from connectors.sources.sqlite.source import SqliteSource
from replicator.events import DataChange
from replicator.state import MemoryStateStore


class SqliteThreads:
    """Each thread in one read transaction: a thread the app writes meanwhile is copied as it
    was at one instant."""

    def __init__(self, config: SqliteSourceConfig) -> None:
        self._source = SqliteSource(config, MemoryStateStore())
        try:
            self._source.check()
        except BaseException:
            self._source.close()
            raise

    def threads(self) -> list[str]:
        return self._source.threads()

    def thread_events(self, thread_id: str) -> list[DataChange]:
        return self._source.thread_events(thread_id)

    def close(self) -> None:
        self._source.close()


__all__ = ["SqliteThreads"]
