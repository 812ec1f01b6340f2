"""DynamoDB-specific behaviour of DynamoDBSink on a real moto server: the item layout DynamoDBSaver
reads (key schema, where payloads and blob state go, S3 offload), setup checks, error
classification, item size, the blob cache and how many blob lookups a batch costs. Setup checks,
error classification and the item size limit also run on dynalite, which validates like DynamoDB.

What every sink must do (read back like the source, replay, deletes, splits) is in ``suite.py``
and runs on moto and on dynalite through ``test_sinks.py``. Events come from ``recording.py``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from langchain_core.messages import HumanMessage

from connectors.sinks.dynamodb import BLOB_PK_PREFIX, WRITES_INDEX_PK_PREFIX, DynamoDBSink
from replicator.embedded import create_dynamodb_table
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import CheckpointChange, Op, ThreadDeletion, WriteChange
from tests.contract.recording import (
    KiB,
    TransactionRecorder,
    assert_same_tuple,
    assert_thread_equal,
    hand_checkpoint,
    put_events,
    saver_config,
    src,
    writes_events,
)
from tests.contract.suite import special_writes_events
from tests.contract.targets import REGION, bucket_objects, scan_table

# --------------------------------------------------------------------------- helpers


def make_sink(moto: Any, table: str, bucket: str | None = None, **kw: Any) -> DynamoDBSink:
    return DynamoDBSink(
        "dynamo-test",
        table,
        REGION,
        endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_endpoint_url=moto.endpoint_url if bucket else None,
        **kw,
    )


def ddb(moto: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name=REGION)


@pytest.fixture(params=["moto", "dynalite"])
def dynamodb(request: pytest.FixtureRequest, moto: Any) -> Any:
    """DynamoDB on moto, then on dynalite (written to match DynamoDB's validation and errors): what
    the setup checks and the error classification see. ``moto`` sets the dummy credentials."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def dynamodb_table(dynamodb: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    create_dynamodb_table(dynamodb.endpoint_url, name)
    return name


def scan(moto: Any, table: str) -> list[dict[str, Any]]:
    return scan_table(moto.endpoint_url, table)


def bucket_contents(moto: Any, bucket: str | None) -> dict[str, bytes]:
    return bucket_objects(moto.endpoint_url, bucket)


# --------------------------------------------------------------------------- layout


def test_special_writes_item_layout(moto: Any, dynamo_table: str) -> None:
    """Write metadata items as DynamoDBSaver writes them, '#' in names kept in JSON sort keys."""
    events, about = special_writes_events()
    t, ns, ckpt, task, new = (about[k] for k in ("thread_id", "ns", "checkpoint", "task", "new_versions"))
    sink = make_sink(moto, dynamo_table)
    sink.apply(events)
    items = {(i["PK"]["S"], i["SK"]["S"]): i for i in scan(moto, dynamo_table)}
    meta = items[(f"WRITES_{t}#{ns}#{ckpt['id']}", f"{task}#-1")]
    assert meta["idx"] == {"N": "-1"} and meta["task_path"] == {"S": "~a, b"}
    resume = items[(f"WRITES_{t}#{ns}#{ckpt['id']}", "00000000-0000-0000-0000-000000000000#-4")]
    assert "task_path" not in resume  # the saver leaves it out when empty
    assert (
        f"{BLOB_PK_PREFIX}{t}",
        json.dumps([ns, "ch#with#hash", new["ch#with#hash"]], separators=(",", ":")),
    ) in items
    assert sink.thread_ids() == [t]


def test_deleted_write_and_thread_take_their_payloads(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    """A deleted write takes its CHUNK item; a deleted thread takes its objects in S3."""
    t = "victim"
    conf = saver_config(t, "", "1f0000aa-0000-6000-8000-000000000000")
    sink = make_sink(moto, dynamo_table, s3_bucket)
    sink.apply(writes_events(conf, [("messages", "o" * (360 * KiB))], "orphan-task"))
    small = writes_events(conf, [("note", "kept in the table")], "small-task")
    sink.apply(small)
    assert any(k.startswith(f"{t}/") for k in bucket_contents(moto, s3_bucket))
    chunk = f"CHUNK_{t}##{conf['configurable']['checkpoint_id']}#small-task#0"
    assert [i for i in scan(moto, dynamo_table) if i["PK"]["S"] == chunk]

    assert isinstance(small[0], WriteChange)
    sink.apply([WriteChange(Op.DELETE, small[0].key, src())])
    assert not [i for i in scan(moto, dynamo_table) if i["PK"]["S"] == chunk]
    sink.apply([ThreadDeletion(t, src())])
    assert not [k for k in bucket_contents(moto, s3_bucket) if t in k]
    assert scan(moto, dynamo_table) == []


def test_large_values_go_to_s3_like_the_saver(moto: Any, dynamo_table: str, s3_bucket: str) -> None:
    sink = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx")
    t = "big-🐘"
    medium = "m" * (420 * KiB)  # > 400 KiB
    huge = bytes(range(256)) * (5 * KiB)  # 1.25 MiB, blob type "bytes"
    config, ckpt, new = hand_checkpoint(t, "", {"medium": medium + "!", "huge": huge, "small": [1, 2]})
    # a str is inline in PostgresSaver: make the medium value a list so it becomes a blob
    ckpt["channel_values"]["medium"] = [medium]
    events = put_events(config, ckpt, {"step": 0}, new)
    wconf = saver_config(t, "", ckpt["id"])
    task = "task-1"
    events += writes_events(wconf, [("messages", "w" * (1100 * KiB)), ("tiny", 1)], task)
    sink.apply(events)

    saver = sink.saver()
    got = saver.get_tuple(saver_config(t))
    assert got is not None
    assert got.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [1, 2]}
    assert sorted(got.pending_writes or []) == sorted(
        [(task, "messages", "w" * (1100 * KiB)), (task, "tiny", 1)]
    )

    items = {(i["PK"]["S"], i["SK"]["S"]): i for i in scan(moto, dynamo_table)}
    meta = items[(f"CHECKPOINT_{t}", f"#{ckpt['id']}")]
    assert meta["ref_loc"]["S"] == "S3" and meta["ref_key"]["S"] == f"{t}/checkpoints//{ckpt['id']}"
    wmeta = items[(f"WRITES_{t}##{ckpt['id']}", f"{task}#0")]
    assert wmeta["ref_loc"]["S"] == "S3"
    assert wmeta["ref_key"]["S"] == f"{t}/checkpoints//{ckpt['id']}/writes/{task}/0"
    assert items[(f"WRITES_{t}##{ckpt['id']}", f"{task}#1")]["ref_loc"]["S"] == "DYNAMODB"
    objects = bucket_contents(moto, s3_bucket)
    assert f"pfx/{t}/checkpoints//{ckpt['id']}" in objects
    assert f"pfx/{t}/checkpoints//{ckpt['id']}/writes/{task}/0" in objects
    blob_objects = [k for k in objects if k.startswith("pfx/_replicator/blobs/")]
    assert len(blob_objects) == 2  # medium and huge blob state offloaded, small inline
    assert (f"CHUNK_{t}##{ckpt['id']}", "CHUNK") not in items

    # A cold sink (restart) assembles the next checkpoint from the offloaded blob state.
    sink2 = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx")
    config2, ckpt2, new2 = hand_checkpoint(t, "", {"small": [3]}, parent=ckpt, step=1)
    config2["configurable"]["checkpoint_id"] = ckpt["id"]
    sink2.apply(put_events(config2, ckpt2, {"step": 1}, new2))
    got2 = sink2.saver().get_tuple(saver_config(t))
    assert got2 is not None and got2.checkpoint["id"] == ckpt2["id"]
    assert got2.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [3]}
    assert got2.parent_config == saver_config(t, "", ckpt["id"])


