"""Sink writing the table layout of langgraph-checkpoint-aws ``DynamoDBSaver``.

What the saver reads (langgraph_checkpoint_aws/checkpoint/dynamodb, 1.2.6), PK / SK: attributes:

* checkpoint ``CHECKPOINT_{t}`` / ``{ns}#{cid}``: id, ns, type, ref_loc, ref_key,
  parent_checkpoint_id (only when set)
* its payload ``CHUNK_{t}#{ns}#{cid}`` / ``CHUNK``: payload (B), the serde bytes of
  ``{"checkpoint": <full checkpoint>, "metadata": ...}`` (type "msgpack")
* write ``WRITES_{t}#{ns}#{cid}`` / ``{task}#{idx}``: task_id, channel, idx (N), checkpoint_id,
  type, ref_loc, ref_key, task_path (only when non-empty)
* its payload ``CHUNK_{t}#{ns}#{cid}#{task}#{idx}`` / ``CHUNK``: payload (B), the serde bytes

A payload over 350 KiB goes to S3 instead (``ref_loc`` "S3", ``ref_key`` the un-prefixed key
``{t}/checkpoints/{ns}/{cid}[/writes/{task}/{idx}]``) when a bucket is configured. The saver skips
a meta item whose payload is absent, so payloads are always written before meta items.

Replicator-owned items in the same table (the saver never reads them; its queries name exact
``CHECKPOINT_``/``WRITES_``/``CHUNK_`` partitions):

* ``LGREPL#BLOB#{t}`` / json ``[ns, channel, version]``: the blob state. PostgresSaver shares
  channel values between checkpoints as insert-only ``(channel, version)`` blobs, while
  DynamoDBSaver stores every checkpoint whole, so assembling a checkpoint needs blobs written
  arbitrarily long before it. They are kept durably *in the target* (this answers ARCHITECTURE's
  "where referenced blobs live" question): the state survives restarts and rebalances with no
  rebuild, costs one small item per blob (no Kafka traffic growing with conversation length), and
  goes away with the thread. The namespace sits in the sort key (not the partition key, as first
  sketched) so that a thread deletion finds every namespace's blobs with one Query, no Scan.
  Values over 350 KiB are offloaded to S3 under ``[prefix/]_replicator/blobs/``.
* ``LGREPL#WRITES#{t}`` / json ``[ns, checkpoint_id]``: one index item per checkpoint that has
  pending writes. A thread deletion finds writes through it even when their checkpoint is absent
  (writes can commit before their checkpoint, and prune deletes checkpoints independently), so it
  needs no table Scan. ``DynamoDBSaver.delete_thread`` misses such orphan writes.

A batch is planned in memory first (last operation per item key wins, blobs referenced by
checkpoints resolved from the batch itself, an LRU cache, then one BatchGetItem for the rest; a
channel whose value is inline in the checkpoint has no blob and is not looked up),
then written: payloads (S3, ``CHUNK_``, blob state, write index), then meta items, then deletes.
Every item is a pure function of the events (no timestamps), so replays rewrite identical items.
"""

from __future__ import annotations

import enum
import gzip
import json
import sys
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import boto3
import msgspec
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

from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    CheckpointChange,
    DataChange,
    Op,
    ThreadDeletion,
    WriteChange,
)

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

_log = structlog.get_logger(__name__)

S3_OFFLOAD_THRESHOLD = 350 * 1024  # the saver's threshold (storage_strategy.S3_OFFLOAD_THRESHOLD)
_ITEM_LIMIT = 400 * 1024  # DynamoDB's maximum item size
_BATCH_WRITE_ITEMS = 25
_BATCH_WRITE_BYTES = 15 * 1024 * 1024  # below the 16 MB request limit, leaving room for framing
_BATCH_GET_KEYS = 100
_S3_DELETE_KEYS = 1000

BLOB_PK_PREFIX = "LGREPL#BLOB#"
WRITES_INDEX_PK_PREFIX = "LGREPL#WRITES#"

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

ItemKey = tuple[str, str]  # (PK, SK)
BlobRef = tuple[str, str, str, str]  # (thread_id, checkpoint_ns, channel, version)
CheckpointRef = tuple[str, str, str]  # (thread_id, checkpoint_ns, checkpoint_id)
WriteRef = tuple[str, str, str, str, int]  # (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
Blob = tuple[str, bytes | None]  # serde (type, data) as PostgresSaver stores it
Item = dict[str, Any]  # a DynamoDB item in the low-level client's attribute-value form

_T = TypeVar("_T")


class _Absent(enum.Enum):
    """A blob known not to exist in the target (before the batch being applied)."""

    ABSENT = 0


ABSENT = _Absent.ABSENT
_PAYLOAD, _META = 0, 1


