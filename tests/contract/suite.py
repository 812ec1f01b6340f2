"""The contract every sink keeps, written once and run against each target (litestream's
``RunWithReplicaClient`` pattern): adding a target adds a fixture in ``conftest.py``, not tests.

A target gives fresh, empty *stores*; a store builds sinks on itself (each one a new owner, as after
a restart) and dumps its raw contents, replicator-owned items included. What the sink stored is
read back through the target's own LangGraph saver (``sink.saver()``) and compared with what the
source's saver returns (InMemorySaver running the same calls, or a real PostgresSaver). Dumps prove
what reads cannot: a replay changed nothing, a deleted thread left nothing behind.

Thread ids whose absence a test proves are plain ASCII and no id is a substring of another, so a
store's keys name them literally.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
import structlog.testing
from langchain_core.messages import AIMessage, HumanMessage

from connectors.base import Sink
from connectors.langgraph.forms import Form
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    CheckpointChange,
    CheckpointKey,
    DataChange,
    Op,
    ThreadDeletion,
    WriteChange,
)
from tests.contract.recording import (
    SERDE,
    KiB,
    Recorder,
    TransactionRecorder,
    assert_same_tuple,
    assert_thread_equal,
    batches,
    delete_thread_events,
    hand_checkpoint,
    namespaces,
    postgres_rows_as_events,
    put_events,
    run_graph,
    saver_config,
    src,
    thread_of,
    writes_events,
)

Dump = Mapping[str, Any]


class ContractSink(Sink, Protocol):
    """A sink as the suite drives it: the Sink protocol, the form its saver stores, and its count
    of channel values a checkpoint should have had but whose blob was not found (only a whole-form
    sink, which assembles checkpoints from blobs, can find one missing)."""

    form: Form
    missing_blobs: int


class Store(Protocol):
    """One empty place of a target (a table, a database) that the suite fills."""

    def sink(self) -> ContractSink:
        """A new sink on this store, with nothing cached (the suite closes it)."""
        ...

    def dump(self) -> Dump:
        """Everything the store holds, replicator-owned items included, as ``{key: raw value}``.
        Keys are unique strings that name the item (and with it its thread id); values compare
        with ``==``. Two stores given the same events dump equal."""
        ...


class SinkTarget(Protocol):
    name: str

    def new_store(self) -> Store: ...


@dataclass(frozen=True)
class Contract:
    """One clause of the contract: ``run(target, **fixtures)``; ``fixtures`` names pytest fixtures
    it needs besides the target (the test resolves them), ``marks`` are pytest marks for it."""

    id: str
    run: Callable[..., None]
    fixtures: tuple[str, ...] = ()
    marks: tuple[Any, ...] = ()


CONTRACTS: list[Contract] = []


def contract(
    *variants: dict[str, Any], fixtures: tuple[str, ...] = (), marks: tuple[Any, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a contract, once or once per variant (keyword arguments bound into it)."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        for variant in variants or ({},):
            suffix = ",".join(f"{k}={v}" for k, v in variant.items())
            CONTRACTS.append(
                Contract(
                    fn.__name__ + (f"[{suffix}]" if suffix else ""),
                    functools.partial(fn, **variant),
                    fixtures,
                    marks,
                )
            )
        return fn

    return register


# --------------------------------------------------------------------------- dump helpers


def of_thread(dump: Dump, thread_id: str) -> dict[str, Any]:
    """The entries of a dump whose key names ``thread_id``."""
    return {k: v for k, v in dump.items() if thread_id in k}


def without_thread(dump: Dump, thread_id: str) -> dict[str, Any]:
    return {k: v for k, v in dump.items() if thread_id not in k}


ORPHAN_TASK = "orphan-task"


def left_of_thread(target: SinkTarget, dump: Dump, thread_id: str) -> dict[str, Any]:
    """What a dump still holds of a deleted thread. A target whose saver's own ``delete_thread``
    misses writes whose checkpoint it never held (``delete_thread_keeps_orphan_writes``) may
    keep those: the contracts' orphan writes (task ``orphan-task``), never anything else."""
    left = of_thread(dump, thread_id)
    if getattr(target, "delete_thread_keeps_orphan_writes", False):
        left = {k: v for k, v in left.items() if ORPHAN_TASK not in k}
    return left


