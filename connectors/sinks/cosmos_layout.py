"""The container layout of langgraph-checkpoint-cosmosdb's ``CosmosDBSaver`` (0.4.0). Pure.

Chosen over langgraph-checkpoint-cosmos (LangModule, 0.1.x, two releases) because it is the one
maintained into 2026, runs the LangGraph conformance suite, implements ``delete_thread`` without
an account feature flag, and reads latest by the largest checkpoint id (so replaying an older
checkpoint cannot change which one is latest), where the other keeps a "tip" document that the
last put wins. What it reads, in one container whose partition key path is ``/partition_key``:

* checkpoint: ``id`` ``checkpoint${t}${ns}${cid}``, ``partition_key`` ``checkpoint${t}${ns}$``,
  ``checkpoint`` base64 of the serde bytes, ``type``, ``metadata`` ``[type, base64]``,
  ``parent_checkpoint_id`` (``""`` for none), ``run_id`` (top-level copy of the metadata's)
* write: ``id`` ``writes${t}${ns}${cid}${task}${idx}``, ``partition_key``
  ``writes${t}${ns}${cid}$$``, ``channel``, ``type``, ``value`` base64

The saver splits ids on ``$``, so a thread, namespace, checkpoint or task id holding one cannot
be read back; Cosmos ids may not hold ``/ \\ ? #`` and are at most 255 characters; an item is at
most 2 MB, and the saver stores each checkpoint in one item (no splitting, no offload). Such an
entity is refused as malformed, naming the thread, so that thread is dead-lettered and the
others go on. It stores no ``task_path`` (its reads order writes by idx only).

Nothing of the replicator's own lives in the container: the blobs it assembles checkpoints from
are in the replicator's state store, as for any target without a place for them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from connectors.langgraph.batch import DurableOps, WholeCheckpoint, Write
from connectors.langgraph.forms import CheckpointRef, WriteRef
from connectors.sinks.chunks import chunked
from replicator.errors import ErrorKind, ReplicatorError

SEPARATOR = "$"
ID_LIMIT = 255
ITEM_LIMIT = 2 * 1024 * 1024  # bytes of JSON per item
ITEM_MARGIN = 2048  # system properties Cosmos adds (_rid, _self, _etag, _attachments, _ts)
BATCH_OPERATIONS = 100  # a transactional batch holds at most 100 operations...
BATCH_BYTES = 2 * 1024 * 1024  # ...and at most 2 MB of request
FORBIDDEN = ("/", "\\", "?", "#", SEPARATOR)

Doc = dict[str, Any]


def checkpoint_id_of(t: str, ns: str, cid: str) -> str:
    return SEPARATOR.join(["checkpoint", t, ns, cid])


def checkpoint_partition(t: str, ns: str) -> str:
    return SEPARATOR.join(["checkpoint", t, ns, ""])


def write_id_of(t: str, ns: str, cid: str, task: str, idx: int) -> str:
    return SEPARATOR.join(["writes", t, ns, cid, task, str(idx)])


def write_partition(t: str, ns: str, cid: str) -> str:
    return SEPARATOR.join(["writes", t, ns, cid, "", ""])


def thread_prefixes(t: str) -> tuple[str, str]:
    """Partition-key prefixes of every document of thread ``t`` (what ``delete_thread`` queries)."""
    return SEPARATOR.join(["checkpoint", t, ""]), SEPARATOR.join(["writes", t, ""])


def thread_of_partition(partition_key: str) -> str | None:
    parts = partition_key.split(SEPARATOR)
    return parts[1] if len(parts) >= 3 and parts[0] in ("checkpoint", "writes") else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_names(where: str, **names: str) -> None:
    """Refuse names the saver cannot read back or Cosmos cannot store in an id."""
    for label, value in names.items():
        bad = [c for c in FORBIDDEN if c in value]
        if bad:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT,
                f"{where}: {label} {value!r} holds {' '.join(repr(c) for c in bad)}, which Cosmos DB "
                "ids cannot hold ('/', '\\\\', '?', '#') or CosmosDBSaver cannot read back (it splits "
                "ids on '$')",
            )


def _sized(doc: Doc, where: str) -> Doc:
    size = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    if size + ITEM_MARGIN > ITEM_LIMIT:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"{where}: {size:,} bytes as a Cosmos DB item, over its 2 MB limit; CosmosDBSaver stores "
            "each checkpoint and write in one item (values base64, a third larger), so it could not "
            "store this one either",
        )
    if len(doc["id"]) > ID_LIMIT:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"{where}: id of {len(doc['id'])} characters, over Cosmos DB's limit of {ID_LIMIT} "
            "(CosmosDBSaver builds it from the thread, namespace, checkpoint and task ids)",
        )
    return doc


def metadata_tree(metadata: Any) -> Any:
    return msgspec.msgpack.decode(metadata) if isinstance(metadata, msgspec.Raw) else (metadata or {})


def checkpoint_doc(ref: CheckpointRef, value: WholeCheckpoint, dumps_typed: Any) -> Doc:
    """What ``CosmosDBSaver.put`` writes; ``dumps_typed`` is its serde's (JsonPlusSerializer)."""
    t, ns, cid = ref
    where = f"checkpoint {cid} of thread {t!r} ns {ns!r}"
    check_names(where, thread=t, namespace=ns, checkpoint=cid)
    metadata = metadata_tree(value.metadata)
    meta_type, meta_data = dumps_typed(metadata)
    doc: Doc = {
        "partition_key": checkpoint_partition(t, ns),
        "id": checkpoint_id_of(t, ns, cid),
        "checkpoint": _b64(value.data),
        "type": value.type,
        "metadata": [meta_type, _b64(meta_data)],
        "parent_checkpoint_id": value.parent_checkpoint_id or "",
    }
    run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
    if run_id:
        doc["run_id"] = run_id
    return _sized(doc, where)


