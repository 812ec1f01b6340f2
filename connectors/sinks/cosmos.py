"""The Cosmos DB target: CosmosDBSaver's container, written with the official ``azure-cosmos`` SDK.

Documents come from ``cosmos_layout`` (pure); this module does the I/O. Each partition key's
upserts in a batch go as transactional batches (at most 100 operations and 2 MB each, atomic:
a checkpoint's pending writes land together); single deletes go one by one, a missing item
being already deleted; a thread deletion queries the thread's partitions by prefix, as
``CosmosDBSaver.delete_thread`` does. The SDK retries throttling (429) itself, honouring the
service's ``x-ms-retry-after-ms``; once it gives up, the batch fails as throttled and the applier
backs off and applies it again (every operation is an idempotent upsert or delete).

Credentials: ``key`` from the config (``${VAR}`` reads the environment), else ``$COSMOSDB_KEY``
(what CosmosDBSaver reads), else Azure identity (``DefaultAzureCredential``: managed identity,
workload identity, environment, ``az login``). No key is ever logged.

Not verified against a live account here (no Cosmos DB emulator runs on these machines): the
tests check the documents through CosmosDBSaver's own reader over an in-memory container and the
SDK's requests and error handling over a recording transport; see tests/unit/test_cosmos_*.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import structlog

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps, WholeCheckpoint
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import CheckpointRef, Form, WriteRef
from connectors.sinks import cosmos_layout as layout
from connectors.sinks.layout import LayeredSink
from connectors.sinks.state_blobs import StateBlobs
from replicator.errors import ErrorKind, ReplicatorError, translated
from replicator.state.base import StateStore

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_log = structlog.get_logger(__name__)

KEY_ENV = "COSMOSDB_KEY"
_THREAD_ITEMS = 'SELECT c["id"], c["partition_key"] FROM c WHERE STARTSWITH(c["partition_key"], @p)'
_THROTTLED = {429}
_UNREACHABLE = {408, 410, 449, 500, 502, 503, 504}
_SETUP = {401, 403, 404}
_DATA = {400, 413}


def error_kind(status: int | None) -> ErrorKind:
    if status in _THROTTLED:
        return ErrorKind.TARGET_THROTTLED
    if status in _SETUP:
        return ErrorKind.TARGET_SETUP
    if status in _DATA:
        return ErrorKind.MALFORMED_EVENT
    return ErrorKind.TARGET_UNREACHABLE  # connection trouble, timeouts, 5xx: retried


_HINTS = {
    ErrorKind.TARGET_SETUP: (
        "check the endpoint, database and container names, and that the key or the identity may "
        "write the container (Cosmos DB Built-in Data Contributor)"
    ),
    ErrorKind.TARGET_THROTTLED: "the container's throughput is exhausted; retried after a backoff",
}


def cosmos_error(exc: Exception, target: str, what: str) -> ReplicatorError:
    """An SDK error as a ReplicatorError naming the target (never the key)."""
    status = getattr(exc, "status_code", None)
    if status is None and type(exc).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError"):
        kind = ErrorKind.TARGET_SETUP
    else:
        kind = error_kind(status)
    hint = _HINTS.get(kind)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0][:300]
    return ReplicatorError(
        kind,
        f"target {target!r} (Cosmos DB): {what}: {f'HTTP {status}: ' if status else ''}"
        f"{type(exc).__name__}: {message}" + (f" ({hint})" if hint else ""),
    )


def bound_saver(container: Any) -> BaseCheckpointSaver[str]:
    """``CosmosDBSaver`` reading ``container`` (its constructor would open its own client from
    ``$COSMOSDB_ENDPOINT``): the attributes its methods use, set as its constructor sets them."""
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph_checkpoint_cosmosdb import CosmosDBSaver
    from langgraph_checkpoint_cosmosdb.cosmosSerializer import CosmosSerializer

    saver = CosmosDBSaver.__new__(CosmosDBSaver)
    BaseCheckpointSaver.__init__(saver)
    saver.reducer = None
    saver.messages_key = "messages"
    saver.container = container
    saver.cosmos_serde = CosmosSerializer(saver.serde)
    typed: BaseCheckpointSaver[str] = saver
    return typed


class CosmosLayout:
    """CosmosDBSaver's container (whole form); blobs in the replicator's state store."""

    form = Form.WHOLE

    def __init__(
        self,
        name: str,
        endpoint: str,
        database: str,
        container: str,
        key: str | None,
        state: StateStore | None,
        container_client: Any = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.database = database
        self.container_name = container
        self._key = key
        self.blobs = StateBlobs(name, state, f"target {name!r} (Cosmos DB)")
        self._container = container_client  # a ContainerProxy-shaped object (tests)
        self._client_options = client_options or {}  # extra CosmosClient keywords (transport, retries)
        self._client: Any = None
        self._lock = threading.Lock()
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        self._serde = JsonPlusSerializer()  # CosmosDBSaver's (its default serde)

    # ------------------------------------------------------------------ plumbing

    def _errors(self, what: str) -> AbstractContextManager[None]:
        from azure.core.exceptions import AzureError

        families: tuple[type[Exception], ...] = (AzureError,)
        try:
            from azure.identity import CredentialUnavailableError

            families += (CredentialUnavailableError,)
        except ImportError:  # pragma: no cover - azure-identity ships with the cosmos extra
            pass
        return translated(families, lambda exc: cosmos_error(exc, self.name, what))

    def container(self) -> Any:
        with self._lock:
            if self._container is None:
                from azure.cosmos import CosmosClient

                with self._errors("connecting"):
                    key = self._key or os.environ.get(KEY_ENV)
                    if key:
                        credential: Any = key
                    else:
                        from azure.identity import DefaultAzureCredential

                        credential = DefaultAzureCredential()
                    self._client = CosmosClient(self.endpoint, credential=credential, **self._client_options)
                    database = self._client.get_database_client(self.database)
                    self._container = database.get_container_client(self.container_name)
            return self._container

    # ------------------------------------------------------------------ Layout

    def check(self) -> None:
        container = self.container()
        with self._errors(f"reading container {self.container_name!r} of database {self.database!r}"):
            properties = container.read()
        paths = (properties.get("partitionKey") or {}).get("paths") or []
        if paths != ["/partition_key"]:
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"target {self.name!r} (Cosmos DB): container {self.container_name!r} has partition key "
                f"{paths}, CosmosDBSaver needs ['/partition_key'] (az cosmosdb sql container create "
                f"--name {self.container_name} --partition-key-path /partition_key ...)",
            )

    def blob_store(self) -> BlobStore:
        return self.blobs

    def _read_or_none(self, item_id: str, partition_key: str, what: str) -> dict[str, Any] | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        container = self.container()
        with self._errors(what):
            try:
                doc: dict[str, Any] = container.read_item(item=item_id, partition_key=partition_key)
            except CosmosResourceNotFoundError:
                return None
        return doc

    def stored_checkpoint(self, ref: CheckpointRef) -> WholeCheckpoint | None:
        t, ns, cid = ref
        doc = self._read_or_none(
            layout.checkpoint_id_of(t, ns, cid),
            layout.checkpoint_partition(t, ns),
            f"reading checkpoint {cid} of thread {t!r}",
        )
        return None if doc is None else layout.stored_checkpoint(doc, self._serde.loads_typed)

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        t, ns, cid, task, idx = ref
        doc = self._read_or_none(
            layout.write_id_of(t, ns, cid, task, idx),
            layout.write_partition(t, ns, cid),
            f"reading a write of thread {t!r}",
        )
        return None if doc is None else layout.stored_write(doc)

    def write(self, ops: DurableOps) -> None:
        planned = layout.plan(ops, self._serde.dumps_typed, self.name)
        container = self.container()
        self.blobs.apply(ops)
        for t in planned.deleted_threads:
            self._delete_thread(t)
        for item_id, partition_key in planned.deletes:
            self._delete(item_id, partition_key)
        for partition_key, docs in planned.batches:
            with self._errors(f"writing {len(docs)} items to partition {partition_key!r}"):
                container.execute_item_batch(
                    batch_operations=[("upsert", (doc,)) for doc in docs], partition_key=partition_key
                )

    def _delete(self, item_id: str, partition_key: str) -> None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        container = self.container()
        with self._errors(f"deleting item {item_id!r}"):
            try:
                container.delete_item(item=item_id, partition_key=partition_key)
            except CosmosResourceNotFoundError:
                pass  # already gone: a replay, or deleted with its thread

    def _delete_thread(self, t: str) -> None:
        container = self.container()
        for prefix in layout.thread_prefixes(t):
            with self._errors(f"listing the items of thread {t!r}"):
                docs = list(
                    container.query_items(
                        query=_THREAD_ITEMS,
                        parameters=[{"name": "@p", "value": prefix}],
                        enable_cross_partition_query=True,
                    )
                )
            for doc in docs:
                self._delete(doc["id"], doc["partition_key"])

    def saver(self) -> BaseCheckpointSaver[str]:
        return bound_saver(self.container())

    def drop_own_state(self) -> list[str]:
        """Nothing in the target: the blob state is in the state store (cleared with positions)."""
        return []

    def thread_ids(self) -> Iterable[str]:
        with self._errors("listing threads"):
            keys = list(
                self.container().query_items(
                    query="SELECT DISTINCT VALUE c.partition_key FROM c", enable_cross_partition_query=True
                )
            )
        return sorted({t for t in (layout.thread_of_partition(k) for k in keys) if t is not None})

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._container = None


class CosmosSink(LayeredSink):
    """``LayeredSink`` over ``CosmosLayout``: what ``[[targets]] kind = "cosmos"`` builds."""

    def __init__(self, cosmos: CosmosLayout, blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES) -> None:
        self.cosmos = cosmos
        super().__init__(cosmos, blob_cache_bytes)


__all__ = ["CosmosLayout", "CosmosSink", "bound_saver", "cosmos_error", "error_kind"]
