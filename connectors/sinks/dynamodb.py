"""Sink writing the table layout of langgraph-checkpoint-aws ``DynamoDBSaver``: the AWS I/O.

Where items go is ``dynamodb_layout`` (pure); what a batch leaves behind is planned by the
LangGraph layer (``connectors.langgraph``) through ``LayeredSink``. This module talks to AWS:
boto3 clients, BatchWriteItem chunking and unprocessed items, BatchGetItem for the blob store,
S3 offload, retries with backoff and the classification of AWS errors by code.

A planned batch is written in three rounds: payloads (S3 objects, ``CHUNK_`` items, blob store
items, write index items), then meta items, then deletes, so a meta item is never visible before
its payload.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
import structlog
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_random_exponential,
)

from connectors.config import DEFAULT_BLOB_CACHE_BYTES
from connectors.langgraph.batch import DurableOps, WholeCheckpoint
from connectors.langgraph.blobs import BlobStore
from connectors.langgraph.forms import ABSENT, Blob, BlobRef, CheckpointRef, Form, WriteRef
from connectors.sinks.chunks import chunked
from connectors.sinks.dynamodb_layout import (
    BLOB_PK_PREFIX,
    BLOB_S3_PREFIX,
    META,
    PAYLOAD,
    REPLICATOR_PK_PREFIX,
    S3_OFFLOAD_THRESHOLD,
    WRITES_INDEX_PK_PREFIX,
    DynamoDBLayout,
    Existing,
    Item,
    ItemPlan,
    blob_pk,
    blob_sk,
    checkpoint_chunk_pk,
    checkpoint_pk,
    checkpoint_s3_key,
    checkpoint_sk,
    indexed_checkpoint,
    item_size,
    key,
    stored_checkpoint,
    thread_of_item,
    write_chunk_pk,
    write_s3_key,
    writes_index_pk,
    writes_pk,
    writes_sk,
)
from connectors.sinks.layout import LayeredSink
from replicator.errors import ErrorKind, ReplicatorError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_log = structlog.get_logger(__name__)

_BATCH_WRITE_ITEMS = 25
_BATCH_WRITE_BYTES = 15 * 1024 * 1024  # below the 16 MB request limit, leaving room for framing
_BATCH_GET_KEYS = 100
_S3_DELETE_KEYS = 1000
_DROP_KEYS = 2500  # replicator items deleted per round by drop_own_state

_THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
        "SlowDown",
        "TooManyRequestsException",
    }
)
_SETUP_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchBucket",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    }
)

_T = TypeVar("_T")


class _Unprocessed(Exception):
    """DynamoDB accepted only part of a batch request (throttling): retried with backoff."""


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """botocore's data loader, shared by every sink's session.

    A fresh session loads and parses the service models and endpoint rules again (JSON, about
    0.15 s of CPU per sink, 0.5 s on a busy machine); a copy opens a sink per worker and the
    daemon one per applier. The loader only reads files shipped with botocore and caches what it
    parsed, so sharing it changes nothing but that cost (it is the first session's own loader, so
    ``AWS_DATA_PATH`` still applies). Credentials stay per session.
    """
    loader: botocore.loaders.Loader = botocore.session.get_session().get_component("data_loader")
    return loader


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _shared_loader())
    return session


def _client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _Unprocessed | BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        return _client_error_code(exc) in _THROTTLE_CODES or _status(exc) >= 500
    return False


class DynamoDBSink(LayeredSink):
    """Applies change events to a DynamoDB table so that ``DynamoDBSaver`` reads them back.

    It is its own layout (``connectors.sinks.layout.Layout``): whole form, blobs in the table,
    written with the AWS clients below. ``blob_lookups`` counts the blob store items read
    (BatchGetItem keys); see ``LayeredSink`` for the other counters.
    """

    # Retry bounds. botocore retries throttling, 5xx and connection errors itself (adaptive mode,
    # client-side rate limiting); on top of that, tenacity retries partial batches (UnprocessedItems
    # / UnprocessedKeys) up to ``max_attempts`` times and errors botocore gave up on a few more
    # times, all with jittered exponential backoff and an overall deadline per request.
    botocore_max_attempts = 10
    max_attempts = 10
    max_error_attempts = 3
    max_retry_seconds = 120.0
    backoff_max = 5.0

    def __init__(
        self,
        name: str,
        table: str,
        region: str,
        endpoint_url: str | None = None,
        s3_bucket: str | None = None,
        s3_key_prefix: str | None = None,
        s3_endpoint_url: str | None = None,
        blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES,
        concurrency: int = 16,
    ) -> None:
        self.name = name
        self.table = table
        self.concurrency = concurrency
        self.region = region
        self.endpoint_url = endpoint_url
        self.s3_bucket = s3_bucket or None
        self.s3_key_prefix = s3_key_prefix.strip("/") if s3_key_prefix else None
        self.s3_endpoint_url = s3_endpoint_url
        self.table_layout = DynamoDBLayout(name, self.s3_bucket, self.s3_key_prefix)
        super().__init__(self, blob_cache_bytes)

        self._config = Config(
            retries={"mode": "adaptive", "max_attempts": self.botocore_max_attempts},
            connect_timeout=10,
            read_timeout=60,
            tcp_keepalive=True,
            max_pool_connections=max(10, self.concurrency * 2),
            # Requests are built here from typed items and DynamoDB validates them anyway:
            # botocore's client-side walk of every item costs CPU the applier needs.
            parameter_validation=False,
        )
        # check() must answer quickly when the endpoint is down, not after ten adaptive retries.
        self._probe_config = Config(
            retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10
        )
        self._session = boto3.session.Session(botocore_session=_botocore_session(), region_name=region)
        self._ddb: Any = self._session.client("dynamodb", endpoint_url=endpoint_url, config=self._config)
        self._s3: Any = (
            self._session.client("s3", endpoint_url=s3_endpoint_url, config=self._config)
            if self.s3_bucket
            else None
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------ Layout

    form = Form.WHOLE

    def check(self) -> None:
        ddb = self._session.client("dynamodb", endpoint_url=self.endpoint_url, config=self._probe_config)
        try:
            try:
                table = ddb.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if _client_error_code(exc) == "ResourceNotFoundException":
                    raise ReplicatorError(
                        ErrorKind.TARGET_SETUP,
                        f"DynamoDB table {self.table!r} does not exist in {self._where()}. "
                        f"Create it with: {self.create_table_command()}",
                    ) from None
                raise self._error(exc, f"describing DynamoDB table {self.table!r}") from None
            except (BotoCoreError, OSError) as exc:
                raise self._error(exc, f"describing DynamoDB table {self.table!r}") from None
        finally:
            ddb.close()
        keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        if keys != {"PK": "HASH", "SK": "RANGE"} or types.get("PK") != "S" or types.get("SK") != "S":
            schema = ", ".join(f"{n} {keys[n]} ({types.get(n, '?')})" for n in keys) or "none"
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"DynamoDB table {self.table!r} in {self._where()} has key schema [{schema}], but "
                f"DynamoDBSaver needs PK (string, HASH) and SK (string, RANGE). Use another table or "
                f"recreate it with: {self.create_table_command()}",
            )
        if self.s3_bucket:
            s3 = self._session.client("s3", endpoint_url=self.s3_endpoint_url, config=self._probe_config)
            try:
                s3.head_bucket(Bucket=self.s3_bucket)
            except ClientError as exc:
                if _client_error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                    raise ReplicatorError(
                        ErrorKind.TARGET_SETUP,
                        f"S3 bucket {self.s3_bucket!r} (offload of payloads over 350 KiB for table "
                        f"{self.table!r}) does not exist. Create it with: aws s3 mb "
                        f"s3://{self.s3_bucket} --region {self.region}"
                        + (f" --endpoint-url {self.s3_endpoint_url}" if self.s3_endpoint_url else ""),
                    ) from None
                if _client_error_code(exc) in ("403", "AccessDenied"):
                    raise ReplicatorError(
                        ErrorKind.TARGET_SETUP,
                        f"access denied to S3 bucket {self.s3_bucket!r}: the credentials need "
                        f"s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on it",
                    ) from None
                raise self._error(exc, f"checking S3 bucket {self.s3_bucket!r}") from None
            except (BotoCoreError, OSError) as exc:
                raise self._error(exc, f"checking S3 bucket {self.s3_bucket!r}") from None
            finally:
                s3.close()

    def create_table_command(self) -> str:
        cmd = (
            f"aws dynamodb create-table --table-name {self.table} "
            "--attribute-definitions AttributeName=PK,AttributeType=S AttributeName=SK,AttributeType=S "
            "--key-schema AttributeName=PK,KeyType=HASH AttributeName=SK,KeyType=RANGE "
            f"--billing-mode PAY_PER_REQUEST --region {self.region}"
        )
        if self.endpoint_url:
            cmd += f" --endpoint-url {self.endpoint_url}"
        return cmd

    def saver(self) -> BaseCheckpointSaver[str]:
        from langgraph_checkpoint_aws import DynamoDBSaver

        s3_config: Any = None
        if self.s3_bucket:
            s3_config = {
                "bucket_name": self.s3_bucket,
                "endpoint_url": self.s3_endpoint_url,
                "key_prefix": self.s3_key_prefix,
            }
        saver: BaseCheckpointSaver[str] = DynamoDBSaver(
            table_name=self.table,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            boto_config=self._config,
            s3_offload_config=s3_config,
        )
        return saver

    def thread_ids(self) -> Iterable[str]:
        threads: set[str] = set()
        for item in self._scan(
            "PK, checkpoint_id",
            "begins_with(PK, :c) OR begins_with(PK, :w)",
            {":c": {"S": "CHECKPOINT_"}, ":w": {"S": "WRITES_"}},
        ):
            thread = thread_of_item(item)
            if thread is not None:
                threads.add(thread)
        return sorted(threads)

    def drop_own_state(self) -> list[str]:
        """The ``LGREPL#`` items (blob state, write index) and the blob values offloaded to S3
        under ``_replicator/blobs/``: one Scan of the table; the saver's items stay."""
        deleted = 0
        found = self._scan("PK, SK", "begins_with(PK, :r)", {":r": {"S": REPLICATOR_PK_PREFIX}})
        while keys := [  # deleted as found, a round at a time: memory stays bounded
            {"DeleteRequest": {"Key": key(i["PK"]["S"], i["SK"]["S"])}}
            for i in itertools.islice(found, _DROP_KEYS)
        ]:
            self._run_all([partial(self._write_chunk, chunk) for chunk in self._chunks(keys)])
            deleted += len(keys)
        dropped = [f"{deleted:,} replicator items (blob state, write index) from table {self.table!r}"]
        if self.s3_bucket:
            prefix = self.table_layout.s3_full(BLOB_S3_PREFIX)
            params: dict[str, Any] = {"Bucket": self.s3_bucket, "Prefix": prefix, "MaxKeys": _S3_DELETE_KEYS}
            objects = 0
            while True:  # deleted page by page, as listed: memory stays bounded here too
                page = self._call(
                    lambda: self._s3.list_objects_v2(**params), f"listing s3://{self.s3_bucket}/{prefix}"
                )
                listed = [obj["Key"] for obj in page.get("Contents") or ()]
                if listed:
                    self._s3_delete(listed)
                    objects += len(listed)
                if not page.get("IsTruncated"):
                    break
                params["ContinuationToken"] = page["NextContinuationToken"]
            dropped.append(f"{objects:,} blob values under s3://{self.s3_bucket}/{prefix}")
        return dropped

    def _scan(self, projection: str, condition: str, values: dict[str, Any]) -> Iterator[Item]:
        """Every item of the table matching ``condition``, strongly consistent, page by page."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": projection,
            "FilterExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        while True:
            page = self._call(lambda: self._ddb.scan(**params), f"scanning table {self.table!r}")
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._ddb.close()
        if self._s3 is not None:
            self._s3.close()

    def blob_store(self) -> BlobStore:
        return self

    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        return self._read_blobs(refs)

    def stored_checkpoint(self, ref: CheckpointRef) -> WholeCheckpoint | None:
        t, ns, cid = ref
        meta = self._get_item(checkpoint_pk(t), checkpoint_sk(ns, cid))
        payload = self._read_payload(meta) if meta else None
        if meta is None or payload is None:
            return None
        return stored_checkpoint(payload, meta, f"thread {t!r} ns {ns!r} checkpoint {cid}")

    def stored_write(self, ref: WriteRef) -> tuple[str, bytes] | None:
        t, ns, cid, task, idx = ref
        meta = self._get_item(writes_pk(t, ns, cid), writes_sk(task, idx))
        if not meta:
            return None
        data = self._read_payload(meta)
        return None if data is None else (meta["type"]["S"], data)

    def write(self, ops: DurableOps) -> None:
        """Items for ``ops`` (what deleted threads held first, then each entity), then AWS."""
        layout = self.table_layout
        plan = ItemPlan()
        if ops.deleted_threads:
            layout.plan_existing(plan, self._existing_items(ops.deleted_threads).values())
        checkpoints = ops.checkpoints
        for cref, cvalue in checkpoints.items():
            if cvalue is not None and not isinstance(cvalue, WholeCheckpoint):
                raise ReplicatorError(
                    ErrorKind.INTERNAL, f"sink {self.name!r} stores whole checkpoints, was given a split one"
                )
            layout.plan_checkpoint(plan, cref, cvalue)
        for wref, wvalue in ops.writes.items():
            layout.plan_write(plan, wref, wvalue)
        for bref, bvalue in ops.blobs.items():
            layout.plan_blob(plan, bref, bvalue)
        self._execute(plan)

    # ------------------------------------------------------------------ reads

    def _read_blobs(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        """Blob state for ``refs`` (absent ones left out): BatchGetItem, plus S3 for offloaded."""
        by_key = {(blob_pk(r[0]), blob_sk(r[1], r[2], r[3])): r for r in refs}
        keys = [key(pk, sk) for pk, sk in by_key]
        chunks = [keys[start : start + _BATCH_GET_KEYS] for start in range(0, len(keys), _BATCH_GET_KEYS)]
        items = [item for chunk in self._map(self._batch_get, chunks) for item in chunk]
        found: dict[BlobRef, Blob] = {}
        offloaded: list[tuple[BlobRef, str, str]] = []
        for item in items:
            ref = by_key[(item["PK"]["S"], item["SK"]["S"])]
            type_ = item["type"]["S"]
            if "s3_key" in item:
                offloaded.append((ref, type_, item["s3_key"]["S"]))
            else:
                data = item.get("data", {}).get("B")
                found[ref] = (type_, bytes(data) if data is not None else None)
        if offloaded:
            bodies = self._map(lambda o: self._s3_get(o[2]), offloaded)
            for (ref, type_, s3_key), body in zip(offloaded, bodies, strict=True):
                if body is None:
                    _log.warning("offloaded blob missing in S3", sink=self.name, s3_key=s3_key)
                    continue
                found[ref] = (type_, body)
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[Item]:
        request: dict[str, Any] = {
            self.table: {
                "Keys": keys,
                "ProjectionExpression": "PK, SK, #t, #d, s3_key",
                "ExpressionAttributeNames": {"#t": "type", "#d": "data"},
                "ConsistentRead": True,
            }
        }
        items: list[Item] = []

        def once() -> None:
            nonlocal request
            response = self._ddb.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self.table, []))
            unprocessed = response.get("UnprocessedKeys") or {}
            if unprocessed.get(self.table, {}).get("Keys"):
                request = unprocessed
                raise _Unprocessed(f"{len(unprocessed[self.table]['Keys'])} keys unprocessed")

        self._call(once, f"reading blob state from table {self.table!r}")
        return items

    def _get_item(self, pk: str, sk: str) -> Item | None:
        response = self._call(
            lambda: self._ddb.get_item(TableName=self.table, Key=key(pk, sk), ConsistentRead=True),
            f"reading {pk!r} from table {self.table!r}",
        )
        item: Item | None = response.get("Item")
        return item

    def _query(self, pk: str, projection: str, names: dict[str, str] | None = None) -> list[Item]:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": projection,
            "ConsistentRead": True,
        }
        if names:
            params["ExpressionAttributeNames"] = names
        items: list[Item] = []
        while True:
            page = self._call(lambda: self._ddb.query(**params), f"querying {pk!r} in table {self.table!r}")
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _read_payload(self, meta: Item) -> bytes | None:
        ref_loc = meta.get("ref_loc", {}).get("S")
        ref_key = meta.get("ref_key", {}).get("S")
        if not ref_key:
            return None
        if ref_loc == "S3":
            if not self.s3_bucket:
                raise ReplicatorError(
                    ErrorKind.TARGET_SETUP,
                    f"table {self.table!r} has a payload offloaded to S3 ({ref_key}) but target "
                    f"{self.name!r} has no s3_bucket configured",
                )
            data = self._s3_get(self.table_layout.s3_full(ref_key))
        else:
            chunk = self._get_item(ref_key, "CHUNK")
            data = bytes(chunk["payload"]["B"]) if chunk and "payload" in chunk else None
        if data is not None and meta.get("compression", {}).get("S") == "gzip":
            data = gzip.decompress(data)
        return data

    def _existing_items(self, threads: Sequence[str]) -> dict[str, Existing]:
        """Every item and S3 object each thread has in the target, for ThreadDeletions.

        Two rounds of parallel queries: each thread's checkpoint, write-index and blob-state
        partitions, then the WRITES_ partition of every checkpoint found.
        """
        found = {t: Existing() for t in threads}
        checkpoints: set[tuple[str, str, str]] = set()
        partitions = [(t, kind) for t in threads for kind in ("checkpoints", "index", "blobs")]

        def read_partition(arg: tuple[str, str]) -> list[Item]:
            t, kind = arg
            if kind == "checkpoints":
                return self._query(checkpoint_pk(t), "PK, SK, id, ns")
            if kind == "index":
                return self._query(writes_index_pk(t), "PK, SK")
            return self._query(blob_pk(t), "PK, SK, s3_key")

        for (t, kind), items in zip(partitions, self._map(read_partition, partitions), strict=True):
            for item in items:
                found[t].items.append((item["PK"]["S"], item["SK"]["S"]))
                if kind == "checkpoints":
                    ns, cid = item["ns"]["S"], item["id"]["S"]
                    checkpoints.add((t, ns, cid))
                    found[t].items.append((checkpoint_chunk_pk(t, ns, cid), "CHUNK"))
                    if self.s3_bucket:
                        found[t].s3_keys.append(self.table_layout.s3_full(checkpoint_s3_key(t, ns, cid)))
                elif kind == "index":
                    checkpoints.add((t, *indexed_checkpoint(item["SK"]["S"])))
                elif "s3_key" in item and self.s3_bucket:
                    found[t].s3_keys.append(item["s3_key"]["S"])

        def writes_of(ref: tuple[str, str, str]) -> list[Item]:
            return self._query(writes_pk(*ref), "PK, SK, task_id, idx")

        ordered = sorted(checkpoints)
        for (t, ns, cid), writes in zip(ordered, self._map(writes_of, ordered), strict=True):
            for item in writes:
                found[t].items.append((item["PK"]["S"], item["SK"]["S"]))
                task, idx = item["task_id"]["S"], int(item["idx"]["N"])
                found[t].items.append((write_chunk_pk(t, ns, cid, task, idx), "CHUNK"))
                if self.s3_bucket:
                    found[t].s3_keys.append(self.table_layout.s3_full(write_s3_key(t, ns, cid, task, idx)))
        return found

    def _s3_get(self, key: str) -> bytes | None:
        def once() -> bytes | None:
            try:
                response = self._s3.get_object(Bucket=self.s3_bucket, Key=key)
            except ClientError as exc:
                if _client_error_code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

        return self._call(once, f"reading s3://{self.s3_bucket}/{key}")

    # ------------------------------------------------------------------ writes

    def _execute(self, plan: ItemPlan) -> None:
        puts: dict[int, list[dict[str, Any]]] = {PAYLOAD: [], META: []}
        deletes: list[dict[str, Any]] = []
        for item_key, item in plan.items.items():
            if item is None:
                deletes.append({"DeleteRequest": {"Key": key(*item_key)}})
            else:
                puts[plan.phase[item_key]].append({"PutRequest": {"Item": item}})
        s3_puts = [(k, body) for k, body in plan.s3.items() if body is not None]
        s3_deletes = [k for k, body in plan.s3.items() if body is None]

        # 1. payloads (S3 objects, CHUNK items, blob state, write index), 2. meta items: a meta
        # item is never visible before its payload. 3. deletes.
        self._run_all(
            [partial(self._s3_put, k, body) for k, body in s3_puts]
            + [partial(self._write_chunk, c) for c in self._chunks(puts[PAYLOAD])]
        )
        self._run_all([partial(self._write_chunk, c) for c in self._chunks(puts[META])])
        self._run_all(
            [partial(self._write_chunk, c) for c in self._chunks(deletes)]
            + [
                partial(self._s3_delete, s3_deletes[i : i + _S3_DELETE_KEYS])
                for i in range(0, len(s3_deletes), _S3_DELETE_KEYS)
            ]
        )

    @staticmethod
    def _chunks(requests: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        def size(request: dict[str, Any]) -> int:
            return (
                item_size(request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]) + 64
            )

        return chunked(requests, size, _BATCH_WRITE_ITEMS, _BATCH_WRITE_BYTES)

    def _write_chunk(self, requests: list[dict[str, Any]]) -> None:
        pending = requests

        def once() -> None:
            nonlocal pending
            response = self._ddb.batch_write_item(RequestItems={self.table: pending})
            unprocessed = (response.get("UnprocessedItems") or {}).get(self.table) or []
            if unprocessed:
                pending = unprocessed
                raise _Unprocessed(f"{len(unprocessed)} of {len(requests)} items unprocessed")

        self._call(once, f"writing {len(requests)} items to table {self.table!r}")

    def _s3_put(self, key: str, body: bytes) -> None:
        self._call(
            lambda: self._s3.put_object(Bucket=self.s3_bucket, Key=key, Body=body),
            f"writing s3://{self.s3_bucket}/{key}",
        )

    def _s3_delete(self, keys: list[str]) -> None:
        def once() -> None:
            response = self._s3.delete_objects(
                Bucket=self.s3_bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise ClientError(
                    {"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}},
                    "DeleteObjects",
                )

        self._call(once, f"deleting {len(keys)} objects from s3://{self.s3_bucket}")

    # ------------------------------------------------------------------ plumbing

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"sink-{self.name}")
            return self._pool

    def _run_all(self, tasks: Sequence[Callable[[], Any]]) -> None:
        if not tasks:
            return
        if len(tasks) == 1:
            tasks[0]()
            return
        futures: list[Future[Any]] = [self._executor().submit(task) for task in tasks]
        first: BaseException | None = None
        for future in futures:  # wait for all, so nothing is still writing when we return
            exc = future.exception()
            if exc is not None and first is None:
                first = exc
        if first is not None:
            raise first

    def _map(self, fn: Callable[[Any], _T], args: Sequence[Any]) -> list[_T]:
        if len(args) <= 1:
            return [fn(a) for a in args]
        futures = [self._executor().submit(fn, a) for a in args]
        return [f.result() for f in futures]

    def _call(self, fn: Callable[[], _T], what: str) -> _T:
        """Run one request with bounded, jittered exponential backoff on transient errors."""

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            _log.info(
                "retrying DynamoDB/S3 request",
                sink=self.name,
                what=what,
                attempt=state.attempt_number,
                error=str(exc),
            )

        def stop(state: RetryCallState) -> bool:
            outcome = state.outcome
            partial_batch = outcome is not None and isinstance(outcome.exception(), _Unprocessed)
            limit = self.max_attempts if partial_batch else self.max_error_attempts
            elapsed = state.seconds_since_start or 0.0
            return state.attempt_number >= limit or elapsed >= self.max_retry_seconds

        retrying = Retrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=0.05, max=self.backoff_max),
            retry=retry_if_exception(_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result: _T = retrying(fn)
            return result
        except ReplicatorError:
            raise
        except (ClientError, BotoCoreError, _Unprocessed, OSError) as exc:
            raise self._error(exc, what) from None

    def _where(self) -> str:
        return f"region {self.region}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _error(self, exc: BaseException, what: str) -> ReplicatorError:
        where = f"target {self.name!r} ({self._where()})"
        if isinstance(exc, _Unprocessed):
            return ReplicatorError(
                ErrorKind.TARGET_THROTTLED,
                f"{what}: still throttled after {self.max_attempts} attempts ({exc}) on {where}; "
                "raise the table's capacity or use on-demand billing",
            )
        if isinstance(exc, ClientError):
            code = _client_error_code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            detail = f"{what}: {code}: {message} on {where}"
            if code in _THROTTLE_CODES:
                return ReplicatorError(
                    ErrorKind.TARGET_THROTTLED,
                    f"{detail} (still throttled after retries); raise the "
                    "table's capacity or use on-demand billing",
                )
            if _status(exc) >= 500:
                return ReplicatorError(ErrorKind.TARGET_UNREACHABLE, detail)
            if code == "ResourceNotFoundException":
                return ReplicatorError(
                    ErrorKind.TARGET_SETUP,
                    f"{detail}. Create the table with: {self.create_table_command()}",
                )
            if code in _SETUP_CODES:
                return ReplicatorError(ErrorKind.TARGET_SETUP, f"{detail}: check credentials and permissions")
            return ReplicatorError(ErrorKind.INTERNAL, detail)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"{what}: no usable AWS credentials for {where} ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile or an instance role",
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
            return ReplicatorError(ErrorKind.TARGET_UNREACHABLE, f"{what}: cannot reach {where}: {exc}")
        return ReplicatorError(ErrorKind.INTERNAL, f"{what}: {type(exc).__name__}: {exc} on {where}")


__all__ = ["ABSENT", "BLOB_PK_PREFIX", "S3_OFFLOAD_THRESHOLD", "WRITES_INDEX_PK_PREFIX", "DynamoDBSink"]
