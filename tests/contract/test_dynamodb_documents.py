"""DynamoDBSink takes whole-form checkpoints (what SqliteSaver or InMemorySaver store) as they
are: the payload is the document itself, and DynamoDBSaver reads back the same checkpoint."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from connectors.sinks.dynamodb import DynamoDBSink
from replicator.events import (
    CheckpointDocument,
    CheckpointKey,
    DataChange,
    Op,
    SourceMeta,
    ThreadDeletion,
    WriteChange,
    WriteKey,
)

SERDE = JsonPlusSerializer()
SRC = SourceMeta(position=1)
KiB = 1024


def checkpoint(values: dict[str, Any], step: int) -> dict[str, Any]:
    cp = dict(create_checkpoint(empty_checkpoint(), None, step))
    cp["channel_values"] = values
    cp["channel_versions"] = {ch: step + 1 for ch in values}  # int versions, as DynamoDBSaver's
    return cp


def document(t: str, cp: dict[str, Any], parent: str | None, metadata: dict[str, Any]) -> CheckpointDocument:
    type_, data = SERDE.dumps_typed(cp)
    return CheckpointDocument(Op.UPSERT, CheckpointKey(t, "", cp["id"]), SRC, parent, type_, data, metadata)


def test_documents_read_back_through_the_saver(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    sink = DynamoDBSink(
        "docs", dynamo_table, "us-east-1", moto.endpoint_url, s3_bucket, s3_endpoint_url=moto.endpoint_url
    )
    t = "sqlite-born-🪶"
    first = checkpoint({"doc": {"a": [1, 2]}, "raw": b"\x00\xff", "n": 1}, 0)
    second = checkpoint({"doc": {"a": [3]}, "big": ["x" * (400 * KiB)], "n": 2}, 1)
    events: list[DataChange] = [
        document(t, first, None, {"step": 0, "source": "input"}),
        document(t, second, first["id"], {"step": 1}),
        WriteChange(Op.UPSERT, WriteKey(t, "", second["id"], "task", 0), SRC, "n", *SERDE.dumps_typed(5)),
    ]
    sink.apply(events)
    saver = sink.saver()
    got = saver.get_tuple({"configurable": {"thread_id": t, "checkpoint_ns": ""}})
    assert got is not None and got.checkpoint == second and got.metadata == {"step": 1}
    assert got.parent_config is not None
    assert got.parent_config["configurable"]["checkpoint_id"] == first["id"]
    assert got.pending_writes == [("task", "n", 5)]
    old = saver.get_tuple(
        {"configurable": {"thread_id": t, "checkpoint_ns": "", "checkpoint_id": first["id"]}}
    )
    assert old is not None and old.checkpoint == first and old.metadata == {"step": 0, "source": "input"}
    assert sink.blob_lookups == 0  # nothing to assemble

    sink.apply([CheckpointDocument(Op.DELETE, CheckpointKey(t, "", second["id"]), SRC)])
    latest = saver.get_tuple({"configurable": {"thread_id": t, "checkpoint_ns": ""}})
    assert latest is not None and latest.checkpoint == first
    sink.apply([ThreadDeletion(t, SRC)])
    assert sink.thread_ids() == []
    sink.close()