def name_for(target: SinkTarget, name: str) -> str:
    """``name`` with the characters the target cannot hold in ids (``forbidden_in_names``)
    replaced: such names are refused by that target, which its own tests check."""
    forbidden = getattr(target, "forbidden_in_names", "")
    return "".join("-" if c in forbidden else c for c in name)


def exact_partial_deletes(target: SinkTarget) -> bool:
    """Whether the target can delete one checkpoint or write of a thread that keeps others."""
    return bool(getattr(target, "exact_partial_deletes", True))


def apply_all(sink: Sink, events: Sequence[DataChange], size: int) -> None:
    for batch in batches(events, size):
        sink.apply(batch)


# --------------------------------------------------------------------------- reading back


@contract({"batch_size": 1}, {"batch_size": 7}, {"batch_size": 10_000})
def real_graph_reads_back_like_the_source(target: SinkTarget, batch_size: int) -> None:
    """A real graph's checkpoints (subgraph namespaces, interrupt and resume writes, unicode) read
    back like the source, through the sink that applied them and through a freshly built one."""
    recorder = Recorder()
    threads = [name_for(target, t) for t in ("thread-ünï-🚀", "plain#thread")]
    for t in threads:
        run_graph(recorder, t)
    assert any(ns for t in threads for ns in namespaces(recorder, t)), "the subgraph made a namespace"
    assert any(isinstance(e, WriteChange) and e.key.idx == -3 for e in recorder.events)  # __interrupt__
    assert any(isinstance(e, WriteChange) and e.key.idx == -4 for e in recorder.events)  # __resume__

    store = target.new_store()
    sink = store.sink()
    sink.check()
    apply_all(sink, recorder.events, batch_size)
    saver = sink.saver()
    for t in threads:
        assert assert_thread_equal(recorder, saver, t) >= 6
    assert sorted(sink.thread_ids()) == sorted(threads)
    assert sink.missing_blobs == 0
    sink.close()

    # durable when apply returned: a new sink (another process, after a restart) reads the same
    fresh = store.sink()
    fresh_saver = fresh.saver()
    for t in threads:
        for ns in namespaces(recorder, t):
            config = saver_config(t, ns)
            assert_same_tuple(recorder.get_tuple(config), fresh_saver.get_tuple(config))
    assert sorted(fresh.thread_ids()) == sorted(threads)
    fresh.close()


def special_writes_events(t: str = "tëst#1") -> tuple[list[DataChange], dict[str, Any]]:
    """A checkpoint in a nested namespace of a thread with '#' and unicode in its names, with
    ordinary, error, interrupt and resume writes. Returns the events and what they are about."""
    ns = "outer:1f0e|inner:2a"
    config, ckpt, new = hand_checkpoint(
        t, ns, {"messages": [HumanMessage(content="ä")], "ch#with#hash": {"k": "v"}, "flag": True}
    )
    events = put_events(config, ckpt, {"source": "input", "step": -1, "parents": {}}, new)
    wconf = saver_config(t, ns, ckpt["id"])
    task = str(uuid.uuid4())
    events += writes_events(
        wconf, [("messages", [AIMessage(content="ok ✓")]), ("flag", False)], task, "~a, b"
    )
    events += writes_events(wconf, [("__error__", ValueError("kaputt ✗"))], task, "~a, b")
    events += writes_events(wconf, [("__interrupt__", ["why?"])], str(uuid.uuid4()))
    events += writes_events(wconf, [("__resume__", None)], "00000000-0000-0000-0000-000000000000")
    return events, {"thread_id": t, "ns": ns, "checkpoint": ckpt, "task": task, "new_versions": new}


@contract()
def special_writes_unicode_and_hash_in_names(target: SinkTarget) -> None:
    events, about = special_writes_events(name_for(target, "tëst#1"))
    t, ns, ckpt, task = about["thread_id"], about["ns"], about["checkpoint"], about["task"]
    sink = target.new_store().sink()
    sink.apply(events)

    got = sink.saver().get_tuple(saver_config(t, ns))
    assert got is not None
    assert got.checkpoint == ckpt
    assert got.metadata == {"source": "input", "step": -1, "parents": {}}
    writes = {(w[0], w[1]): w[2] for w in got.pending_writes or []}
    assert writes[(task, "messages")] == [AIMessage(content="ok ✓")]
    assert writes[(task, "flag")] is False
    # what PostgresSaver returns for it too: the serde's round trip of the exception
    assert writes[(task, "__error__")] == SERDE.loads_typed(SERDE.dumps_typed(ValueError("kaputt ✗")))
    assert ["why?"] in writes.values()
    assert writes[("00000000-0000-0000-0000-000000000000", "__resume__")] is None
    assert list(sink.thread_ids()) == [t]
    sink.close()


