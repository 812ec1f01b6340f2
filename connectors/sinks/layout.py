"""A sink = a layout + its I/O, driven by one generic sink over the LangGraph layer.

``Layout`` is all a target has to provide: which form its saver stores, how to write a planned
batch durably, where its blobs live, what it already holds (for unchanged fields), and its own
saver and thread list for verify. ``LayeredSink`` does the LangGraph part for every target
(batch planning, blob prefetch through the cache, split <-> whole conversion) and is what the
pipeline sees as a ``connectors.base.Sink``. A new target is one layout module (keys and items,
pure) plus its client code; it may be its own layout (``DynamoDBSink`` is).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps, StoredReader, apply_cache_ops, plan_batch
from connectors.langgraph.blobs import BlobCache, BlobStore
from connectors.langgraph.forms import Form
from replicator.events import DataChange

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver


class Layout(StoredReader, Protocol):
    name: str

    @property
    def form(self) -> Form:
        """How the target's saver stores a checkpoint (whole or split)."""
        ...

    def check(self) -> None:
        """Raise ReplicatorError naming what is wrong (unreachable, table missing)."""
        ...

    def blob_store(self) -> BlobStore:
        """Where the target keeps blobs written before the batch (whole form assembles from them)."""
        ...

    def write(self, ops: DurableOps) -> None:
        """Make ``ops`` durable: delete what its deleted threads held, then its entities.

        Must be idempotent (a replay writes the same ops again) and leave a saver reading the
        target consistent at every moment it can (e.g. a payload before the item naming it).
        """
        ...

    def saver(self) -> BaseCheckpointSaver[str]: ...

    def thread_ids(self) -> Iterable[str]: ...

    def drop_own_state(self) -> list[str]:
        """Remove what only the replicator reads from the target (its blob state, indexes),
        never what the target's saver reads; what was removed, one line each. For after the
        migration (``replicator finish --drop``): no stream can continue without it."""
        ...

    def close(self) -> None: ...


class LayeredSink:
    """The ``Sink`` every target gets: plans each batch with the LangGraph layer, then hands the
    net effect to its layout.

    ``missing_blobs`` counts channel values a checkpoint should have had but whose blob was not
    found (legitimate when a suffix of the stream is replayed after the thread was deleted);
    ``missing_payloads`` counts unchanged-TOAST updates whose stored entity was absent;
    ``blob_lookups`` counts the blobs read from the target's blob store.
    """

    def __init__(self, layout: Layout, blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES) -> None:
        self.layout = layout
        self.name = layout.name
        self.form: Form = layout.form  # for callers that treat split and whole targets apart
        self.cache = BlobCache(blob_cache_bytes)
        self.missing_blobs = 0
        self.missing_payloads = 0
        self.blob_lookups = 0

    def check(self) -> None:
        self.layout.check()

    def apply(self, events: Sequence[DataChange]) -> None:
        if not events:
            return
        layout = self.layout
        planned = plan_batch(events, layout.form, self.cache, layout.blob_store(), layout, self.name)
        self.blob_lookups += planned.blob_lookups
        self.missing_blobs += planned.missing_blobs
        self.missing_payloads += planned.missing_payloads
        if planned.ops:
            layout.write(planned.ops)
        apply_cache_ops(self.cache, planned.cache_ops)  # only now that the batch is durable

    def saver(self) -> BaseCheckpointSaver[str]:
        return self.layout.saver()

    def thread_ids(self) -> Iterable[str]:
        return self.layout.thread_ids()

    def drop_own_state(self) -> list[str]:
        self.cache = BlobCache(self.cache.capacity)  # what it caches is gone from the target
        return self.layout.drop_own_state()

    def close(self) -> None:
        self.layout.close()