def test_blob_from_an_earlier_batch_and_after_restart(moto: Any, dynamo_table: str) -> None:
    t = "long-conversation"
    history = [HumanMessage(content="first")]
    c1_conf, c1, new1 = hand_checkpoint(t, "", {"history": history, "profile": {"name": "Zoë"}})
    c2_conf, c2, new2 = hand_checkpoint(t, "", {"count": 2}, parent=c1, step=1)
    c3_conf, c3, new3 = hand_checkpoint(t, "", {"count": 3}, parent=c2, step=2)

    sink = make_sink(moto, dynamo_table)
    sink.apply(put_events(c1_conf, c1, {"step": 0}, new1))
    assert len(sink.cache) >= 2  # blobs applied are cached
    sink.apply(put_events(c2_conf, c2, {"step": 1}, new2))  # blobs from the cache
    sink.close()

    cold = make_sink(moto, dynamo_table)  # restart: empty cache, state read from the table
    assert len(cold.cache) == 0
    cold.apply(put_events(c3_conf, c3, {"step": 2}, new3))
    saver = cold.saver()
    for ckpt in (c1, c2, c3):
        got = saver.get_tuple(saver_config(t, "", ckpt["id"]))
        assert got is not None and got.checkpoint == ckpt
    assert c3["channel_values"]["history"] == history
    assert cold.missing_blobs == 0
    # the lookup filled the cache, including what the empty channels resolved to
    assert len(cold.cache) >= 2