@contract()
def large_values_read_back(target: SinkTarget) -> None:
    """Values over DynamoDB's 400 KiB item limit (and over 1 MiB) in blobs and writes read back,
    also when a freshly built sink assembles the next checkpoint from them."""
    store = target.new_store()
    sink = store.sink()
    t = "big-🐘"
    medium = "m" * (420 * KiB)  # > 400 KiB
    # 1.25 MiB, blob type "bytes" (scaled down where a whole checkpoint must fit one item)
    huge = bytes(range(256)) * int(5 * KiB * getattr(target, "value_scale", 1.0))
    config, ckpt, new = hand_checkpoint(t, "", {"medium": medium + "!", "huge": huge, "small": [1, 2]})
    # a str is inline in PostgresSaver: make the medium value a list so it becomes a blob
    ckpt["channel_values"]["medium"] = [medium]
    events = put_events(config, ckpt, {"step": 0}, new)
    task = "task-1"
    events += writes_events(
        saver_config(t, "", ckpt["id"]), [("messages", "w" * (1100 * KiB)), ("tiny", 1)], task
    )
    sink.apply(events)

    got = sink.saver().get_tuple(saver_config(t))
    assert got is not None
    assert got.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [1, 2]}
    assert sorted(got.pending_writes or []) == sorted(
        [(task, "messages", "w" * (1100 * KiB)), (task, "tiny", 1)]
    )

    cold = store.sink()  # restart: the next checkpoint is assembled from the stored large state
    config2, ckpt2, new2 = hand_checkpoint(t, "", {"small": [3]}, parent=ckpt, step=1)
    cold.apply(put_events(config2, ckpt2, {"step": 1}, new2))
    got2 = cold.saver().get_tuple(saver_config(t))
    assert got2 is not None and got2.checkpoint["id"] == ckpt2["id"]
    assert got2.checkpoint["channel_values"] == {"medium": [medium], "huge": huge, "small": [3]}
    assert got2.parent_config == saver_config(t, "", ckpt["id"])
    assert cold.missing_blobs == 0


@contract()
def blob_from_an_earlier_batch_and_after_restart(target: SinkTarget) -> None:
    t = "long-conversation"
    history = [HumanMessage(content="first")]
    c1_conf, c1, new1 = hand_checkpoint(t, "", {"history": history, "profile": {"name": "Zoë"}})
    c2_conf, c2, new2 = hand_checkpoint(t, "", {"count": 2}, parent=c1, step=1)
    c3_conf, c3, new3 = hand_checkpoint(t, "", {"count": 3}, parent=c2, step=2)

    store = target.new_store()
    sink = store.sink()
    sink.apply(put_events(c1_conf, c1, {"step": 0}, new1))
    sink.apply(put_events(c2_conf, c2, {"step": 1}, new2))  # blobs of the earlier batch
    sink.close()

    cold = store.sink()  # restart: state read from the store
    cold.apply(put_events(c3_conf, c3, {"step": 2}, new3))
    saver = cold.saver()
    for ckpt in (c1, c2, c3):
        got = saver.get_tuple(saver_config(t, "", ckpt["id"]))
        assert got is not None and got.checkpoint == ckpt
    assert c3["channel_values"]["history"] == history
    assert cold.missing_blobs == 0


@contract()
def writes_before_their_checkpoint(target: SinkTarget) -> None:
    """Postgres can commit a checkpoint's writes before the checkpoint: the thread exists, the
    saver shows nothing until the checkpoint arrives, then shows it with its writes."""
    conf, ckpt, new = hand_checkpoint("only-writes", "", {"a": [1]})
    sink = target.new_store().sink()
    sink.apply(writes_events(saver_config("only-writes", "", ckpt["id"]), [("a", [2])], "t1"))
    # A target read only through a saver's API (kind = "saver") knows threads by their checkpoints.
    listed_alone = getattr(target, "lists_threads_with_only_writes", True)
    assert list(sink.thread_ids()) == (["only-writes"] if listed_alone else [])
    assert sink.saver().get_tuple(saver_config("only-writes")) is None
    sink.apply(put_events(conf, ckpt, {"step": 0}, new))
    got = sink.saver().get_tuple(saver_config("only-writes"))
    assert got is not None and got.pending_writes == [("t1", "a", [2])]
    assert list(sink.thread_ids()) == ["only-writes"]


