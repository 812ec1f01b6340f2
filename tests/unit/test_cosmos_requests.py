"""The Cosmos DB target's requests, built by the real ``azure-cosmos`` SDK and recorded at its HTTP
transport: NOT verified against a live account (no Cosmos DB runs on these machines).

What this proves: the target drives the SDK as intended (transactional batches per partition key
with the saver's documents, deletes that tolerate 404, the container check), the SDK's own retry
of a 429 honours ``x-ms-retry-after-ms``, and each failure the service can answer becomes the
right error kind naming the target and never the key. What it cannot prove: how a real account
answers (consistency, real throttling, limits), which the README says plainly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from azure.core.pipeline.transport import HttpResponse, HttpTransport

from connectors.langgraph.batch import DurableOps, WholeCheckpoint, Write
from connectors.sinks.cosmos import CosmosLayout
from replicator.errors import ErrorKind, ReplicatorError
from replicator.state import MemoryStateStore

ENDPOINT = "https://not-a-live-account.documents.azure.com:443/"
KEY = "c2VjcmV0LWtleS1uZXZlci1sb2dnZWQ="  # base64, as account keys are
ACCOUNT = {
    "id": "not-a-live-account",
    "writableLocations": [{"name": "West Europe", "databaseAccountEndpoint": ENDPOINT}],
    "readableLocations": [{"name": "West Europe", "databaseAccountEndpoint": ENDPOINT}],
    "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
}


class _Response(HttpResponse):
    def __init__(self, request: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(request, None)
        self.status_code = status
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.reason = "recorded"
        self.content_type = "application/json"
        self._body = json.dumps(body).encode()

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()


Answer = Callable[[Any], tuple[int, Any, dict[str, str]] | None]


class RecordingTransport(HttpTransport):
    """Answers the account and container reads, then whatever ``answer`` says (200 by default)."""

    def __init__(self, answer: Answer | None = None, partition_key_path: str = "/partition_key") -> None:
        self.requests: list[Any] = []
        self.answer = answer
        self.path = partition_key_path

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **_: Any) -> _Response:
        url = request.url
        if url.rstrip("/") == ENDPOINT.rstrip("/"):
            return _Response(request, 200, ACCOUNT)
        if request.method == "GET" and url.rstrip("/").endswith("/colls/checkpoints"):
            body = {
                "id": "checkpoints",
                "_rid": "rid=",
                "partitionKey": {"paths": [self.path], "kind": "Hash"},
            }
            return _Response(request, 200, body)
        self.requests.append(request)
        answered = self.answer(request) if self.answer else None
        if answered is not None:
            return _Response(request, *answered)
        if request.headers.get("x-ms-cosmos-is-batch-request") == "True":
            operations = json.loads(request.body)
            return _Response(request, 200, [{"statusCode": 200} for _ in operations])
        return _Response(request, 200, {})


def layout(transport: RecordingTransport) -> CosmosLayout:
    options = {"transport": transport, "retry_total": 3}
    return CosmosLayout(
        "cosmos-eu", ENDPOINT, "langgraph", "checkpoints", KEY, MemoryStateStore(), client_options=options
    )


def ops_with_writes(n: int) -> DurableOps:
    ops = DurableOps()
    ops.checkpoints[("t1", "", "c1")] = WholeCheckpoint(None, "msgpack", b"\x81\xa1v\x04", {"step": 1})
    for idx in range(n):
        ops.writes[("t1", "", "c1", "task", idx)] = Write("messages", "msgpack", b"\xa2hi", "")
    return ops


def test_batches_per_partition_key_with_the_savers_documents_not_a_live_account() -> None:
    transport = RecordingTransport()
    target = layout(transport)
    target.write(ops_with_writes(130))  # 130 writes in one partition: two batches (100 at most)
    batches = [r for r in transport.requests if r.headers.get("x-ms-cosmos-is-batch-request") == "True"]
    assert [r.method for r in batches] == ["POST"] * 3
    assert all(r.url.endswith("/dbs/langgraph/colls/checkpoints/docs/") for r in batches)
    assert all(r.headers.get("x-ms-cosmos-batch-atomic") == "True" for r in batches)
    by_partition = {r.headers["x-ms-documentdb-partitionkey"]: json.loads(r.body) for r in batches}
    assert set(by_partition) == {'["checkpoint$t1$$"]', '["writes$t1$$c1$$"]'}
    checkpoint = by_partition['["checkpoint$t1$$"]']
    assert [op["operationType"] for op in checkpoint] == ["Upsert"]
    doc = checkpoint[0]["resourceBody"]
    assert doc["id"] == "checkpoint$t1$$c1" and doc["parent_checkpoint_id"] == "" and doc["type"] == "msgpack"
    sizes = sorted(
        len(json.loads(r.body)) for r in batches if "writes" in r.headers["x-ms-documentdb-partitionkey"]
    )
    assert sizes == [30, 100]
    # the key signs requests (HMAC) and is never sent or logged
    assert all(KEY not in json.dumps(dict(r.headers)) for r in transport.requests)


def test_a_429_is_retried_by_the_sdk_after_the_services_retry_after() -> None:
    seen: list[int] = []

    def throttle_once(request: Any) -> tuple[int, Any, dict[str, str]] | None:
        seen.append(1)
        if len(seen) == 1:
            return 429, {"code": "TooManyRequests", "message": "throttled"}, {"x-ms-retry-after-ms": "5"}
        return None

    transport = RecordingTransport(throttle_once)
    layout(transport).write(ops_with_writes(0))
    assert len(transport.requests) == 2  # the same batch again, once the service said when


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, ErrorKind.TARGET_THROTTLED),
        (401, ErrorKind.TARGET_SETUP),
        (403, ErrorKind.TARGET_SETUP),
        (413, ErrorKind.MALFORMED_EVENT),
        (503, ErrorKind.TARGET_UNREACHABLE),
    ],
)
def test_service_errors_become_kinds_naming_the_target_never_the_key(status: int, kind: ErrorKind) -> None:
    def fail(request: Any) -> tuple[int, Any, dict[str, str]]:
        return status, {"code": str(status), "message": f"answered {status}"}, {"x-ms-retry-after-ms": "1"}

    with pytest.raises(ReplicatorError) as raised:
        layout(RecordingTransport(fail)).write(ops_with_writes(1))
    assert raised.value.kind is kind
    assert "target 'cosmos-eu' (Cosmos DB)" in str(raised.value) and f"HTTP {status}" in str(raised.value)
    assert KEY not in str(raised.value)


def test_deleting_what_is_already_gone_is_not_an_error() -> None:
    def gone(request: Any) -> tuple[int, Any, dict[str, str]] | None:
        return (404, {"code": "NotFound", "message": "gone"}, {}) if request.method == "DELETE" else None

    transport = RecordingTransport(gone)
    ops = DurableOps()
    ops.checkpoints[("t1", "", "c1")] = None
    ops.writes[("t1", "", "c1", "task", 0)] = None
    layout(transport).write(ops)
    deletes = [r for r in transport.requests if r.method == "DELETE"]
    assert [unquote(r.url.rsplit("/docs/", 1)[1]) for r in deletes] == [
        "checkpoint$t1$$c1/",
        "writes$t1$$c1$task$0/",
    ]


def test_a_container_without_the_savers_partition_key_is_refused() -> None:
    target = layout(RecordingTransport(partition_key_path="/thread_id"))
    with pytest.raises(ReplicatorError) as raised:
        target.check()
    assert raised.value.kind is ErrorKind.TARGET_SETUP
    assert "['/partition_key']" in str(raised.value) and "--partition-key-path" in str(raised.value)
