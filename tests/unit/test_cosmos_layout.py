"""CosmosDBSaver's documents (pure): what cannot be stored is refused by name, before any request.
The documents themselves are read back by CosmosDBSaver in the contract suite (in-memory
container, not a live account)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from connectors.langgraph.batch import DurableOps, WholeCheckpoint, Write
from connectors.sinks import cosmos_layout as layout
from replicator.config import parse_config
from replicator.errors import ErrorKind, ReplicatorError

DUMPS = JsonPlusSerializer().dumps_typed


@pytest.mark.parametrize("thread", ["a#b", "a/b", "a?b", "a\\b", "a$b"])
def test_a_name_cosmos_or_the_saver_cannot_hold_is_refused_naming_the_thread(thread: str) -> None:
    ops = DurableOps()
    ops.checkpoints[(thread, "", "c1")] = WholeCheckpoint(None, "msgpack", b"\x80", {})
    with pytest.raises(ReplicatorError) as raised:
        layout.plan(ops, DUMPS, "cosmos")
    assert raised.value.kind is ErrorKind.MALFORMED_EVENT  # dead-letters that thread only
    assert repr(thread) in str(raised.value)


def test_an_item_over_two_megabytes_is_refused_as_the_saver_could_not_store_it() -> None:
    ops = DurableOps()
    ops.checkpoints[("big", "", "c1")] = WholeCheckpoint(None, "msgpack", b"x" * 1_600_000, {})
    with pytest.raises(ReplicatorError) as raised:
        layout.plan(ops, DUMPS, "cosmos")
    assert raised.value.kind is ErrorKind.MALFORMED_EVENT
    assert "'big'" in str(raised.value) and "2 MB" in str(raised.value)
    ops.checkpoints[("big", "", "c1")] = WholeCheckpoint(None, "msgpack", b"x" * 1_400_000, {})
    assert len(layout.plan(ops, DUMPS, "cosmos").batches) == 1  # base64 of 1.4 MB fits


def test_documents_are_the_savers_and_batches_hold_one_partition_each() -> None:
    ops = DurableOps()
    ops.checkpoints[("t", "ns", "c2")] = WholeCheckpoint(
        "c1", "msgpack", b"\x80", {"run_id": "r-1", "step": 2}
    )
    ops.writes[("t", "ns", "c2", "task", -3)] = Write("__interrupt__", "msgpack", b"\x90", "~x")
    ops.checkpoints[("t", "ns", "c0")] = None
    planned = layout.plan(ops, DUMPS, "cosmos")
    assert planned.deletes == [("checkpoint$t$ns$c0", "checkpoint$t$ns$")]
    by_partition = dict(planned.batches)
    (checkpoint,) = by_partition["checkpoint$t$ns$"]
    assert checkpoint["parent_checkpoint_id"] == "c1" and checkpoint["run_id"] == "r-1"
    assert JsonPlusSerializer().loads_typed(
        (checkpoint["metadata"][0], __import__("base64").b64decode(checkpoint["metadata"][1]))
    ) == {"run_id": "r-1", "step": 2}
    (write,) = by_partition["writes$t$ns$c2$$"]
    assert write["id"] == "writes$t$ns$c2$task$-3" and "task_path" not in write  # the saver keeps none


def test_cosmos_target_config_names_the_target_and_needs_no_key() -> None:
    base = {"source": {"dsn": "postgresql://app@db/app"}, "kafka": {"bootstrap_servers": "k:9092"}}
    good = {
        "name": "cosmos",
        "kind": "cosmos",
        "endpoint": "https://acct.documents.azure.com:443/",
        "database": "langgraph",
        "container": "checkpoints",
    }
    config = parse_config({**base, "targets": [good]}, env={})
    assert config.targets[0].kind == "cosmos" and config.targets[0].key is None
    with pytest.raises(ReplicatorError) as raised:
        parse_config({**base, "targets": [{**good, "endpoint": "acct.documents.azure.com"}]}, env={})
    assert "target 'cosmos'" in str(raised.value) and "endpoint" in str(raised.value)
    secret = parse_config(
        {**base, "targets": [{**good, "key": "${COSMOS_KEY}"}]}, env={"COSMOS_KEY": "s3cr3t"}
    )
    assert "s3cr3t" not in repr(secret)