@contract()
def a_task_s_writes_cut_across_batches_before_their_checkpoint(target: SinkTarget) -> None:
    """Postgres, and LangGraph's async durability, can deliver a checkpoint's writes before it,
    and a batch can cut one task's writes anywhere: all of them are there, each at its idx,
    once the checkpoint arrives, across a restart of the sink in between."""
    t = "cut-writes"
    conf, ckpt, new = hand_checkpoint(t, "", {"a": [1]})
    values = [("a", [i]) for i in range(5)]
    events = writes_events(saver_config(t, "", ckpt["id"]), values, "task-1")
    store = target.new_store()
    first = store.sink()
    first.apply(events[:1])
    first.apply(events[1:3])
    second = store.sink()  # a restarted daemon: what waited for the checkpoint is not lost
    second.apply(events[3:])
    second.apply(put_events(conf, ckpt, {"step": 0}, new))
    got = second.saver().get_tuple(saver_config(t))
    assert got is not None and got.pending_writes == [("task-1", ch, v) for ch, v in values]


@contract()
def empty_channels_are_not_missing_blobs(target: SinkTarget) -> None:
    """Channels with a version but no value (consumed triggers, __start__) have no blob in PG."""
    recorder = Recorder()
    run_graph(recorder, "triggers")
    sink = target.new_store().sink()
    apply_all(sink, recorder.events, 3)
    assert sink.missing_blobs == 0
    assert assert_thread_equal(recorder, sink.saver(), "triggers") > 0


@contract()
def unchanged_toast_keeps_the_stored_part(target: SinkTarget) -> None:
    t = "toast"
    conf, ckpt, new = hand_checkpoint(t, "", {"doc": {"body": "x" * 5000}})
    events = put_events(conf, ckpt, {"step": 0, "v": "old"}, new)
    sink = target.new_store().sink()
    sink.apply(events)
    key = CheckpointKey(t, "", ckpt["id"])
    # UPDATE of metadata only: the checkpoint jsonb was not sent
    sink.apply(
        [CheckpointChange(Op.UPSERT, key, src(), metadata={"step": 0, "v": "new"}, unchanged=("checkpoint",))]
    )
    got = sink.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == ckpt and got.metadata == {"step": 0, "v": "new"}
    # and the other way round, within one batch after a fresh upsert
    skeleton = events[-1].checkpoint  # type: ignore[union-attr]
    sink.apply(
        [
            CheckpointChange(Op.UPSERT, key, src(), checkpoint=skeleton, metadata={"step": 0, "v": "3rd"}),
            CheckpointChange(Op.UPSERT, key, src(), checkpoint=skeleton, unchanged=("metadata",)),
        ]
    )
    got = sink.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint == ckpt and got.metadata == {"step": 0, "v": "3rd"}