def test_oversized_item_without_bucket_names_the_fix(moto: Any, dynamo_table: str) -> None:
    conf, ckpt, new = hand_checkpoint("no-bucket", "", {"big": ["y" * (500 * KiB)]})
    sink = make_sink(moto, dynamo_table)
    with pytest.raises(ReplicatorError) as err:
        sink.apply(put_events(conf, ckpt, {"step": 0}, new))
    assert err.value.kind is ErrorKind.TARGET_SETUP and "s3_bucket" in str(err.value)


def test_check_missing_table(dynamodb: Any) -> None:
    sink = make_sink(dynamodb, f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ReplicatorError) as err:
        sink.check()
    assert err.value.kind is ErrorKind.TARGET_SETUP
    assert sink.table in str(err.value) and "aws dynamodb create-table" in str(err.value)
    assert "AttributeName=PK,KeyType=HASH" in str(err.value)


def test_check_wrong_key_schema(dynamodb: Any) -> None:
    name = f"wrong-{uuid.uuid4().hex[:8]}"
    ddb(dynamodb).create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ReplicatorError) as err:
        make_sink(dynamodb, name).check()
    assert err.value.kind is ErrorKind.TARGET_SETUP
    assert name in str(err.value) and "thread_id" in str(err.value) and "create-table" in str(err.value)


def test_check_missing_bucket_and_unreachable_endpoint(moto: Any, dynamo_table: str) -> None:
    with pytest.raises(ReplicatorError) as err:
        make_sink(moto, dynamo_table, f"nobucket-{uuid.uuid4().hex[:8]}").check()
    assert err.value.kind is ErrorKind.TARGET_SETUP and "nobucket-" in str(err.value)

    down = DynamoDBSink("down", dynamo_table, REGION, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ReplicatorError) as err:
        down.check()
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE
    assert "127.0.0.1:9" in str(err.value)


def test_blob_cache_is_bounded_by_bytes() -> None:
    from connectors.langgraph.blobs import BlobCache as _BlobCache
    from connectors.langgraph.forms import ABSENT

    cache = _BlobCache(10_000)
    for i in range(20):
        cache.put(("t", "", f"c{i}", "1"), ("msgpack", b"x" * 1000))
    assert cache.size <= 10_000 and len(cache) < 20
    assert cache.get(("t", "", "c19", "1")) == ("msgpack", b"x" * 1000)
    assert cache.get(("t", "", "c0", "1")) is None  # least recently used went first
    cache.put(("u", "", "c", "1"), ABSENT)
    assert cache.get(("u", "", "c", "1")) is ABSENT
    cache.put(("t", "", "huge", "1"), ("bytes", b"y" * 20_000))  # larger than the cache: not kept
    assert cache.get(("t", "", "huge", "1")) is None
    cache.evict_thread("t")
    assert len(cache) == 1 and cache.get(("u", "", "c", "1")) is ABSENT


