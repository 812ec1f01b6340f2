"""Any LangGraph saver as a ``ThreadSource`` for ``replicator copy``: a team on Redis, MongoDB
or any store with a saver moves without the replicator knowing its layout.

Read only through the saver's API: ``list(None)`` finds the threads, ``list`` of one thread
gives every namespace and checkpoint with its parent, metadata and pending writes. A saver has
no transaction across calls: a thread the app writes while it is copied may be copied
between two of its writes (stop the app first, or copy again after it stopped).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from connectors.langgraph.tuples import tuple_events, tuples_digest
from connectors.saver_factory import open_saver
from connectors.sources.saver.config import SaverSourceConfig
from replicator.errors import ErrorKind, ReplicatorError, translated
from replicator.events import DataChange, SourceMeta, ThreadDeletion


def _source_error(exc: BaseException, what: str) -> ReplicatorError:
    if isinstance(exc, ReplicatorError):
        return exc
    message = f"source (saver): {what}: {type(exc).__name__}: {exc}"
    return ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, message)


class SaverThreads:
    def __init__(self, config: SaverSourceConfig) -> None:
        self.config = config
        self._exit = ExitStack()
        self._digests: dict[str, str] = {}
        with self._errors("calling the factory"):
            self._saver: BaseCheckpointSaver[Any] = open_saver(config.factory, "source", self._exit)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return translated(Exception, lambda exc: _source_error(exc, what))

    def saver(self) -> BaseCheckpointSaver[Any]:
        """The store's own saver (``replicator verify`` reads the source through it)."""
        return self._saver

    def threads(self) -> list[str]:
        with self._errors("listing threads"):
            return sorted({str(tup.config["configurable"]["thread_id"]) for tup in self._saver.list(None)})

    def thread_ids(self) -> list[str]:
        return self.threads()

    def thread_events(self, thread_id: str) -> list[DataChange]:
        meta = SourceMeta(position=0, snapshot=True)
        events: list[DataChange] = [ThreadDeletion(thread_id, meta)]
        with self._errors(f"reading thread {thread_id!r}"):
            tuples = list(self._saver.list(RunnableConfig(configurable={"thread_id": thread_id})))
            for tup in reversed(tuples):  # oldest first, as the app wrote them
                events.extend(tuple_events(tup, self._saver.serde, meta))
        self._digests[thread_id] = tuples_digest(tuples)
        return events

    def digest(self, events: list[DataChange]) -> str:
        """What a thread read last holds, by value: its events' bytes are not stable here (a set
        is serialized in hash order, which differs between processes)."""
        first = events[0]
        assert isinstance(first, ThreadDeletion)
        return self._digests.pop(first.thread_id)

    def close(self) -> None:
        with self._errors("closing the saver"):
            self._exit.close()


def saver_next_version(config: SaverSourceConfig) -> Callable[[Any, None], Any]:
    """The source saver's own ``get_next_version`` (the saver is built and closed again)."""
    source = SaverThreads(config)
    try:
        version: Callable[[Any, None], Any] = source.saver().get_next_version
        return version
    finally:
        source.close()


__all__ = ["SaverThreads", "saver_next_version"]