def _holds_bytes(value: Any, data: bytes) -> bool:
    """Whether a dump value (a row, an item, an object) holds ``data`` as one of its parts."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value) == data
    if isinstance(value, Mapping):
        return any(_holds_bytes(v, data) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_bytes(v, data) for v in value)
    return False


@contract()
def blob_type_a_whole_form_cannot_splice(target: SinkTarget) -> None:
    """A whole-form target cannot splice a pickled value into its checkpoint without decoding it:
    the batch is refused as malformed and nothing of it is written. A split-form target stores
    the blob as the source did (its saver holds any serde type), bytes untouched."""
    t = "pickled"
    conf, ckpt, new = hand_checkpoint(t, "", {"obj": {"a": 1}})
    blob, checkpoint = put_events(conf, ckpt, {"step": 0}, new)
    assert isinstance(blob, BlobChange)
    pickled = BlobChange(Op.UPSERT, blob.key, src(), type="pickle", data=b"\x80\x04N.")
    store = target.new_store()
    sink = store.sink()
    if sink.form is Form.SPLIT:
        sink.apply([pickled, checkpoint])
        dump = store.dump()
        assert [k for k, v in dump.items() if _holds_bytes(v, b"\x80\x04N.") and t in k]
        assert list(sink.thread_ids()) == [t]
        return
    with pytest.raises(ReplicatorError) as err:
        sink.apply([pickled, checkpoint])
    assert err.value.kind is ErrorKind.MALFORMED_EVENT
    for part in (t, ckpt["id"], "obj", "pickle"):
        assert part in str(err.value)
    assert dict(store.dump()) == {}  # nothing of a refused batch was written


@contract(fixtures=("pg_dsn",), marks=(pytest.mark.integration,))
def equal_to_a_real_postgres_saver(target: SinkTarget, pg_dsn: str) -> None:
    """The whole point: rows a real PostgresSaver wrote, turned into events (as a snapshot would,
    blobs first), read back through the target's saver equal what PostgresSaver.get_tuple/list return."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    threads = [name_for(target, t) for t in ("pg-ünï 🚀", "pg#2")]
    with psycopg.connect(pg_dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        pg_saver = PostgresSaver(conn)
        pg_saver.setup()
        for t in threads:
            run_graph(pg_saver, t, first_message="Hallo " + "z" * (400 * KiB))
        events = postgres_rows_as_events(conn)

        sink = target.new_store().sink()
        apply_all(sink, events, 4)
        saver = sink.saver()
        compared = 0
        for t in threads:
            nss = {
                r["checkpoint_ns"]
                for r in conn.execute("SELECT checkpoint_ns FROM checkpoints WHERE thread_id = %s", (t,))
            }
            assert len(nss) >= 2
            for ns in sorted(nss):
                conf = saver_config(t, ns)
                want = list(pg_saver.list(conf))
                got = list(saver.list(conf))
                assert [x.config for x in got] == [x.config for x in want]
                for w, g in zip(want, got, strict=True):
                    assert_same_tuple(w, g, metadata=w.metadata)
                    compared += 1
                assert_same_tuple(pg_saver.get_tuple(conf), saver.get_tuple(conf), metadata=want[0].metadata)
        assert compared >= 12
        assert sorted(sink.thread_ids()) == sorted(threads)
        assert sink.missing_blobs == 0


# --------------------------------------------------------------------------- replay, order, splits


@contract()
def replaying_a_batch_or_a_suffix_changes_nothing(target: SinkTarget) -> None:
    recorder = Recorder()
    run_graph(recorder, "replayed")
    run_graph(recorder, "deleted-later")
    events = list(recorder.events)
    # deletes in the stream: a write, a checkpoint, a whole thread, then a new life for it
    first_write = next(e for e in events if isinstance(e, WriteChange) and e.key.thread_id == "replayed")
    first_ckpt = next(e for e in events if isinstance(e, CheckpointChange) and e.key.thread_id == "replayed")
    exact = exact_partial_deletes(target)
    if exact:  # (a target that cannot delete one checkpoint keeps it: see the deletes contract)
        events.append(WriteChange(Op.DELETE, first_write.key, src()))
        events.append(CheckpointChange(Op.DELETE, first_ckpt.key, src()))
    events.append(ThreadDeletion("deleted-later", src()))
    big_conf, big, big_new = hand_checkpoint("deleted-later", "", {"blob": ["x" * (400 * KiB)]})
    events += put_events(big_conf, big, {"step": 0}, big_new)

    store = target.new_store()
    sink = store.sink()
    sink.apply(events)
    once = store.dump()

    sink.apply(events)  # the same batch again
    assert store.dump() == once

    for start in (1, len(events) // 3, len(events) // 2, len(events) - 3):
        fresh = store.sink()  # a new owner replays from its offset
        apply_all(fresh, events[start:], 5)
        assert store.dump() == once, f"suffix from {start}"
        fresh.close()

    saver = sink.saver()
    first = saver.get_tuple(saver_config("replayed", "", first_ckpt.key.checkpoint_id))
    assert (first is None) if exact else (first is not None)
    assert [t.checkpoint["id"] for t in saver.list(saver_config("deleted-later"))] == [big["id"]]


def _interleave(streams: Sequence[Sequence[DataChange]], rng: random.Random) -> list[DataChange]:
    """One random merge of the streams that keeps each stream's own order."""
    cursors = [list(s) for s in streams]
    merged: list[DataChange] = []
    while any(cursors):
        merged.append(rng.choice([c for c in cursors if c]).pop(0))
    return merged


def _random_split(events: Sequence[DataChange], rng: random.Random, largest: int) -> list[list[DataChange]]:
    out: list[list[DataChange]] = []
    i = 0
    while i < len(events):
        n = rng.randint(1, largest)
        out.append(list(events[i : i + n]))
        i += n
    return out


@contract()
def any_split_and_interleaving_stores_the_same(target: SinkTarget) -> None:
    """The store's contents depend on each thread's events, not on how threads interleave (Kafka
    orders per thread only) nor on where batches begin and end: source transactions, random cuts,
    everything at once all dump the same."""
    recorder = TransactionRecorder()
    threads = ["split-a", "split-b-ünï"]
    for t in threads:
        run_graph(recorder, t)
    per_thread = [[e for e in recorder.events if thread_of(e) == t] for t in threads]
    rng = random.Random(10)

    reference = target.new_store()
    sink = reference.sink()
    sink.apply(recorder.events)
    for t in threads:
        assert assert_thread_equal(recorder, sink.saver(), t) > 0
    expected = reference.dump()
    assert expected

    layouts: dict[str, list[list[DataChange]]] = {
        "per source transaction": recorder.transactions,
        "interleaved, random cuts": _random_split(_interleave(per_thread, rng), rng, 9),
        "interleaved, cuts of 1 to 3 events": _random_split(_interleave(per_thread, rng), rng, 3),
    }
    for name, split in layouts.items():
        store = target.new_store()
        sink = store.sink()
        for batch in split:
            sink.apply(batch)
        assert store.dump() == expected, name  # so the saver reads it back the same
        sink.close()


@contract()
def many_threads_per_batch(target: SinkTarget) -> None:
    """Many threads' blob lookups (more than 100: several BatchGetItem requests on DynamoDB) and
    many thread deletions in one batch."""
    first: list[DataChange] = []
    second: list[DataChange] = []
    expected = {}
    names = [f"bulk-{n}." for n in range(30)]  # "bulk-1." is no part of "bulk-10."
    for n, t in enumerate(names):
        values = {f"ch{i}": {"thread": n, "channel": i} for i in range(5)}
        c1_conf, c1, new1 = hand_checkpoint(t, "", values)
        c2_conf, c2, new2 = hand_checkpoint(t, "", {"n": n}, parent=c1, step=1)
        first += put_events(c1_conf, c1, {"step": 0}, new1)
        second += put_events(c2_conf, c2, {"step": 1}, new2)
        expected[t] = c2
    store = target.new_store()
    store.sink().apply(first)

    cold = store.sink()
    cold.apply(second)
    saver = cold.saver()
    for t, ckpt in expected.items():
        got = saver.get_tuple(saver_config(t))
        assert got is not None and got.checkpoint == ckpt
    assert cold.missing_blobs == 0

    cold.apply([ThreadDeletion(t, src()) for t in names[:20]])
    assert sorted(cold.thread_ids()) == sorted(names[20:])
    dump = store.dump()
    assert not [k for k in dump if any(t in k for t in names[:20])]
    assert all(of_thread(dump, t) for t in names[20:])


# --------------------------------------------------------------------------- deletes


@contract()
def deletes(target: SinkTarget) -> None:
    """Per-row deletes of a write and a checkpoint, then a ThreadDeletion: nothing of the thread
    remains (large values included) and the other thread is untouched."""
    recorder = Recorder()
    run_graph(recorder, "victim")
    run_graph(recorder, "bystander")
    store = target.new_store()
    sink = store.sink()
    sink.apply(recorder.events)

    # an orphan write (its checkpoint never arrives), large enough to be stored apart
    orphan = "1f0000aa-0000-6000-8000-000000000000"
    sink.apply(
        writes_events(saver_config("victim", "", orphan), [("messages", "o" * (360 * KiB))], ORPHAN_TASK)
    )
    assert [k for k in of_thread(store.dump(), "victim") if orphan in k]
    bystander_before = of_thread(store.dump(), "bystander")
    saver = sink.saver()

    # delete one write
    latest = saver.get_tuple(saver_config("victim"))
    assert latest is not None
    with_writes = next(t for t in saver.list(saver_config("victim")) if t.pending_writes)
    conf = with_writes.config["configurable"]
    wt = next(
        e
        for e in recorder.events
        if isinstance(e, WriteChange)
        and e.key.thread_id == "victim"
        and e.key.checkpoint_id == conf["checkpoint_id"]
    )
    sink.apply([WriteChange(Op.DELETE, wt.key, src())])
    after = saver.get_tuple(with_writes.config)
    # A target written through a saver's API deletes whole threads only: it keeps the one write
    # and the one checkpoint (and says so in its log) until the thread goes.
    exact = exact_partial_deletes(target)
    assert after is not None
    assert len(after.pending_writes or []) == len(with_writes.pending_writes or []) - (1 if exact else 0)

    # delete one checkpoint
    latest_id = latest.config["configurable"]["checkpoint_id"]
    with structlog.testing.capture_logs() as logs:
        sink.apply([CheckpointChange(Op.DELETE, CheckpointKey("victim", "", latest_id), src())])
    if exact:
        assert saver.get_tuple(latest.config) is None
        newest = saver.get_tuple(saver_config("victim"))
        assert newest is not None and newest.config != latest.config
    else:
        assert saver.get_tuple(latest.config) is not None
        assert [e["thread_id"] for e in logs if e["log_level"] == "warning"] == ["victim"]

    # delete the thread: nothing of it remains, the other thread is untouched
    sink.apply([ThreadDeletion("victim", src())])
    assert left_of_thread(target, store.dump(), "victim") == {}
    assert saver.get_tuple(saver_config("victim")) is None
    assert list(saver.list(saver_config("victim"))) == []
    assert of_thread(store.dump(), "bystander") == bystander_before
    assert list(sink.thread_ids()) == ["bystander"]
    assert assert_thread_equal(recorder, saver, "bystander") > 0


@contract({"batch_size": 1}, {"batch_size": 10_000})
def thread_deleted_through_per_row_deletes_leaves_nothing(target: SinkTarget, batch_size: int) -> None:
    """PostgresSaver.delete_thread deletes every checkpoint, blob and write row of the thread; the
    log carries those row DELETEs, not a ThreadDeletion. Afterwards the store holds nothing of the
    thread, including what the replicator keeps for itself (indexes, offloaded values), and the
    other thread's items are exactly as they were."""
    recorder = Recorder()
    run_graph(recorder, "rowdel-victim")
    run_graph(recorder, "rowdel-keeper-ünï")
    orphan_conf = saver_config("rowdel-victim", "", "1f0000aa-0000-6000-8000-000000000000")
    events = recorder.events + writes_events(orphan_conf, [("messages", "o" * (360 * KiB))], ORPHAN_TASK)
    store = target.new_store()
    sink = store.sink()
    apply_all(sink, events, batch_size)
    before = store.dump()
    assert of_thread(before, "rowdel-victim")

    deletes = delete_thread_events(events, "rowdel-victim")
    assert {type(e) for e in deletes} == {CheckpointChange, BlobChange, WriteChange}
    apply_all(sink, deletes, batch_size)
    after = store.dump()
    assert sorted(left_of_thread(target, after, "rowdel-victim")) == []
    assert without_thread(after, "rowdel-victim") == without_thread(before, "rowdel-victim")
    assert list(sink.thread_ids()) == ["rowdel-keeper-ünï"]
    assert sink.saver().get_tuple(saver_config("rowdel-victim")) is None
    assert assert_thread_equal(recorder, sink.saver(), "rowdel-keeper-ünï") > 0

    # the last thread goes the same way: the store is empty again
    apply_all(sink, delete_thread_events(events, "rowdel-keeper-ünï"), batch_size)
    assert sorted(left_of_thread(target, store.dump(), "rowdel-")) == []
    assert list(sink.thread_ids()) == []


@contract()
def thread_deleted_and_recreated_within_one_batch(target: SinkTarget) -> None:
    t = "phoenix"
    c1_conf, c1, new1 = hand_checkpoint(t, "", {"state": {"life": 1}})
    store = target.new_store()
    sink = store.sink()
    sink.apply(put_events(c1_conf, c1, {"step": 0}, new1))

    c2_conf, c2, new2 = hand_checkpoint(t, "", {"state": {"life": 2}})
    # same (channel, version) as the first life: the deletion must not let the old blob through
    c3_conf, c3, _ = hand_checkpoint(t, "", {}, parent=c2, step=1)
    batch: list[DataChange] = [
        *put_events(c1_conf, c1, {"step": 0}, new1),
        ThreadDeletion(t, src()),
        *put_events(c2_conf, c2, {"step": 0}, new2),
        *put_events(c3_conf, c3, {"step": 1}, {}),
    ]
    sink.apply(batch)
    saver = sink.saver()
    assert [x.checkpoint["id"] for x in saver.list(saver_config(t))] == [c3["id"], c2["id"]]
    got = saver.get_tuple(saver_config(t))
    assert got is not None and got.checkpoint["channel_values"] == {"state": {"life": 2}}

    # deleted at the end of a batch: gone, including what the batch itself wrote before
    sink.apply([*put_events(c1_conf, c1, {"step": 0}, new1), ThreadDeletion(t, src())])
    assert dict(store.dump()) == {}


@contract()
def missing_blob_after_the_thread_was_deleted(target: SinkTarget) -> None:
    t = "gone"
    conf, ckpt, new = hand_checkpoint(t, "", {"memo": {"a": 1}, "n": 5})
    events = put_events(conf, ckpt, {"step": 0}, new)
    blob, checkpoint = events
    store = target.new_store()
    sink = store.sink()
    sink.apply([blob])
    sink.apply([checkpoint, ThreadDeletion(t, src())])
    assert dict(store.dump()) == {}

    # replay from the checkpoint on: its blob is gone, the checkpoint is written without it. A
    # whole-form sink assembles it, finds the blob missing, counts and warns; a split-form sink
    # stores the checkpoint's references as they are and its saver finds no blob behind them.
    replay = store.sink()
    with structlog.testing.capture_logs() as logs:
        replay.apply([checkpoint])
    warnings = [e for e in logs if e["log_level"] == "warning"]
    if replay.form is Form.WHOLE:
        assert replay.missing_blobs == 1
        assert len(warnings) == 1 and warnings[0]["thread_id"] == t and "memo" in warnings[0]["channels"]
    else:
        assert replay.missing_blobs == 0 and warnings == []
    got = replay.saver().get_tuple(saver_config(t))
    assert got is not None and got.checkpoint["channel_values"] == {"n": 5}
    replay.apply([ThreadDeletion(t, src())])
    assert dict(store.dump()) == {}


# Dump keys of what only the replicator reads in a target's own store (DynamoDB items and their S3
# offloads, the SQLite target's blob table). Targets keeping their blob state in the state store
# (the generic saver target, Cosmos DB) hold none in the target.
OWN_STATE_MARKERS = ("LGREPL#", "_replicator/", "lgrepl_blobs ")


def _own_state(dump: Dump) -> set[str]:
    return {k for k in dump if any(marker in k for marker in OWN_STATE_MARKERS)}


@contract()
def dropping_the_replicator_s_state_keeps_what_the_saver_reads(target: SinkTarget) -> None:
    """After the migration (``finish --drop``) a target keeps exactly what its saver reads: the
    replicator's own entries go, nothing else changes, and a fresh sink's saver reads the same."""
    recorder = Recorder()
    threads = [name_for(target, t) for t in ("kept-ünï", "kept-2")]
    for t in threads:
        run_graph(recorder, t)
    big = "offloaded-🐘"  # a blob over the S3 offload threshold (DynamoDB's blob state in S3)
    config, ckpt, new = hand_checkpoint(
        big, "", {"large": [b"z" * int(400 * KiB * getattr(target, "value_scale", 1.0))]}
    )
    store = target.new_store()
    sink = store.sink()
    sink.check()
    apply_all(sink, [*recorder.events, *put_events(config, ckpt, {"step": 0}, new)], 50)
    before = dict(store.dump())
    expected = {k: v for k, v in before.items() if k not in _own_state(before)}
    if getattr(target, "own_state_in_target", False):
        assert _own_state(before), "the target holds blob state of its own before the drop"

    dropped = sink.drop_own_state()
    sink.close()
    assert all(isinstance(line, str) and line for line in dropped)
    after = dict(store.dump())
    assert after == expected
    fresh = store.sink()
    saver = fresh.saver()
    for t in threads:
        assert assert_thread_equal(recorder, saver, t) >= 6
    got = saver.get_tuple(saver_config(big))
    assert got is not None and got.checkpoint["channel_values"] == ckpt["channel_values"]
    again = fresh.drop_own_state()  # a drop run again (after a failure) finds nothing left
    assert all(line.startswith("0 ") for line in again), again
    assert dict(store.dump()) == expected
    fresh.close()
