"""The table layout of langgraph-checkpoint-aws ``DynamoDBSaver``, and ours beside it. Pure.

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

* ``LGREPL#BLOB#{t}`` / json ``[ns, channel, version]``: the blob store. PostgresSaver shares
  channel values between checkpoints as insert-only ``(channel, version)`` blobs, while
  DynamoDBSaver stores every checkpoint whole, so assembling a checkpoint needs blobs written
  arbitrarily long before it. They are kept durably *in the target*: the state survives restarts
  and rebalances with no rebuild, costs one small item per blob (no Kafka traffic growing with
  conversation length), and goes away with the thread. The namespace sits in the sort key so that
  a thread deletion finds every namespace's blobs with one Query, no Scan. Values over 350 KiB
  are offloaded to S3 under ``[prefix/]_replicator/blobs/``.
* ``LGREPL#WRITES#{t}`` / json ``[ns, checkpoint_id, task_id, idx]``: one index item per pending
  write, put and deleted with it. A thread deletion finds writes through it even when their
  checkpoint is absent (writes can commit before their checkpoint, and prune deletes checkpoints
  independently), so it needs no table Scan (``DynamoDBSaver.delete_thread`` misses such orphan
  writes). One item per write, not per checkpoint, so that per-row deletes (what
  ``PostgresSaver.delete_thread`` produces) leave nothing behind. Items of the former shape,
  ``[ns, checkpoint_id]``, are still read and deleted with their thread.

Every item is a pure function of the events (no timestamps), so replays rewrite identical items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec

from connectors.langgraph import forms
from connectors.langgraph.batch import WholeCheckpoint, Write
from connectors.langgraph.forms import Blob, BlobRef, CheckpointRef, WriteRef
from replicator.errors import ErrorKind, ReplicatorError

S3_OFFLOAD_THRESHOLD = 350 * 1024  # the saver's threshold (storage_strategy.S3_OFFLOAD_THRESHOLD)
ITEM_LIMIT = 400 * 1024  # DynamoDB's maximum item size

REPLICATOR_PK_PREFIX = "LGREPL#"  # every item only the replicator reads
BLOB_PK_PREFIX = f"{REPLICATOR_PK_PREFIX}BLOB#"
WRITES_INDEX_PK_PREFIX = f"{REPLICATOR_PK_PREFIX}WRITES#"
BLOB_S3_PREFIX = "_replicator/blobs/"

ItemKey = tuple[str, str]  # (PK, SK)
Item = dict[str, Any]  # a DynamoDB item in the low-level client's attribute-value form
PAYLOAD, META = 0, 1  # write phases: a meta item is never visible before its payload


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


def json_key(*parts: str | int) -> str:
    """An unambiguous sort key for parts that may contain any character ('#' included)."""
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def blob_pk(thread_id: str) -> str:
    return f"{BLOB_PK_PREFIX}{thread_id}"


def blob_sk(ns: str, channel: str, version: str) -> str:
    return json_key(ns, channel, version)


def blob_s3_key(ref: BlobRef) -> str:
    t, ns, ch, v = (quote(p, safe="") for p in ref)
    return f"{BLOB_S3_PREFIX}{t}/ns={ns}/ch={ch}/v={v}"


def writes_index_pk(thread_id: str) -> str:
    return f"{WRITES_INDEX_PK_PREFIX}{thread_id}"


def writes_index_sk(ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return json_key(ns, checkpoint_id, task_id, idx)


def indexed_checkpoint(index_sk: str) -> tuple[str, str]:
    """The ``(ns, checkpoint_id)`` a write-index item names (either shape)."""
    parts = json.loads(index_sk)
    return str(parts[0]), str(parts[1])


def thread_of_item(item: Item) -> str | None:
    """The thread a ``CHECKPOINT_`` or ``WRITES_`` item (PK and checkpoint_id) belongs to."""
    pk = item["PK"]["S"]
    if pk.startswith("CHECKPOINT_"):
        return str(pk[len("CHECKPOINT_") :])
    # WRITES_{t}#{ns}#{cid}: strip the checkpoint id exactly, then the namespace (which never
    # contains '#'), so a thread id may contain '#'.
    cid = item.get("checkpoint_id", {}).get("S")
    rest = pk[len("WRITES_") :]
    if pk.startswith("WRITES_") and cid and rest.endswith("#" + cid):
        return str(rest[: -len(cid) - 1].rsplit("#", 1)[0])
    return None


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def item_size(item: Item) -> int:
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
    """A stored checkpoint payload split without decoding."""

    checkpoint: msgspec.Raw
    metadata: msgspec.Raw


def checkpoint_payload(value: WholeCheckpoint, where: str) -> bytes:
    """The saver's payload: serde bytes of ``{"checkpoint", "metadata"}``, the checkpoint spliced."""
    if value.type != "msgpack":
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"{where}: a checkpoint of serde type {value.type!r} cannot become DynamoDBSaver's "
            "msgpack payload without decoding it (only msgpack can)",
        )
    payload = {"checkpoint": msgspec.Raw(value.data), "metadata": value.metadata}
    return forms.encode(payload, f"{where} (DynamoDBSaver's payload)")