def test_saver_view_and_replicator_items_are_invisible_to_the_saver(moto: Any, dynamo_table: str) -> None:
    conf, ckpt, new = hand_checkpoint("only-writes", "", {"a": [1]})
    sink = make_sink(moto, dynamo_table)
    # writes whose checkpoint is not there yet (PG can commit them first)
    sink.apply(writes_events(saver_config("only-writes", "", ckpt["id"]), [("a", [2])], "t1"))
    assert sink.thread_ids() == ["only-writes"]
    assert sink.saver().get_tuple(saver_config("only-writes")) is None
    sink.apply(put_events(conf, ckpt, {"step": 0}, new))
    got = sink.saver().get_tuple(saver_config("only-writes"))
    assert got is not None and got.pending_writes == [("t1", "a", [2])]
    pks = {i["PK"]["S"] for i in scan(moto, dynamo_table)}
    assert f"{WRITES_INDEX_PK_PREFIX}only-writes" in pks and f"{BLOB_PK_PREFIX}only-writes" in pks


def test_drop_own_state_deletes_round_by_round_while_it_scans(
    moto: Any, dynamo_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds of a few keys (2,500 in production, so a huge table never sits in memory): every
    replicator item goes, across scan pages and rounds, and the saver still reads the thread."""
    import connectors.sinks.dynamodb as module

    monkeypatch.setattr(module, "_DROP_KEYS", 3)
    sink = make_sink(moto, dynamo_table)
    events = []
    for t in ("a", "b", "c"):
        conf, ckpt, new = hand_checkpoint(t, "", {"x": [1], "y": {"k": t}})
        events += put_events(conf, ckpt, {"step": 0}, new)
        events += writes_events(saver_config(t, "", ckpt["id"]), [("x", [2]), ("y", [3])], "task")
    sink.apply(events)
    own = [i for i in scan(moto, dynamo_table) if i["PK"]["S"].startswith("LGREPL#")]
    assert len(own) > 3 * 2  # blob state and write index of three threads: several rounds
    before = {t: sink.saver().get_tuple(saver_config(t)) for t in ("a", "b", "c")}
    assert sink.drop_own_state() == [
        f"{len(own):,} replicator items (blob state, write index) from table {dynamo_table!r}"
    ]
    assert not [i for i in scan(moto, dynamo_table) if i["PK"]["S"].startswith("LGREPL#")]
    for t, tup in before.items():
        assert tup is not None
        assert_same_tuple(tup, make_sink(moto, dynamo_table).saver().get_tuple(saver_config(t)))


def test_drop_own_state_deletes_offloaded_blob_values_page_by_page(
    moto: Any, dynamo_table: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blob values offloaded to S3 go a listed page at a time (pages of one object here); the
    saver's own offloaded payloads stay, and the saver reads the checkpoint as before."""
    import connectors.sinks.dynamodb as module

    monkeypatch.setattr(module, "_S3_DELETE_KEYS", 1)
    sink = make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx")
    big = {f"v{n}": [f"{n}" * (360 * KiB)] for n in range(3)}  # three blobs over 350 KiB
    config, ckpt, new = hand_checkpoint("big", "", big)
    sink.apply(put_events(config, ckpt, {"step": 0}, new))
    before = sink.saver().get_tuple(saver_config("big"))
    offloaded = [k for k in bucket_contents(moto, s3_bucket) if k.startswith("pfx/_replicator/blobs/")]
    assert len(offloaded) == 3

    dropped = sink.drop_own_state()
    assert dropped[1] == f"3 blob values under s3://{s3_bucket}/pfx/_replicator/blobs/"
    left = bucket_contents(moto, s3_bucket)
    assert not [k for k in left if k.startswith("pfx/_replicator/")]
    assert f"pfx/big/checkpoints//{ckpt['id']}" in left  # the saver's payload stays
    assert before is not None
    assert_same_tuple(
        before,
        make_sink(moto, dynamo_table, s3_bucket, s3_key_prefix="pfx").saver().get_tuple(saver_config("big")),
    )


class _Impatient(DynamoDBSink):
    botocore_max_attempts = 1
    max_error_attempts = 2
    backoff_max = 0.05


def test_apply_errors_are_classified_and_bounded(dynamodb: Any, dynamodb_table: str) -> None:
    import time

    from botocore.exceptions import ClientError

    from connectors.sinks.dynamodb import _transient

    conf, ckpt, new = hand_checkpoint("err", "", {"a": [1]})
    events = put_events(conf, ckpt, {"step": 0}, new)

    down = _Impatient("down", dynamodb_table, REGION, endpoint_url="http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ReplicatorError) as err:
        down.apply(events)
    assert err.value.kind is ErrorKind.TARGET_UNREACHABLE and err.value.retry.value == "timed"
    assert time.monotonic() - started < 30

    ddb(dynamodb).delete_table(TableName=dynamodb_table)
    with pytest.raises(ReplicatorError) as err:
        make_sink(dynamodb, dynamodb_table).apply(events)
    assert err.value.kind is ErrorKind.TARGET_SETUP and "create-table" in str(err.value)

    def client_error(code: str, status: int) -> ClientError:
        response: Any = {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "BatchWriteItem")

    sink = make_sink(dynamodb, dynamodb_table)
    for code, status, kind in [
        ("ProvisionedThroughputExceededException", 400, ErrorKind.TARGET_THROTTLED),
        ("ThrottlingException", 400, ErrorKind.TARGET_THROTTLED),
        ("RequestLimitExceeded", 400, ErrorKind.TARGET_THROTTLED),
        ("InternalServerError", 500, ErrorKind.TARGET_UNREACHABLE),
    ]:
        exc = client_error(code, status)
        assert _transient(exc)
        assert sink._error(exc, "writing").kind is kind
    assert not _transient(client_error("ValidationException", 400))


# --------------------------------------------------------------------------- blob lookups


def test_inline_channels_are_not_looked_up_but_delta_snapshots_are(moto: Any, dynamo_table: str) -> None:
    """A cold sink looks up only the channels of a checkpoint that can have a blob: not the inline
    primitives, but DeltaChannel's snapshot behind its inline ``True`` marker (and a genuine ``True``,
    which cannot be told from it), channels with a blob and channels without any value."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    t = "lookups"
    snapshot = _DeltaSnapshot([HumanMessage(content="früh"), HumanMessage(content="später")])
    values = {
        "history": [HumanMessage(content="blob")],
        "delta": snapshot,
        "count": 1,
        "label": "ünï",
        "nothing": None,
        "off": False,
        "flag": True,
        "ratio": 0.5,
    }
    c1_conf, c1, new1 = hand_checkpoint(t, "", values)
    c1["channel_versions"]["consumed"] = f"{1:032}.{0.5:016}"  # a version without a value
    c2_conf, c2, new2 = hand_checkpoint(t, "", {"count": 2}, parent=c1, step=1)

    make_sink(moto, dynamo_table).apply(put_events(c1_conf, c1, {"step": 0}, new1))
    c2_events = put_events(c2_conf, c2, {"step": 1}, new2)
    assert isinstance(c2_events[-1], CheckpointChange) and c2_events[-1].checkpoint is not None
    assert c2_events[-1].checkpoint["channel_values"]["delta"] is True  # PostgresSaver's marker

    cold = make_sink(moto, dynamo_table)  # nothing cached: every lookup goes to the table
    cold.apply(c2_events)
    assert cold.blob_lookups == 4  # history, delta, flag, consumed
    got = cold.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == c2
    assert got.checkpoint["channel_values"]["delta"] == snapshot
    assert cold.missing_blobs == 0


@pytest.mark.parametrize("batch", ["transaction", "all"])
def test_demo_app_needs_fewer_blob_lookups(
    moto: Any, dynamo_table: str, batch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo app's conversations, applied one source transaction per batch (an applier at low
    load) or all in one batch: inline channels cost no BatchGetItem keys (all of them would miss),
    and the target reads back the same whether they are looked up or not."""
    from connectors.langgraph import forms
    from replicator.embedded.demo_app import build_graph as build_demo_graph
    from replicator.embedded.demo_app import run_conversation

    recorder = TransactionRecorder()
    graph = build_demo_graph(recorder)
    threads = [f"demo-{n}" for n in range(3)]
    for t in threads:
        run_conversation(graph, t, turns=2)
    units = recorder.transactions if batch == "transaction" else [recorder.events]

    def replicate(table: str) -> tuple[int, int]:
        sink = make_sink(moto, table)
        requests = 0
        batch_get = sink._batch_get

        def counting(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal requests
            requests += 1
            return batch_get(keys)

        monkeypatch.setattr(sink, "_batch_get", counting)
        for events in units:
            sink.apply(events)
        for t in threads:
            assert assert_thread_equal(recorder, sink.saver(), t) > 0
        assert sink.missing_blobs == 0
        sink.close()
        return sink.blob_lookups, requests

    after = replicate(dynamo_table)
    with monkeypatch.context() as m:
        m.setattr(forms, "may_have_blob", lambda inline, channel: True)  # every channel, as before
        create_dynamodb_table(moto.endpoint_url, f"{dynamo_table}-all")
        before = replicate(f"{dynamo_table}-all")
    # Measured (langgraph 1.2.24): 87 keys before, 36 after, in 30 requests either way per
    # transaction: every checkpoint still asks for its consumed triggers, which have no value.
    assert after[0] * 2 < before[0] and after[1] <= before[1]


# --------------------------------------------------------------------------- item size


def test_item_size_limit_is_dynamodbs(dynalite: Any, moto: Any) -> None:
    """The sink's item-size arithmetic matches DynamoDB's 400 KB (409,600 bytes, names included) as
    dynalite implements it: an item of exactly the limit is written, one byte more is refused before
    any request. (moto refuses items over 405,000 bytes, a guess in its source, so this runs on
    dynalite.)"""
    from connectors.sinks.dynamodb import write_chunk_pk

    table = f"size-{uuid.uuid4().hex[:12]}"
    create_dynamodb_table(dynalite.endpoint_url, table)
    sink = DynamoDBSink("dynalite", table, REGION, endpoint_url=dynalite.endpoint_url)
    conf = saver_config("sized", "", "c1")
    # the CHUNK item: PK, SK and payload names and values (a bytes value is stored as it is)
    overhead = len("PK" + write_chunk_pk("sized", "", "c1", "task", 0) + "SK" + "CHUNK" + "payload")

    def write_of(payload_size: int) -> WriteChange:
        [event] = writes_events(conf, [("bytes", b"x" * payload_size)], "task")
        assert isinstance(event, WriteChange) and len(event.data or b"") == payload_size
        return event

    sink.apply([write_of(400 * KiB - overhead)])
    items = scan_table(dynalite.endpoint_url, table)
    assert [len(i["payload"]["B"]) for i in items if i["PK"]["S"].startswith("CHUNK_sized")] == [
        400 * KiB - overhead
    ]
    with pytest.raises(ReplicatorError) as err:
        sink.apply([write_of(400 * KiB - overhead + 1)])
    assert err.value.kind is ErrorKind.TARGET_SETUP and "409601 bytes" in str(err.value)
    sink.close()
