"""An in-memory stand-in for one Cosmos DB container, shaped like the SDK's ``ContainerProxy``.

No Cosmos DB emulator runs on these machines, so what the Cosmos target writes is checked here,
through CosmosDBSaver's own reader, against this container: it keeps documents as the service
would (a JSON round trip, system properties added, ids unique per partition key) and answers
exactly the calls and queries the target and CosmosDBSaver make, raising the SDK's own
exceptions. Any other query fails the test, so a new query shape in either cannot slip by
unchecked. It proves the documents and the reads; it does not prove the service's behaviour
(consistency, throttling, limits), which only a live account can.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

Doc = dict[str, Any]
SYSTEM = ("_rid", "_self", "_etag", "_attachments", "_ts")

_BY_PARTITION = "SELECT * FROM c WHERE c.partition_key=@partition_key"
_BY_PARTITION_AND_ID = "SELECT * FROM c WHERE c.partition_key=@partition_key AND c.id=@checkpoint_key"
_IDS_BY_PREFIX = re.compile(
    r"""SELECT c(?:\["id"\]|\.id), c(?:\["partition_key"\]|\.partition_key) FROM c """
    r"""WHERE STARTSWITH\(c(?:\["partition_key"\]|\.partition_key), @p\)"""
)
_PARTITIONS = "SELECT DISTINCT VALUE c.partition_key FROM c"


class InMemoryContainer:
    def __init__(self, partition_key_path: str = "/partition_key") -> None:
        self.docs: dict[tuple[str, str], Doc] = {}  # (partition key, id) -> document
        self.partition_key_path = partition_key_path
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._etag = 0

    # -- what the service does to a document -------------------------------------------------

    def _stored(self, body: Doc) -> Doc:
        doc: Doc = json.loads(json.dumps(body))
        if not isinstance(doc.get("id"), str) or not isinstance(doc.get("partition_key"), str):
            raise CosmosHttpResponseError(status_code=400, message="id and partition_key must be strings")
        if len(doc["id"]) > 255 or any(c in doc["id"] for c in "/\\?#"):
            raise CosmosHttpResponseError(status_code=400, message=f"invalid id {doc['id']!r}")
        if len(json.dumps(doc).encode()) > 2 * 1024 * 1024:
            raise CosmosHttpResponseError(status_code=413, message="Request size is too large")
        self._etag += 1
        doc.update(
            {
                "_rid": "r",
                "_self": "s",
                "_etag": f'"{self._etag}"',
                "_attachments": "a",
                "_ts": int(time.time()),
            }
        )
        return doc

    @staticmethod
    def _public(doc: Doc) -> Doc:
        return dict(doc)

    # -- ContainerProxy ------------------------------------------------------------------------

    def read(self, **_: Any) -> Doc:
        self.calls.append("read")
        return {"id": "checkpoints", "partitionKey": {"paths": [self.partition_key_path], "kind": "Hash"}}

    def read_item(self, item: str, partition_key: str, **_: Any) -> Doc:
        self.calls.append("read_item")
        with self._lock:
            doc = self.docs.get((partition_key, item))
        if doc is None:
            raise CosmosResourceNotFoundError(status_code=404, message=f"{item} not found")
        return self._public(doc)

    def create_item(self, body: Doc, **_: Any) -> Doc:
        self.calls.append("create_item")
        with self._lock:
            doc = self._stored(body)
            key = (doc["partition_key"], doc["id"])
            if key in self.docs:
                raise CosmosResourceExistsError(status_code=409, message="Conflict")
            self.docs[key] = doc
        return self._public(doc)

    def upsert_item(self, body: Doc, **_: Any) -> Doc:
        self.calls.append("upsert_item")
        with self._lock:
            doc = self._stored(body)
            self.docs[(doc["partition_key"], doc["id"])] = doc
        return self._public(doc)

    def delete_item(self, item: str | Doc, partition_key: str, **_: Any) -> None:
        self.calls.append("delete_item")
        item_id = item if isinstance(item, str) else item["id"]
        with self._lock:
            if self.docs.pop((partition_key, item_id), None) is None:
                raise CosmosResourceNotFoundError(status_code=404, message=f"{item_id} not found")

    def execute_item_batch(self, batch_operations: Sequence[Any], partition_key: str, **_: Any) -> list[Doc]:
        """All operations or none, in one partition, at most 100 (as the service enforces)."""
        self.calls.append("execute_item_batch")
        if len(batch_operations) > 100:
            raise CosmosHttpResponseError(status_code=400, message="batch over 100 operations")
        with self._lock:
            staged = dict(self.docs)
            results: list[Doc] = []
            for index, operation in enumerate(batch_operations):
                kind, args = operation[0], operation[1]
                if kind != "upsert":
                    raise AssertionError(f"batch operation {kind!r} not modelled")
                doc = self._stored(args[0])
                if doc["partition_key"] != partition_key:
                    raise CosmosBatchOperationError(
                        error_index=index,
                        headers={},
                        status_code=400,
                        message="partition key of the item differs from the batch's",
                        operation_responses=[],
                    )
                staged[(partition_key, doc["id"])] = doc
                results.append({"statusCode": 200, "resourceBody": self._public(doc)})
            self.docs = staged
        return results

    def query_items(
        self,
        query: str,
        parameters: Sequence[dict[str, Any]] | None = None,
        partition_key: str | None = None,
        enable_cross_partition_query: bool | None = None,
        **_: Any,
    ) -> Iterator[Any]:
        self.calls.append("query_items")
        params = {p["name"]: p["value"] for p in parameters or ()}
        with self._lock:
            docs = [self._public(d) for d in self.docs.values()]
        if partition_key is None and not enable_cross_partition_query:
            raise CosmosHttpResponseError(status_code=400, message="cross-partition query not enabled")
        if partition_key is not None:
            docs = [d for d in docs if d["partition_key"] == partition_key]
        if query == _BY_PARTITION:
            return iter([d for d in docs if d["partition_key"] == params["@partition_key"]])
        if query == _BY_PARTITION_AND_ID:
            return iter(
                [
                    d
                    for d in docs
                    if d["partition_key"] == params["@partition_key"] and d["id"] == params["@checkpoint_key"]
                ]
            )
        if _IDS_BY_PREFIX.fullmatch(query):
            prefix = params["@p"]
            return iter(
                [
                    {"id": d["id"], "partition_key": d["partition_key"]}
                    for d in docs
                    if d["partition_key"].startswith(prefix)
                ]
            )
        if query == _PARTITIONS:
            return iter(sorted({d["partition_key"] for d in docs}))
        raise AssertionError(f"query not modelled by the in-memory container: {query!r}")

    def dump(self) -> dict[str, Any]:
        """Every document without its system properties, keyed by partition key and id."""
        with self._lock:
            return {
                f"cosmos {pk} | {item_id}": {k: v for k, v in doc.items() if k not in SYSTEM}
                for (pk, item_id), doc in self.docs.items()
            }