def stored_checkpoint(payload: bytes, meta: Item, where: str) -> WholeCheckpoint:
    """A stored payload as the whole checkpoint it holds (parts kept raw, nothing decoded)."""
    try:
        parts = msgspec.msgpack.decode(payload, type=_PayloadParts)
    except msgspec.DecodeError as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"stored checkpoint payload of {where} is not a msgpack {{checkpoint, metadata}} map "
            f"({exc}); cannot keep its unchanged fields",
        ) from None
    parent = meta.get("parent_checkpoint_id", {}).get("S")
    return WholeCheckpoint(parent, "msgpack", bytes(parts.checkpoint), parts.metadata)


@dataclass
class ItemPlan:
    """DynamoDB items and S3 objects to write for one batch; last operation per key wins."""

    items: dict[ItemKey, Item | None] = field(default_factory=dict)  # None: delete
    phase: dict[ItemKey, int] = field(default_factory=dict)
    s3: dict[str, bytes | None] = field(default_factory=dict)  # full S3 key -> body (None: delete)

    def put(self, item: Item, phase: int) -> None:
        k = (item["PK"]["S"], item["SK"]["S"])
        self.items[k] = item
        self.phase[k] = phase

    def delete(self, k: ItemKey) -> None:
        self.items[k] = None
        self.phase.pop(k, None)


