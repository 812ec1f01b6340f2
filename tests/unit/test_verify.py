"""verify() against real InMemorySavers filled by a real LangGraph run.

The run is written into both stores at once by a tee checkpointer (every put/put_writes the
graph makes goes to both), so the two stores are identical down to checkpoint ids and task ids;
each test then changes the target through the saver's own put/put_writes (or, where the saver
has no public way to remove one write, its storage dict) and checks the exact report.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from replicator.verify import Difference, VerifyReport, verify

UNICODE = "héllo wörld ✓ 日本語 🚀"
BLOB = b"\x00\xff\xfe binary \x80"


@dataclass
class View:
    """SaverView over an InMemorySaver (threads come from its ``storage``/``writes`` dicts)."""

    store: InMemorySaver

    def saver(self) -> InMemorySaver:
        return self.store

    def thread_ids(self) -> Iterable[str]:
        # get_tuple on a defaultdict-backed saver can leave empty entries behind: skip them.
        with_checkpoints = {t for t, nss in self.store.storage.items() if any(nss.values())}
        return sorted(with_checkpoints | {t for (t, _, _), w in self.store.writes.items() if w})


class TeeSaver(InMemorySaver):
    """Stores like InMemorySaver and repeats every put/put_writes into ``mirror``."""

    def __init__(self, mirror: InMemorySaver) -> None:
        super().__init__()
        self.mirror = mirror

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self.mirror.put(config, checkpoint, metadata, new_versions)
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self.mirror.put_writes(config, writes, task_id, task_path)
        super().put_writes(config, writes, task_id, task_path)


class SubState(TypedDict):
    text: str
    data: bytes


class State(TypedDict):
    text: str
    data: bytes
    log: Annotated[list[str], operator.add]


def ask(state: SubState) -> dict[str, Any]:
    answer = interrupt(f"continue {state['text']}?")
    return {"text": f"{state['text']} / {answer}", "data": state["data"] + BLOB}


def side(state: State) -> dict[str, Any]:
    return {"log": [f"side saw {state['text']}"]}


def build_graph(checkpointer: InMemorySaver) -> Any:
    sub = StateGraph(SubState)
    sub.add_node("ask", ask)
    sub.add_edge(START, "ask")
    sub.add_edge("ask", END)
    graph = StateGraph(State)
    graph.add_node("sub", sub.compile())  # runs under checkpoint_ns "sub:<task id>"
    graph.add_node("side", side)  # parallel: its writes stay pending while "sub" is interrupted
    graph.add_edge(START, "sub")
    graph.add_edge(START, "side")
    graph.add_edge("sub", END)
    graph.add_edge("side", END)
    return graph.compile(checkpointer=checkpointer)


def cfg(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


@pytest.fixture
def stores() -> tuple[InMemorySaver, InMemorySaver]:
    """(source, target) holding the same run: t1 interrupted then resumed, t2 left interrupted."""
    target = InMemorySaver()
    source = TeeSaver(target)
    graph = build_graph(source)
    start = {"text": UNICODE, "data": BLOB, "log": []}
    first = graph.invoke(start, cfg("t1"))
    assert "__interrupt__" in first
    done = graph.invoke(Command(resume="sí ✓"), cfg("t1"))
    assert done["text"] == f"{UNICODE} / sí ✓" and done["data"] == BLOB + BLOB
    assert "__interrupt__" in graph.invoke(start, cfg("t2"))
    return source, target


def run(source: InMemorySaver, target: InMemorySaver, **kwargs: Any) -> VerifyReport:
    return verify(View(source), View(target), **kwargs)


def subgraph_ns(saver: InMemorySaver, thread_id: str) -> str:
    (ns,) = [ns for ns in saver.storage[thread_id] if ns]
    return ns


def newest(saver: InMemorySaver, thread_id: str, ns: str = "") -> CheckpointTuple:
    tup = saver.get_tuple(cfg(thread_id, ns))
    assert tup is not None
    return tup


def cid(tup: CheckpointTuple) -> str:
    return str(tup.config["configurable"]["checkpoint_id"])


def reput(
    saver: InMemorySaver,
    tup: CheckpointTuple,
    *,
    thread_id: str | None = None,
    checkpoint: Checkpoint | None = None,
    metadata: CheckpointMetadata | None = None,
    parent: str | None = None,
    new_versions: ChannelVersions | None = None,
) -> None:
    """Put ``tup`` again (same checkpoint id) with some parts replaced."""
    conf = tup.config["configurable"]
    parent_id = (
        parent
        if parent is not None
        else (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    )
    saver.put(
        cfg(thread_id or conf["thread_id"], conf["checkpoint_ns"], parent_id),
        checkpoint if checkpoint is not None else tup.checkpoint,
        metadata if metadata is not None else tup.metadata,
        new_versions or {},
    )


def only(report: VerifyReport) -> Difference:
    assert len(report.differences) == 1, [str(d) for d in report.differences]
    return report.differences[0]


def test_identical_run_is_ok_with_counts(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    ns = subgraph_ns(source, "t1")
    assert ns.startswith("sub:")
    # the run holds what the comparison must cope with: pending writes (incl. the interrupt),
    # unicode and bytes values, in both namespaces
    pending = newest(source, "t2").pending_writes or []
    assert {"__interrupt__", "log"} <= {channel for _, channel, _ in pending}
    assert newest(source, "t1").checkpoint["channel_values"]["data"] == BLOB + BLOB
    assert UNICODE in newest(source, "t1", ns).checkpoint["channel_values"]["text"]

    report = run(source, target)

    assert report.ok, [str(d) for d in report.differences]
    assert report.differences == [] and not report.truncated
    assert report.threads == 2
    assert report.checkpoints == sum(len(cps) for nss in source.storage.values() for cps in nss.values())
    assert report.writes == sum(len(w) for w in source.writes.values())
    assert report.checkpoints > 6 and report.writes > 3


def test_missing_thread(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    target.delete_thread("t2")
    d = only(run(source, target))
    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field) == ("t2", None, None, "thread")
    assert d.source.startswith("present") and d.target == "<missing>"


def test_extra_thread(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    tup = newest(target, "t1")
    reput(target, tup, thread_id="extra", new_versions=tup.checkpoint["channel_versions"])
    report = run(source, target)
    d = only(report)
    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field) == ("extra", None, None, "thread")
    assert d.source == "<missing>" and d.target.startswith("present")
    assert report.threads == 3


def test_changed_channel_value(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    tup = newest(target, "t1")
    version = target.get_next_version(str(tup.checkpoint["channel_versions"]["text"]), None)
    checkpoint: Checkpoint = {
        **tup.checkpoint,
        "channel_values": {**tup.checkpoint["channel_values"], "text": "changed"},
        "channel_versions": {**tup.checkpoint["channel_versions"], "text": version},
    }
    reput(target, tup, checkpoint=checkpoint, new_versions={"text": version})

    report = run(source, target)

    by_field = {d.field: d for d in report.differences}
    assert set(by_field) == {"checkpoint.channel_values.text", "checkpoint.channel_versions.text"}
    assert all(
        (d.thread_id, d.checkpoint_ns, d.checkpoint_id) == ("t1", "", cid(tup)) for d in by_field.values()
    )
    assert by_field["checkpoint.channel_values.text"].source == repr(f"{UNICODE} / sí ✓")
    assert by_field["checkpoint.channel_values.text"].target == "'changed'"


def test_missing_pending_write(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    tup = newest(target, "t2")
    writes = target.writes[("t2", "", cid(tup))]
    key = next(k for k, w in writes.items() if w[1] == "log")
    del writes[key]  # InMemorySaver has no public way to drop one write

    d = only(run(source, target))

    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field) == ("t2", "", cid(tup), "pending_writes")
    assert d.source == repr((key[0], "log", [f"side saw {UNICODE}"]))
    assert d.target == "<missing>"


def test_changed_pending_write_value_is_paired(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    ns = subgraph_ns(target, "t2")
    tup = newest(target, "t2", ns)
    writes = target.writes[("t2", ns, cid(tup))]
    ((key, (task_id, channel, _, path)),) = [(k, w) for k, w in writes.items() if w[1] == "__interrupt__"]
    writes[key] = (task_id, channel, target.serde.dumps_typed("not an interrupt"), path)

    d = only(run(source, target))

    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field) == ("t2", ns, cid(tup), "pending_writes")
    assert "Interrupt" in d.source and d.target == repr((task_id, "__interrupt__", "not an interrupt"))


def test_different_metadata(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    ns = subgraph_ns(target, "t1")
    tup = newest(target, "t1", ns)
    reput(target, tup, metadata={**tup.metadata, "step": 99})

    d = only(run(source, target))

    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field) == ("t1", ns, cid(tup), "metadata.step")
    assert d.source == repr(tup.metadata["step"]) and d.target == "99"


def test_different_parent(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    history = list(target.list(cfg("t1")))
    root = [t for t in history if t.config["configurable"]["checkpoint_ns"] == ""]
    tup, oldest = root[0], root[-1]
    assert tup.parent_config is not None and cid(oldest) != tup.parent_config["configurable"]["checkpoint_id"]
    reput(target, tup, parent=cid(oldest))

    d = only(run(source, target))

    assert (d.thread_id, d.checkpoint_ns, d.checkpoint_id) == ("t1", "", cid(tup))
    assert d.field == "parent_checkpoint_id"
    assert d.source == repr(tup.parent_config["configurable"]["checkpoint_id"])
    assert d.target == repr(cid(oldest))


def test_missing_and_extra_checkpoint(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    ns = subgraph_ns(target, "t2")
    lost = newest(target, "t2", ns)
    del target.storage["t2"][ns][cid(lost)]  # no public per-checkpoint delete
    previous = newest(target, "t2", ns)
    head = newest(target, "t1")
    extra_id = "ffffffff-ffff-6fff-8fff-ffffffffffff"  # sorts after every real uuid6: newest
    target.put(cfg("t1", "", cid(head)), {**head.checkpoint, "id": extra_id}, head.metadata, {})

    report = run(source, target)

    assert [
        (d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.field, d.source, d.target)
        for d in report.differences
    ] == [
        ("t1", "", extra_id, "checkpoint", "<missing>", "present"),
        ("t1", "", None, "latest", repr(cid(head)), repr(extra_id)),
        ("t2", ns, cid(lost), "checkpoint", "present", "<missing>"),
        ("t2", ns, None, "latest", repr(cid(lost)), repr(cid(previous))),
    ]


def test_task_order_does_not_matter() -> None:
    """PostgresSaver sorts writes by task_path, DynamoDBSaver by task_id: same writes, other order."""
    source, target = InMemorySaver(), InMemorySaver()
    checkpoint: Checkpoint = {
        "v": 4,
        "id": "1f0c0000-0000-6000-8000-000000000001",
        "ts": "2026-11-25T00:00:00+00:00",
        "channel_values": {"x": 1},
        "channel_versions": {"x": "00000000000000000000000000000001.0000000000000000"},
        "versions_seen": {},
        "updated_channels": ["x"],
    }
    tasks = [("zz-task", "~__pregel_pull, a"), ("aa-task", "~__pregel_pull, b")]
    for saver, with_path in ((source, True), (target, False)):
        config = saver.put(cfg("t"), checkpoint, {"step": 0}, checkpoint["channel_versions"])
        for task_id, path in tasks:
            saver.put_writes(
                config, [("x", task_id), ("y", {"k": [1.5, b"b"]})], task_id, path if with_path else ""
            )
    src_writes, tgt_writes = newest(source, "t").pending_writes, newest(target, "t").pending_writes
    assert src_writes and tgt_writes and src_writes != tgt_writes
    assert sorted(map(repr, src_writes)) == sorted(map(repr, tgt_writes))

    report = run(source, target)

    assert report.ok, [str(d) for d in report.differences]
    assert (report.threads, report.checkpoints, report.writes) == (1, 1, 4)


def test_nan_equals_nan_and_missing_updated_channels_is_none() -> None:
    source, target = InMemorySaver(), InMemorySaver()
    base: dict[str, Any] = {
        "v": 4,
        "id": "1f0c0000-0000-6000-8000-000000000001",
        "ts": "2026-11-25T00:00:00+00:00",
        "channel_values": {"x": {"f": math.nan}},
        "channel_versions": {"x": 1},
        "versions_seen": {},
    }
    source.put(cfg("t"), {**base, "updated_channels": None}, {}, {"x": 1})  # type: ignore[typeddict-item]
    target.put(cfg("t"), base, {}, {"x": 1})  # type: ignore[arg-type]
    assert "updated_channels" not in newest(target, "t").checkpoint
    assert run(source, target).ok


def test_max_differences_stops_early(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    for thread_id in ("t1", "t2"):
        for ns in list(target.storage[thread_id]):
            for tup in list(target.list(cfg(thread_id, ns))):
                reput(target, tup, metadata={**tup.metadata, "step": 999})
    report = run(source, target, max_differences=3)
    assert len(report.differences) == 3 and report.truncated and not report.ok
    assert {d.field for d in report.differences} == {"metadata.step"}
    assert report.checkpoints == 3


def test_thread_ids_argument_limits_the_scan(stores: tuple[InMemorySaver, InMemorySaver]) -> None:
    source, target = stores
    target.delete_thread("t2")
    assert run(source, target, thread_ids=["t1", "t1"]).ok
    assert run(source, target, thread_ids=["t1"]).threads == 1
    assert only(run(source, target, thread_ids=["t2"])).field == "thread"


def test_difference_str_is_one_line() -> None:
    d = Difference("t1", "sub:abc", "1f0-id", "metadata.step", "1", "99")
    assert str(d) == "thread 't1' ns 'sub:abc' checkpoint 1f0-id: metadata.step: source=1 target=99"
    assert str(Difference("t9", None, None, "thread", "present", "<missing>")) == (
        "thread 't9': thread: source=present target=<missing>"
    )


@pytest.mark.parametrize("page", [1, 2])
def test_small_pages_give_the_same_report(
    stores: tuple[InMemorySaver, InMemorySaver], monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """Namespaces longer than one list() page are merged across pages without gaps or repeats."""
    monkeypatch.setattr("replicator.verify._PAGE", page)
    test_identical_run_is_ok_with_counts(stores)
    test_missing_and_extra_checkpoint(stores)


def test_verify_changed_reads_only_the_history_after_since(
    stores: tuple[InMemorySaver, InMemorySaver],
) -> None:
    from replicator.verify import verify_changed

    source, target = stores
    history = list(target.list(cfg("t1", "")))
    oldest, middle, latest = history[-1], history[len(history) // 2], history[0]
    assert cid(oldest) < cid(middle) < cid(latest)
    # A difference in a checkpoint older than `since` is not read; one newer than it is.
    reput(target, oldest, metadata={**oldest.metadata, "step": 98})
    reput(target, latest, metadata={**latest.metadata, "step": 99})
    report = verify_changed(source, target, [("t1", "")], cid(middle))
    d = only(report)
    assert (d.checkpoint_id, d.field, d.target) == (cid(latest), "metadata.step", "99")
    assert report.checkpoints == sum(1 for tup in history if cid(tup) > cid(middle))
    # The whole verify sees both.
    assert {d.checkpoint_id for d in run(source, target).differences} == {cid(oldest), cid(latest)}


class Unreadable(InMemorySaver):
    """A target whose saver cannot read one thread (an unknown serde type, a corrupt payload)."""

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Any:
        if config and config["configurable"]["thread_id"] == "t1":
            raise ValueError("unknown serde type 'pickle+x'")
        return super().list(config, **kwargs)


def test_a_thread_the_target_cannot_read_is_a_difference_and_the_others_are_still_read(
    stores: tuple[InMemorySaver, InMemorySaver],
) -> None:
    from replicator.verify import verify_changed

    source, target = stores
    broken = Unreadable()
    broken.storage, broken.writes, broken.blobs = target.storage, target.writes, target.blobs
    report = verify(View(source), View(broken))
    d = only(report)
    assert (d.thread_id, d.checkpoint_ns, d.field) == ("t1", None, "read")
    assert "ValueError: unknown serde type 'pickle+x'" in d.source
    assert report.threads == 2 and report.checkpoints > 0  # t2 was read and compared

    changed = verify_changed(source, broken, [("t1", ""), ("t2", "")], "0")
    d = only(changed)
    assert (d.thread_id, d.checkpoint_ns, d.field) == ("t1", "", "read")
    assert changed.threads == 2