# ---------------------------------------------------------------------------------------------
# Keys: the saver's (copied from unified_repository.py so that a change there shows up in the
# contract tests, not silently here) and ours.


def checkpoint_pk(thread_id: str) -> str:
    return f"CHECKPOINT_{thread_id}"


def checkpoint_sk(ns: str, checkpoint_id: str) -> str:
    return f"{ns}#{checkpoint_id}"


def checkpoint_chunk_pk(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return f"CHUNK_{thread_id}#{ns}#{checkpoint_id}"


def checkpoint_s3_key(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return f"{thread_id}/checkpoints/{ns}/{checkpoint_id}"


def writes_pk(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return f"WRITES_{thread_id}#{ns}#{checkpoint_id}"


def writes_sk(task_id: str, idx: int) -> str:
    return f"{task_id}#{idx}"


def write_chunk_pk(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return f"CHUNK_{thread_id}#{ns}#{checkpoint_id}#{task_id}#{idx}"


def write_s3_key(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return f"{thread_id}/checkpoints/{ns}/{checkpoint_id}/writes/{task_id}/{idx}"


def _json_key(*parts: str) -> str:
    """An unambiguous sort key for parts that may contain any character ('#' included)."""
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def blob_pk(thread_id: str) -> str:
    return f"{BLOB_PK_PREFIX}{thread_id}"


def blob_sk(ns: str, channel: str, version: str) -> str:
    return _json_key(ns, channel, version)


def blob_s3_key(ref: BlobRef) -> str:
    t, ns, ch, v = (quote(p, safe="") for p in ref)
    return f"_replicator/blobs/{t}/ns={ns}/ch={ch}/v={v}"


def writes_index_pk(thread_id: str) -> str:
    return f"{WRITES_INDEX_PK_PREFIX}{thread_id}"


def _version_text(version: Any) -> str:
    """A channel version as PostgresSaver's ``jsonb_each_text`` joins it to ``checkpoint_blobs``."""
    return version if isinstance(version, str) else json.dumps(version)


def _may_have_blob(inline: dict[str, Any], channel: str) -> bool:
    """Whether a checkpoint's channel can have a blob, given its inline ``channel_values``.

    PostgresSaver (3.x) keeps None, str, int, float and bool values inline and writes a blob only
    for the other values, at the channel's version. A value is fixed by its version (a new value
    gets a new version), so a channel inline in a checkpoint has no blob at that version, and
    looking one up cannot find anything: the value read is the inline one. (A thread begun by an
    older PostgresSaver, which stored primitives as blobs too, may have one, holding the very value
    found inline.) The exception is DeltaChannel's snapshot, a blob behind an inline ``true``
    marker, so a channel whose inline value is ``True`` is still looked up. A channel not inline
    may have a blob (a non-primitive value) or none (no value: a consumed trigger, ``__start__``
    after its step). A blob written in the same batch is used all the same.
    """
    return channel not in inline or inline[channel] is True


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def _item_size(item: Item) -> int:
    """DynamoDB's item size (UTF-8 names and values), slightly overestimated for numbers."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, v),) = value.items()
        if kind == "S":
            size += len(v.encode())
        elif kind == "B":
            size += len(v)
        else:
            size += len(str(v)) + 1
    return size


class _PayloadParts(msgspec.Struct):
    """A stored checkpoint payload split without decoding (for unchanged-TOAST updates)."""

    checkpoint: msgspec.Raw
    metadata: msgspec.Raw


# ---------------------------------------------------------------------------------------------


# Serde types, shared by every cached blob instead of one string object per blob.
_BLOB_TYPES: dict[str, str] = {
    t: t for t in ("msgpack", "bytes", "bytearray", "null", "empty", "json", "pickle")
}
_BLOB_TUPLE_BYTES = sys.getsizeof(("msgpack", b""))
_NOT_CACHED: Any = object()


def _cache_key(ref: BlobRef) -> str:
    """One string for a blob reference: its parts joined by NUL, which no Postgres text can hold.

    Parts that do hold one (from another source) are keyed by their JSON array instead, which
    never contains a raw NUL, so the two forms cannot collide.
    """
    key = "\x00".join(ref)
    return key if key.count("\x00") == 3 else _json_key(*ref)


def _cache_key_thread(key: str) -> str:
    return key[: key.index("\x00")] if "\x00" in key else str(json.loads(key)[0])


def _own_str_bytes(text: str) -> int:
    """What a private copy of ``text`` costs (``getsizeof`` of the caller's object may include
    a cached UTF-8 form, so it could differ between the string indexed and the one removing it)."""
    return sys.getsizeof((text + "\x00")[:-1])


class _BlobCache:
    """LRU of blob lookups (values and known absences), bounded by the memory it really holds.

    PostgresSaver's blobs are insert-only, so an entry only goes stale when the blob (or its
    whole thread) is deleted, and every such delete passes through this sink and evicts it.

    ``size`` counts Python objects as ``sys.getsizeof`` measures them, so that ``capacity`` bounds
    the cache's real memory: each entry's key (one string, built here), its value (``ABSENT``
    is a shared singleton; a blob is a ``(type, data)`` tuple, its type string shared), the
    tables of the LRU and of the per-thread index (as allocated: they do not shrink when entries
    go), and each indexed thread's id and set. A tuple of four strings per key and a cost per
    entry, as before, took 2-3 times the bytes counted with small blobs.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._entries: OrderedDict[str, Blob | _Absent] = OrderedDict()
        self._by_thread: dict[str, set[str]] = {}
        self._held = 0  # entries' keys and values, index sets and thread ids

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._held + sys.getsizeof(self._entries) + sys.getsizeof(self._by_thread)

    def get(self, ref: BlobRef) -> Blob | _Absent | None:
        key = _cache_key(ref)
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, ref: BlobRef, value: Blob | _Absent) -> None:
        key = _cache_key(ref)
        self._discard(key, ref[0])
        if value is not ABSENT:
            type_, data = value
            value = (_BLOB_TYPES.get(type_, type_), data)
        cost = self._cost(key, value)
        if cost > self.capacity:
            return
        self._entries[key] = value
        thread = ref[0]
        keys = self._by_thread.get(thread)
        if keys is None:
            keys = self._by_thread[(thread + "\x00")[:-1]] = set()
            self._held += _own_str_bytes(thread) + sys.getsizeof(keys)
        before = sys.getsizeof(keys)
        keys.add(key)
        self._held += cost + sys.getsizeof(keys) - before
        while self.size > self.capacity and self._entries:
            old_key, old_value = self._entries.popitem(last=False)
            self._held -= self._cost(old_key, old_value)
            self._unindex(old_key, _cache_key_thread(old_key))

    def discard(self, ref: BlobRef) -> None:
        self._discard(_cache_key(ref), ref[0])

    def evict_thread(self, thread_id: str) -> None:
        for key in list(self._by_thread.get(thread_id, ())):
            self._discard(key, thread_id)

    def _discard(self, key: str, thread: str) -> None:
        value = self._entries.pop(key, _NOT_CACHED)
        if value is not _NOT_CACHED:
            self._held -= self._cost(key, value)
            self._unindex(key, thread)

    def _unindex(self, key: str, thread: str) -> None:
        keys = self._by_thread.get(thread)
        if keys is not None:
            keys.discard(key)  # a set never shrinks on removal: its size stays as counted
            if not keys:
                del self._by_thread[thread]
                self._held -= _own_str_bytes(thread) + sys.getsizeof(keys)

    @staticmethod
    def _cost(key: str, value: Blob | _Absent) -> int:
        cost = sys.getsizeof(key)
        if value is not ABSENT:
            type_, data = value
            cost += _BLOB_TUPLE_BYTES + (0 if data is None else sys.getsizeof(data))
            if _BLOB_TYPES.get(type_) is not type_:
                cost += sys.getsizeof(type_)
        return cost


@dataclass
class _Existing:
    """What a thread has in the target (discovered for a ThreadDeletion)."""

    items: list[ItemKey] = field(default_factory=list)
    s3_keys: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """The net effect of one batch, built in memory before anything is written."""

    # Item key -> item to put (None: delete); last operation per key wins.
    items: dict[ItemKey, Item | None] = field(default_factory=dict)
    phase: dict[ItemKey, int] = field(default_factory=dict)
    s3: dict[str, bytes | None] = field(default_factory=dict)  # full S3 key -> body (None: delete)
    thread_items: dict[str, set[ItemKey]] = field(default_factory=lambda: defaultdict(set))
    thread_s3: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # The batch's own view of blobs, checkpoint payloads and write payloads so far (None: deleted
    # in this batch). Anything not in it and not in a deleted thread is read as of before the batch.
    blobs: dict[BlobRef, Blob | None] = field(default_factory=dict)
    checkpoints: dict[CheckpointRef, bytes | None] = field(default_factory=dict)
    writes: dict[WriteRef, tuple[str, bytes] | None] = field(default_factory=dict)
    deleted_threads: set[str] = field(default_factory=set)
    # Blob lookups answered from before the batch (cache hits and the one BatchGetItem).
    prebatch: dict[BlobRef, Blob | _Absent] = field(default_factory=dict)
    # What each thread deleted in this batch had in the target before it.
    existing: dict[str, _Existing] = field(default_factory=dict)
    # Cache changes, applied in order once the batch is durable.
    cache_ops: list[tuple[str, Any, Any]] = field(default_factory=list)

    def put(self, thread_id: str, item: Item, phase: int) -> None:
        key = (item["PK"]["S"], item["SK"]["S"])
        self.items[key] = item
        self.phase[key] = phase
        self.thread_items[thread_id].add(key)

    def delete(self, thread_id: str, key: ItemKey) -> None:
        self.items[key] = None
        self.phase.pop(key, None)
        self.thread_items[thread_id].add(key)

    def s3_put(self, thread_id: str, key: str, body: bytes) -> None:
        self.s3[key] = body
        self.thread_s3[thread_id].add(key)

    def s3_delete(self, thread_id: str, key: str) -> None:
        self.s3[key] = None
        self.thread_s3[thread_id].add(key)


class _Unprocessed(Exception):
    """DynamoDB accepted only part of a batch request (throttling): retried with backoff."""


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


# ---------------------------------------------------------------------------------------------


class DynamoDBSink:
    """Applies change events to a DynamoDB table so that ``DynamoDBSaver`` reads them back.

    ``missing_blobs`` counts channel values a checkpoint should have had but whose blob was not
    found (legitimate when a suffix of the stream is replayed after the thread was deleted);
    ``missing_payloads`` counts unchanged-TOAST updates whose stored checkpoint was absent;
    ``blob_lookups`` counts the blob states read from the table (BatchGetItem keys).
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
    concurrency = 8

    def __init__(
        self,
        name: str,
        table: str,
        region: str,
        endpoint_url: str | None = None,
        s3_bucket: str | None = None,
        s3_key_prefix: str | None = None,
        s3_endpoint_url: str | None = None,
        blob_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.table = table
        self.region = region
        self.endpoint_url = endpoint_url
        self.s3_bucket = s3_bucket or None
        self.s3_key_prefix = s3_key_prefix.strip("/") if s3_key_prefix else None
        self.s3_endpoint_url = s3_endpoint_url
        self.missing_blobs = 0
        self.missing_payloads = 0
        self.blob_lookups = 0
        self.cache = _BlobCache(blob_cache_bytes)

        self._config = Config(
            retries={"mode": "adaptive", "max_attempts": self.botocore_max_attempts},
            connect_timeout=10,
            read_timeout=60,
            tcp_keepalive=True,
            max_pool_connections=max(10, self.concurrency * 2),
        )
        # check() must answer quickly when the endpoint is down, not after ten adaptive retries.
        self._probe_config = Config(
            retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10
        )
        self._session = boto3.session.Session(region_name=region)
        self._ddb: Any = self._session.client("dynamodb", endpoint_url=endpoint_url, config=self._config)
        self._s3: Any = (
            self._session.client("s3", endpoint_url=s3_endpoint_url, config=self._config)
            if self.s3_bucket
            else None
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------ Sink protocol

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

    def apply(self, events: Sequence[DataChange]) -> None:
        if not events:
            return
        plan = _Plan()
        self._prefetch(plan, events)
        for event in events:
            if isinstance(event, CheckpointChange):
                self._plan_checkpoint(plan, event)
            elif isinstance(event, BlobChange):
                self._plan_blob(plan, event)
            elif isinstance(event, WriteChange):
                self._plan_write(plan, event)
            elif isinstance(event, ThreadDeletion):
                self._plan_thread_deletion(plan, event.thread_id)
            else:  # pragma: no cover - the applier filters control events out
                raise ReplicatorError(
                    ErrorKind.INTERNAL, f"sink {self.name!r} got a non-data event: {type(event).__name__}"
                )
        self._execute(plan)
        for op, ref, value in plan.cache_ops:
            if op == "put":
                self.cache.put(ref, value)
            elif op == "discard":
                self.cache.discard(ref)
            else:
                self.cache.evict_thread(ref)

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
        params: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "PK, checkpoint_id",
            "FilterExpression": "begins_with(PK, :c) OR begins_with(PK, :w)",
            "ExpressionAttributeValues": {":c": {"S": "CHECKPOINT_"}, ":w": {"S": "WRITES_"}},
            "ConsistentRead": True,
        }
        while True:
            page = self._call(lambda: self._ddb.scan(**params), f"scanning table {self.table!r}")
            for item in page.get("Items", []):
                pk = item["PK"]["S"]
                if pk.startswith("CHECKPOINT_"):
                    threads.add(pk[len("CHECKPOINT_") :])
                    continue
                # WRITES_{t}#{ns}#{cid}: strip the checkpoint id exactly, then the namespace (which
                # never contains '#'), so a thread id may contain '#'.
                cid = item.get("checkpoint_id", {}).get("S")
                rest = pk[len("WRITES_") :]
                if cid and rest.endswith("#" + cid):
                    rest = rest[: -len(cid) - 1]
                    threads.add(rest.rsplit("#", 1)[0])
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(threads)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._ddb.close()
        if self._s3 is not None:
            self._s3.close()

    # ------------------------------------------------------------------ planning

    def _prefetch(self, plan: _Plan, events: Sequence[DataChange]) -> None:
        """Read, before planning, all the batch needs from the target as it was before the batch:
        referenced blobs (cache, then one BatchGetItem) and what deleted threads hold."""
        touched: set[BlobRef] = set()
        deleted: set[str] = set()
        wanted: set[BlobRef] = set()
        for event in events:
            if isinstance(event, BlobChange):
                k = event.key
                touched.add((k.thread_id, k.checkpoint_ns, k.channel, k.version))
            elif isinstance(event, ThreadDeletion):
                deleted.add(event.thread_id)
            elif isinstance(event, CheckpointChange) and event.op == Op.UPSERT and event.checkpoint:
                t, ns = event.key.thread_id, event.key.checkpoint_ns
                if t in deleted:
                    continue
                inline = event.checkpoint.get("channel_values")
                if not isinstance(inline, dict):
                    inline = {}
                for channel, version in (event.checkpoint.get("channel_versions") or {}).items():
                    if not _may_have_blob(inline, channel):
                        continue
                    ref = (t, ns, channel, _version_text(version))
                    if ref in touched or ref in plan.prebatch:
                        continue
                    cached = self.cache.get(ref)
                    if cached is not None:
                        plan.prebatch[ref] = cached
                    else:
                        wanted.add(ref)
        if deleted:
            plan.existing = self._existing_items(sorted(deleted))
        if wanted:
            self.blob_lookups += len(wanted)
            found = self._read_blobs(sorted(wanted))
            for ref in wanted:
                value = found.get(ref, ABSENT)
                plan.prebatch[ref] = value
                plan.cache_ops.append(("put", ref, value))

    def _resolve_blob(self, plan: _Plan, ref: BlobRef) -> Blob | _Absent:
        if ref in plan.blobs:
            value = plan.blobs[ref]
            return ABSENT if value is None else value
        if ref[0] in plan.deleted_threads:
            return ABSENT
        return plan.prebatch.get(ref, ABSENT)

    def _plan_checkpoint(self, plan: _Plan, event: CheckpointChange) -> None:
        k = event.key
        t, ns, cid = k.thread_id, k.checkpoint_ns, k.checkpoint_id
        ref = (t, ns, cid)
        meta_key = (checkpoint_pk(t), checkpoint_sk(ns, cid))
        chunk_pk = checkpoint_chunk_pk(t, ns, cid)
        s3_key = checkpoint_s3_key(t, ns, cid)
        if event.op == Op.DELETE:
            plan.delete(t, meta_key)
            plan.delete(t, (chunk_pk, "CHUNK"))
            if self.s3_bucket:
                plan.s3_delete(t, self._s3_full(s3_key))
            plan.checkpoints[ref] = None
            return

        reuse_checkpoint = "checkpoint" in event.unchanged
        reuse_metadata = "metadata" in event.unchanged
        stored: _PayloadParts | None = None
        if reuse_checkpoint or reuse_metadata:
            raw = self._stored_checkpoint_payload(plan, ref)
            if raw is None:
                self.missing_payloads += 1
                _log.warning(
                    "checkpoint update leaves fields unchanged but no stored checkpoint to take them "
                    "from; skipped (expected only when replaying after the thread was deleted)",
                    sink=self.name,
                    thread_id=t,
                    checkpoint_ns=ns,
                    checkpoint_id=cid,
                    unchanged=list(event.unchanged),
                )
                return
            try:
                stored = msgspec.msgpack.decode(raw, type=_PayloadParts)
            except msgspec.DecodeError as exc:
                raise ReplicatorError(
                    ErrorKind.MALFORMED_EVENT,
                    f"stored checkpoint payload of thread {t!r} ns {ns!r} checkpoint {cid} is not a "
                    f"msgpack {{checkpoint, metadata}} map ({exc}); cannot keep its unchanged fields",
                ) from None

        checkpoint_part: Any
        if stored is not None and reuse_checkpoint:
            checkpoint_part = stored.checkpoint
        else:
            if event.checkpoint is None:
                raise ReplicatorError(
                    ErrorKind.MALFORMED_EVENT,
                    f"checkpoint upsert of thread {t!r} ns {ns!r} checkpoint {cid} carries no checkpoint",
                )
            checkpoint_part = self._assemble(plan, event.checkpoint, t, ns, cid)
        metadata_part: Any = (
            stored.metadata if stored is not None and reuse_metadata else (event.metadata or {})
        )
        try:
            payload = msgspec.msgpack.encode({"checkpoint": checkpoint_part, "metadata": metadata_part})
        except (OverflowError, TypeError, msgspec.EncodeError) as exc:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT,
                f"checkpoint of thread {t!r} ns {ns!r} checkpoint {cid} cannot be encoded as msgpack "
                f"for DynamoDBSaver: {exc} (msgpack savers cannot hold integers outside 64 bits)",
            ) from None

        ref_loc, ref_key = self._plan_payload(
            plan, t, chunk_pk, s3_key, payload, f"checkpoint {cid} of thread {t!r} ns {ns!r}", True
        )
        meta: Item = {
            "PK": {"S": meta_key[0]},
            "SK": {"S": meta_key[1]},
            "id": {"S": cid},
            "ns": {"S": ns},
            "type": {"S": "msgpack"},
            "ref_loc": {"S": ref_loc},
            "ref_key": {"S": ref_key},
        }
        if event.parent_checkpoint_id:
            meta["parent_checkpoint_id"] = {"S": event.parent_checkpoint_id}
        plan.put(t, meta, _META)
        plan.checkpoints[ref] = payload

    def _assemble(self, plan: _Plan, skeleton: dict[str, Any], t: str, ns: str, cid: str) -> dict[str, Any]:
        """The full checkpoint as PostgresSaver._load_checkpoint_tuple builds it, values undecoded."""
        inline = skeleton.get("channel_values") or {}
        values: dict[str, Any] = dict(inline)
        updated = set(skeleton.get("updated_channels") or ())
        missing: dict[str, str] = {}
        for channel, version in (skeleton.get("channel_versions") or {}).items():
            blob = self._resolve_blob(plan, (t, ns, channel, _version_text(version)))
            if blob is ABSENT:
                # PostgresSaver writes no blob for a primitive (inline) value nor for a channel
                # without value (a consumed trigger, __start__ after step -1, ...), so an absent
                # blob is normal and cannot be told from a lost one in general. A channel this
                # very checkpoint updated but that has no value is suspicious (an UntrackedValue
                # channel is the one legitimate case), so that is what gets counted.
                if channel not in inline and channel in updated:
                    missing[channel] = _version_text(version)
                continue
            type_, data = blob
            if type_ == "empty":
                continue
            values[channel] = self._splice(type_, data, t, ns, cid, channel)
        if missing:
            self.missing_blobs += len(missing)
            _log.warning(
                "blobs referenced by a checkpoint not found; checkpoint written without them "
                "(expected when a replay re-applies a checkpoint of a thread deleted later)",
                sink=self.name,
                thread_id=t,
                checkpoint_ns=ns,
                checkpoint_id=cid,
                channels=missing,
            )
        return {**skeleton, "channel_values": values}

    @staticmethod
    def _splice(type_: str, data: bytes | None, t: str, ns: str, cid: str, channel: str) -> Any:
        if type_ == "msgpack" and data:
            return msgspec.Raw(data)
        if type_ in ("bytes", "bytearray"):
            # JsonPlusSerializer packs bytes and bytearray alike as msgpack bin (read back as bytes).
            return data or b""
        if type_ == "null":
            return None
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"thread {t!r} ns {ns!r} checkpoint {cid} channel {channel!r}: blob of serde type "
            f"{type_!r}{' without data' if type_ == 'msgpack' else ''} cannot be spliced into the "
            "msgpack checkpoint DynamoDBSaver stores (only msgpack, bytes, bytearray and null can; "
            "pickle, json and encrypted values would have to be decoded and re-encoded)",
        )

    def _plan_write(self, plan: _Plan, event: WriteChange) -> None:
        k = event.key
        t, ns, cid, task, idx = k.thread_id, k.checkpoint_ns, k.checkpoint_id, k.task_id, k.idx
        ref = (t, ns, cid, task, idx)
        meta_key = (writes_pk(t, ns, cid), writes_sk(task, idx))
        chunk_pk = write_chunk_pk(t, ns, cid, task, idx)
        s3_key = write_s3_key(t, ns, cid, task, idx)
        if event.op == Op.DELETE:
            plan.delete(t, meta_key)
            plan.delete(t, (chunk_pk, "CHUNK"))
            if self.s3_bucket:
                plan.s3_delete(t, self._s3_full(s3_key))
            plan.writes[ref] = None
            return

        type_, data = event.type, event.data or b""
        if "data" in event.unchanged:
            stored = self._stored_write_payload(plan, ref)
            if stored is None:
                self.missing_payloads += 1
                _log.warning(
                    "write update leaves its value unchanged but no stored value to keep; skipped",
                    sink=self.name,
                    thread_id=t,
                    checkpoint_ns=ns,
                    checkpoint_id=cid,
                    task_id=task,
                    idx=idx,
                )
                return
            if "type" in event.unchanged:
                type_ = stored[0]
            data = stored[1]
        # Only special writes (idx < 0) are ever overwritten, so only they can move between S3 and
        # DynamoDB and leave the other copy behind.
        ref_loc, ref_key = self._plan_payload(
            plan, t, chunk_pk, s3_key, data, f"write {task}/{idx} of thread {t!r} checkpoint {cid}", idx < 0
        )
        meta: Item = {
            "PK": {"S": meta_key[0]},
            "SK": {"S": meta_key[1]},
            "task_id": {"S": task},
            "channel": {"S": event.channel},
            "idx": {"N": str(idx)},
            "checkpoint_id": {"S": cid},
            "type": {"S": type_},
            "ref_loc": {"S": ref_loc},
            "ref_key": {"S": ref_key},
        }
        if event.task_path:
            meta["task_path"] = {"S": event.task_path}
        plan.put(t, {"PK": {"S": writes_index_pk(t)}, "SK": {"S": _json_key(ns, cid)}}, _PAYLOAD)
        plan.put(t, meta, _META)
        plan.writes[ref] = (type_, data)

    def _plan_blob(self, plan: _Plan, event: BlobChange) -> None:
        k = event.key
        t = k.thread_id
        ref = (t, k.checkpoint_ns, k.channel, k.version)
        key = (blob_pk(t), blob_sk(k.checkpoint_ns, k.channel, k.version))
        s3_key = self._s3_full(blob_s3_key(ref))
        if event.op == Op.DELETE:
            plan.delete(t, key)
            if self.s3_bucket:
                plan.s3_delete(t, s3_key)
            plan.blobs[ref] = None
            self.cache.discard(ref)
            plan.cache_ops.append(("discard", ref, None))
            return
        if "data" in event.unchanged:
            return  # blobs are insert-only: an update that keeps the value changes nothing we hold
        value: Blob = (event.type, event.data)
        item: Item = {"PK": {"S": key[0]}, "SK": {"S": key[1]}, "type": {"S": event.type}}
        if event.data is not None:
            if self.s3_bucket and len(event.data) > S3_OFFLOAD_THRESHOLD:
                plan.s3_put(t, s3_key, event.data)
                item["s3_key"] = {"S": s3_key}
            else:
                item["data"] = {"B": event.data}
                self._check_item_size(item, f"blob {k.channel!r}@{k.version} of thread {t!r}")
        plan.put(t, item, _PAYLOAD)
        plan.blobs[ref] = value
        plan.cache_ops.append(("put", ref, value))

    def _plan_thread_deletion(self, plan: _Plan, thread_id: str) -> None:
        t = thread_id
        if t not in plan.deleted_threads:
            existing = plan.existing.get(t) or self._existing_items([t])[t]
            for key in existing.items:
                plan.delete(t, key)
            for s3_key in existing.s3_keys:
                plan.s3_delete(t, s3_key)
            plan.deleted_threads.add(t)
        # Whatever this batch wrote for the thread before the deletion goes as well.
        for key in list(plan.thread_items.get(t, ())):
            plan.delete(t, key)
        for s3_key in list(plan.thread_s3.get(t, ())):
            plan.s3_delete(t, s3_key)
        for blob in [r for r in plan.blobs if r[0] == t]:
            del plan.blobs[blob]
        for checkpoint in [r for r in plan.checkpoints if r[0] == t]:
            del plan.checkpoints[checkpoint]
        for write in [r for r in plan.writes if r[0] == t]:
            del plan.writes[write]
        self.cache.evict_thread(t)
        plan.cache_ops.append(("evict_thread", t, None))

    def _plan_payload(
        self, plan: _Plan, t: str, chunk_pk: str, s3_key: str, data: bytes, what: str, relocatable: bool
    ) -> tuple[str, str]:
        """Plan a payload where the saver would put it; returns ``(ref_loc, ref_key)``."""
        if self.s3_bucket and len(data) > S3_OFFLOAD_THRESHOLD:
            plan.s3_put(t, self._s3_full(s3_key), data)
            plan.delete(t, (chunk_pk, "CHUNK"))
            return "S3", s3_key
        item: Item = {"PK": {"S": chunk_pk}, "SK": {"S": "CHUNK"}, "payload": {"B": data}}
        self._check_item_size(item, what)
        plan.put(t, item, _PAYLOAD)
        if self.s3_bucket and relocatable:
            plan.s3_delete(t, self._s3_full(s3_key))
        return "DYNAMODB", chunk_pk

    def _check_item_size(self, item: Item, what: str) -> None:
        size = _item_size(item)
        if size > _ITEM_LIMIT:
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"{what} needs a DynamoDB item of {size} bytes, over the 400 KB item limit: configure "
                f"an S3 bucket (s3_bucket) for target {self.name!r} so that payloads over 350 KiB are "
                "offloaded, as DynamoDBSaver does with s3_offload_config",
            )

    def _s3_full(self, key: str) -> str:
        return f"{self.s3_key_prefix}/{key}" if self.s3_key_prefix else key

    # ------------------------------------------------------------------ reads

    def _read_blobs(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        """Blob state for ``refs`` (absent ones left out): BatchGetItem, plus S3 for offloaded."""
        by_key = {(blob_pk(r[0]), blob_sk(r[1], r[2], r[3])): r for r in refs}
        keys = [_key(pk, sk) for pk, sk in by_key]
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
            lambda: self._ddb.get_item(TableName=self.table, Key=_key(pk, sk), ConsistentRead=True),
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
            data = self._s3_get(self._s3_full(ref_key))
        else:
            chunk = self._get_item(ref_key, "CHUNK")
            data = bytes(chunk["payload"]["B"]) if chunk and "payload" in chunk else None
        if data is not None and meta.get("compression", {}).get("S") == "gzip":
            data = gzip.decompress(data)
        return data

    def _stored_checkpoint_payload(self, plan: _Plan, ref: CheckpointRef) -> bytes | None:
        if ref in plan.checkpoints:
            return plan.checkpoints[ref]
        t, ns, cid = ref
        if t in plan.deleted_threads:
            return None
        meta = self._get_item(checkpoint_pk(t), checkpoint_sk(ns, cid))
        return self._read_payload(meta) if meta else None

    def _stored_write_payload(self, plan: _Plan, ref: WriteRef) -> tuple[str, bytes] | None:
        if ref in plan.writes:
            return plan.writes[ref]
        t, ns, cid, task, idx = ref
        if t in plan.deleted_threads:
            return None
        meta = self._get_item(writes_pk(t, ns, cid), writes_sk(task, idx))
        if not meta:
            return None
        data = self._read_payload(meta)
        return None if data is None else (meta["type"]["S"], data)

    def _existing_items(self, threads: Sequence[str]) -> dict[str, _Existing]:
        """Every item and S3 object each thread has in the target, for ThreadDeletions.

        Two rounds of parallel queries: each thread's checkpoint, write-index and blob-state
        partitions, then the WRITES_ partition of every checkpoint found.
        """
        found = {t: _Existing() for t in threads}
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
                        found[t].s3_keys.append(self._s3_full(checkpoint_s3_key(t, ns, cid)))
                elif kind == "index":
                    ns, cid = json.loads(item["SK"]["S"])
                    checkpoints.add((t, ns, cid))
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
                    found[t].s3_keys.append(self._s3_full(write_s3_key(t, ns, cid, task, idx)))
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

    def _execute(self, plan: _Plan) -> None:
        puts: dict[int, list[dict[str, Any]]] = {_PAYLOAD: [], _META: []}
        deletes: list[dict[str, Any]] = []
        for key, item in plan.items.items():
            if item is None:
                deletes.append({"DeleteRequest": {"Key": _key(*key)}})
            else:
                puts[plan.phase[key]].append({"PutRequest": {"Item": item}})
        s3_puts = [(k, body) for k, body in plan.s3.items() if body is not None]
        s3_deletes = [k for k, body in plan.s3.items() if body is None]

        # 1. payloads (S3 objects, CHUNK items, blob state, write index), 2. meta items: a meta
        # item is never visible before its payload. 3. deletes.
        self._run_all(
            [partial(self._s3_put, k, body) for k, body in s3_puts]
            + [partial(self._write_chunk, c) for c in self._chunks(puts[_PAYLOAD])]
        )
        self._run_all([partial(self._write_chunk, c) for c in self._chunks(puts[_META])])
        self._run_all(
            [partial(self._write_chunk, c) for c in self._chunks(deletes)]
            + [
                partial(self._s3_delete, s3_deletes[i : i + _S3_DELETE_KEYS])
                for i in range(0, len(s3_deletes), _S3_DELETE_KEYS)
            ]
        )

    @staticmethod
    def _chunks(requests: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        chunk: list[dict[str, Any]] = []
        size = 0
        for request in requests:
            body = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
            n = _item_size(body) + 64
            if chunk and (len(chunk) >= _BATCH_WRITE_ITEMS or size + n > _BATCH_WRITE_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(request)
            size += n
        if chunk:
            yield chunk

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