@dataclass
class Existing:
    """What a thread has in the target (discovered for a thread deletion)."""

    items: list[ItemKey] = field(default_factory=list)
    s3_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DynamoDBLayout:
    """Where each entity goes, for one target (its name for errors, its S3 offload settings)."""

    name: str
    s3_bucket: str | None = None
    s3_key_prefix: str | None = None

    def s3_full(self, k: str) -> str:
        return f"{self.s3_key_prefix}/{k}" if self.s3_key_prefix else k

    def plan_existing(self, plan: ItemPlan, existing: Iterable[Existing]) -> None:
        for found in existing:
            for k in found.items:
                plan.delete(k)
            for s3_key in found.s3_keys:
                plan.s3[s3_key] = None

    def plan_checkpoint(self, plan: ItemPlan, ref: CheckpointRef, value: WholeCheckpoint | None) -> None:
        t, ns, cid = ref
        meta_key = (checkpoint_pk(t), checkpoint_sk(ns, cid))
        chunk_pk = checkpoint_chunk_pk(t, ns, cid)
        s3_key = checkpoint_s3_key(t, ns, cid)
        if value is None:
            plan.delete(meta_key)
            plan.delete((chunk_pk, "CHUNK"))
            if self.s3_bucket:
                plan.s3[self.s3_full(s3_key)] = None
            return
        where = f"checkpoint {cid} of thread {t!r} ns {ns!r}"
        payload = checkpoint_payload(value, where)
        ref_loc, ref_key = self._plan_payload(plan, chunk_pk, s3_key, payload, where, True)
        meta: Item = {
            "PK": {"S": meta_key[0]},
            "SK": {"S": meta_key[1]},
            "id": {"S": cid},
            "ns": {"S": ns},
            "type": {"S": "msgpack"},
            "ref_loc": {"S": ref_loc},
            "ref_key": {"S": ref_key},
        }
        if value.parent_checkpoint_id:
            meta["parent_checkpoint_id"] = {"S": value.parent_checkpoint_id}
        plan.put(meta, META)

    def plan_write(self, plan: ItemPlan, ref: WriteRef, value: Write | None) -> None:
        t, ns, cid, task, idx = ref
        meta_key = (writes_pk(t, ns, cid), writes_sk(task, idx))
        index_key = (writes_index_pk(t), writes_index_sk(ns, cid, task, idx))
        chunk_pk = write_chunk_pk(t, ns, cid, task, idx)
        s3_key = write_s3_key(t, ns, cid, task, idx)
        if value is None:
            plan.delete(meta_key)
            plan.delete((chunk_pk, "CHUNK"))
            plan.delete(index_key)
            if self.s3_bucket:
                plan.s3[self.s3_full(s3_key)] = None
            return
        # Only special writes (idx < 0) are ever overwritten, so only they can move between S3 and
        # DynamoDB and leave the other copy behind.
        ref_loc, ref_key = self._plan_payload(
            plan,
            chunk_pk,
            s3_key,
            value.data,
            f"write {task}/{idx} of thread {t!r} checkpoint {cid}",
            idx < 0,
        )
        meta: Item = {
            "PK": {"S": meta_key[0]},
            "SK": {"S": meta_key[1]},
            "task_id": {"S": task},
            "channel": {"S": value.channel},
            "idx": {"N": str(idx)},
            "checkpoint_id": {"S": cid},
            "type": {"S": value.type},
            "ref_loc": {"S": ref_loc},
            "ref_key": {"S": ref_key},
        }
        if value.task_path:
            meta["task_path"] = {"S": value.task_path}
        plan.put({"PK": {"S": index_key[0]}, "SK": {"S": index_key[1]}}, PAYLOAD)
        plan.put(meta, META)

    def plan_blob(self, plan: ItemPlan, ref: BlobRef, value: Blob | None) -> None:
        t, ns, channel, version = ref
        item_key = (blob_pk(t), blob_sk(ns, channel, version))
        s3_key = self.s3_full(blob_s3_key(ref))
        if value is None:
            plan.delete(item_key)
            if self.s3_bucket:
                plan.s3[s3_key] = None
            return
        type_, data = value
        item: Item = {"PK": {"S": item_key[0]}, "SK": {"S": item_key[1]}, "type": {"S": type_}}
        if data is not None:
            if self.s3_bucket and len(data) > S3_OFFLOAD_THRESHOLD:
                plan.s3[s3_key] = data
                item["s3_key"] = {"S": s3_key}
            else:
                item["data"] = {"B": data}
                self.check_item_size(item, f"blob {channel!r}@{version} of thread {t!r}")
        plan.put(item, PAYLOAD)

    def _plan_payload(
        self, plan: ItemPlan, chunk_pk: str, s3_key: str, data: bytes, what: str, relocatable: bool
    ) -> tuple[str, str]:
        """Plan a payload where the saver would put it; returns ``(ref_loc, ref_key)``."""
        if self.s3_bucket and len(data) > S3_OFFLOAD_THRESHOLD:
            plan.s3[self.s3_full(s3_key)] = data
            plan.delete((chunk_pk, "CHUNK"))
            return "S3", s3_key
        item: Item = {"PK": {"S": chunk_pk}, "SK": {"S": "CHUNK"}, "payload": {"B": data}}
        self.check_item_size(item, what)
        plan.put(item, PAYLOAD)
        if self.s3_bucket and relocatable:
            plan.s3[self.s3_full(s3_key)] = None
        return "DYNAMODB", chunk_pk

    def check_item_size(self, item: Item, what: str) -> None:
        size = item_size(item)
        if size > ITEM_LIMIT:
            raise ReplicatorError(
                ErrorKind.TARGET_SETUP,
                f"{what} needs a DynamoDB item of {size} bytes, over the 400 KB item limit: configure "
                f"an S3 bucket (s3_bucket) for target {self.name!r} so that payloads over 350 KiB are "
                "offloaded, as DynamoDBSaver does with s3_offload_config",
            )
