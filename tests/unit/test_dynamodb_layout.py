"""The DynamoDB layout is pure: items for each entity, the write index, and what a scan names."""

from __future__ import annotations

from connectors.langgraph.batch import WholeCheckpoint, Write
from connectors.sinks.dynamodb_layout import (
    S3_OFFLOAD_THRESHOLD,
    DynamoDBLayout,
    ItemPlan,
    indexed_checkpoint,
    thread_of_item,
    writes_index_sk,
)


def test_a_write_and_its_index_item_come_and_go_together() -> None:
    layout = DynamoDBLayout("t")
    ref = ("th#1", "ns", "cid", "task", -3)
    plan = ItemPlan()
    layout.plan_write(plan, ref, Write("__interrupt__", "msgpack", b"\x90", "~a, b"))
    index = ("LGREPL#WRITES#th#1", writes_index_sk("ns", "cid", "task", -3))
    assert set(plan.items) == {
        index,
        ("WRITES_th#1#ns#cid", "task#-3"),
        ("CHUNK_th#1#ns#cid#task#-3", "CHUNK"),
    }
    layout.plan_write(plan, ref, None)
    assert all(item is None for item in plan.items.values()) and index in plan.items
    assert indexed_checkpoint(index[1]) == ("ns", "cid")
    assert indexed_checkpoint('["ns","cid"]') == ("ns", "cid")  # the former, per-checkpoint shape


def test_large_payloads_go_to_s3_under_the_prefix() -> None:
    layout = DynamoDBLayout("t", s3_bucket="b", s3_key_prefix="pfx")
    plan = ItemPlan()
    value = WholeCheckpoint(None, "msgpack", b"\xc4\x00" + b"x" * S3_OFFLOAD_THRESHOLD, {"step": 1})
    layout.plan_checkpoint(plan, ("t", "", "c1"), value)
    meta = plan.items[("CHECKPOINT_t", "#c1")]
    assert (
        meta is not None and meta["ref_loc"] == {"S": "S3"} and meta["ref_key"] == {"S": "t/checkpoints//c1"}
    )
    assert plan.s3["pfx/t/checkpoints//c1"] is not None
    assert plan.items[("CHUNK_t##c1", "CHUNK")] is None  # a smaller earlier copy goes


def test_scanned_items_name_their_thread_even_with_hashes() -> None:
    assert thread_of_item({"PK": {"S": "CHECKPOINT_a#b"}}) == "a#b"
    item = {"PK": {"S": "WRITES_a#b#outer:1|inner:2#cid-9"}, "checkpoint_id": {"S": "cid-9"}}
    assert thread_of_item(item) == "a#b"
    assert thread_of_item({"PK": {"S": "LGREPL#BLOB#a"}}) is None