def write_doc(ref: WriteRef, write: Write) -> Doc:
    """What ``CosmosDBSaver.put_writes`` writes for one pending write."""
    t, ns, cid, task, idx = ref
    where = f"write {task}/{idx} of checkpoint {cid} of thread {t!r} ns {ns!r}"
    check_names(where, thread=t, namespace=ns, checkpoint=cid, task=task)
    doc: Doc = {
        "partition_key": write_partition(t, ns, cid),
        "id": write_id_of(t, ns, cid, task, idx),
        "channel": write.channel,
        "type": write.type,
        "value": _b64(write.data),
    }
    return _sized(doc, where)


def stored_checkpoint(doc: Doc, loads_typed: Any) -> WholeCheckpoint:
    meta_type, meta_b64 = doc["metadata"]
    return WholeCheckpoint(
        doc.get("parent_checkpoint_id") or None,
        doc["type"],
        base64.b64decode(doc["checkpoint"]),
        loads_typed((meta_type, base64.b64decode(meta_b64))),
    )


def stored_write(doc: Doc) -> tuple[str, bytes]:
    return doc["type"], base64.b64decode(doc["value"])


@dataclass
class Plan:
    """One batch's writes: deleted threads first, then single deletes, then upserts grouped in
    transactional batches per partition key (each atomic; a checkpoint's writes and a thread's
    checkpoints in a namespace share a partition)."""

    deleted_threads: list[str] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (id, partition key)
    batches: list[tuple[str, list[Doc]]] = field(default_factory=list)  # (partition key, docs)


def _doc_bytes(doc: Doc) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()) + 256


def plan(ops: DurableOps, dumps_typed: Any, target: str) -> Plan:
    out = Plan(deleted_threads=list(ops.deleted_threads))
    by_partition: dict[str, list[Doc]] = {}
    for ref, value in sorted(ops.checkpoints.items()):
        t, ns, cid = ref
        if value is None:
            out.deletes.append((checkpoint_id_of(t, ns, cid), checkpoint_partition(t, ns)))
            continue
        if not isinstance(value, WholeCheckpoint):
            raise ReplicatorError(
                ErrorKind.INTERNAL,
                f"target {target!r} stores whole checkpoints (CosmosDBSaver), was given a split one: "
                f"checkpoint {cid} of thread {t!r} ns {ns!r}",
            )
        doc = checkpoint_doc(ref, value, dumps_typed)
        by_partition.setdefault(doc["partition_key"], []).append(doc)
    for wref, write in sorted(ops.writes.items()):
        t, ns, cid, task, idx = wref
        if write is None:
            out.deletes.append((write_id_of(t, ns, cid, task, idx), write_partition(t, ns, cid)))
            continue
        doc = write_doc(wref, write)
        by_partition.setdefault(doc["partition_key"], []).append(doc)
    for partition_key, docs in by_partition.items():
        chunks = chunked(docs, _doc_bytes, BATCH_OPERATIONS, BATCH_BYTES)
        out.batches.extend((partition_key, chunk) for chunk in chunks)
    return out
