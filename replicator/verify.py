"""Compare two stores the way LangGraph sees them, and list every difference.

Both stores are read only through their own official savers' public methods (``list`` and
``get_tuple``), never through their tables: two stores can hold different bytes (PG splits values
into inline JSON and shared blobs, DynamoDB keeps one serialized payload) and still be the same to
a graph, and a store can hold the right bytes and still read back wrong. What matters for a
migration is what the target's saver returns, so that is what is compared.

Reading is streaming: one thread at a time, and within a (thread, namespace) both sides are paged
with ``list(limit=..., before=...)``. Each page is read to the end before the other side is asked:
PostgresSaver.list fetches all rows and holds its non-reentrant lock until the generator is done,
so two open generators on one saver would deadlock, and an unpaged list would hold a whole history.
The one unpaged read is namespace discovery (``list()`` of the thread without checkpoint_ns): no
public call lists namespaces, and ``before`` cannot page across namespaces because savers order
them differently, so PostgresSaver holds one thread's rows in memory for that scan.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, PendingWrite

    from connectors.base import SaverView

# Checkpoints per list() call and side: bounds memory, not correctness. Not smaller: DynamoDBSaver
# applies `before` as a FilterExpression, so each page re-reads the namespace's index items above it.
_PAGE = 64
_KEEP = 256  # a thread of at most this many checkpoints is read once, not twice (``_scan``)
_REPR_MAX = 200


class _Note:
    """Text shown as is in a report; equal to nothing but itself, so it can mark an absent key."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


MISSING = _Note("<missing>")
PRESENT = _Note("present")

# Checkpoint keys that are mappings keyed by channel (or node): compared entry by entry so a report
# names the channel that differs instead of dumping two whole dicts.
_PER_ENTRY_KEYS = ("channel_values", "channel_versions", "versions_seen")


@dataclass(frozen=True)
class Difference:
    """One way the target differs from the source; ``source``/``target`` are short reprs."""

    thread_id: str
    checkpoint_ns: str | None
    checkpoint_id: str | None
    field: str
    source: str
    target: str

    def __str__(self) -> str:
        where = f"thread {self.thread_id!r}"
        if self.checkpoint_ns is not None:
            where += f" ns {self.checkpoint_ns!r}"
        if self.checkpoint_id is not None:
            where += f" checkpoint {self.checkpoint_id}"
        return f"{where}: {self.field}: source={self.source} target={self.target}"


@dataclass
class VerifyReport:
    """Counts are of what was read from the source; ``truncated`` means the scan stopped early
    because ``max_differences`` was reached, so the counts cover only part of the stores."""

    threads: int = 0
    checkpoints: int = 0
    writes: int = 0
    differences: list[Difference] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.differences


class _Enough(Exception):
    """Raised once max_differences are collected: nothing more will be reported, so stop reading."""


class _Collector:
    def __init__(self, report: VerifyReport, limit: int) -> None:
        self.report = report
        self.limit = limit

    def add(self, thread_id: str, ns: str | None, cid: str | None, what: str, src: Any, tgt: Any) -> None:
        self.report.differences.append(Difference(thread_id, ns, cid, what, _short(src), _short(tgt)))
        if len(self.report.differences) >= self.limit:
            raise _Enough


def verify(
    source: SaverView,
    target: SaverView,
    *,
    thread_ids: Iterable[str] | None = None,
    max_differences: int = 100,
) -> VerifyReport:
    """Compare ``target`` with ``source`` through both stores' official savers.

    For every thread (``thread_ids``, or the union of both sides' ``thread_ids()``) and every
    namespace either side has for it, the two ``list()`` results must hold the same checkpoint
    ids newest first, and each checkpoint must have an equal (``==``) checkpoint dict (every key;
    only a missing ``updated_channels`` counts as None, since older savers and formats omit it),
    metadata, parent checkpoint id and pending writes; ``get_tuple`` must pick the same latest
    checkpoint. A thread with checkpoints on one side only is one ``"thread"`` difference.

    Pending writes are compared as multisets of ``(task_id, channel, value)``, not as lists:
    savers order them differently by design (PostgresSaver and InMemorySaver sort by
    ``(task_path, task_id, idx)``; DynamoDBSaver returns its sort-key order, a string sort of
    ``f"{task_id}#{idx}"``), and ``task_path`` itself is not part of what ``list()`` returns, so
    it cannot be compared here.

    Reading stops once ``max_differences`` are collected (``truncated`` is then set): a
    systematic fault would otherwise repeat for every checkpoint of a large store.
    """
    if max_differences < 1:
        raise ValueError("max_differences must be at least 1")
    report = VerifyReport()
    out = _Collector(report, max_differences)
    src, tgt = source.saver(), target.saver()
    units = ((thread_id, None) for thread_id in _threads(source, target, thread_ids))
    return _each(units, lambda thread_id, _: _verify_thread(src, tgt, thread_id, report, out), out)


def _each(
    units: Iterable[tuple[str, str | None]], check: Callable[[str, str | None], None], out: _Collector
) -> VerifyReport:
    """``check`` every (thread, namespace or None) unit, counting threads, until ``out`` has
    enough differences (the report is then ``truncated``)."""
    report = out.report
    try:
        for thread_id, ns in units:
            report.threads += 1
            try:
                check(thread_id, ns)
            except _Enough:
                raise
            except Exception as exc:
                # A saver that cannot read a thread (unknown serde type, corrupt payload) is a
                # difference to report for that thread, not a reason to stop verifying.
                out.add(thread_id, ns, None, "read", _Note(f"{type(exc).__name__}: {exc}"), _Note("-"))
    except _Enough:
        report.truncated = True
    return report


def _threads(source: SaverView, target: SaverView, thread_ids: Iterable[str] | None) -> Iterator[str]:
    """Thread ids to check, each once; sorted when discovered so reports are reproducible."""
    if thread_ids is None:
        yield from sorted(set(source.thread_ids()) | set(target.thread_ids()))
        return
    seen: set[str] = set()
    for thread_id in thread_ids:
        if thread_id not in seen:
            seen.add(thread_id)
            yield thread_id


def _scan(
    saver: BaseCheckpointSaver[str], thread_id: str
) -> tuple[dict[str, list[CheckpointTuple]] | None, set[str], int, int]:
    """A thread's namespaces (``list()`` without checkpoint_ns returns every namespace), with its
    checkpoint and pending-write counts for when the other side does not have the thread. A
    thread of at most ``_KEEP`` checkpoints is kept, by namespace in listed order, so that it is
    compared without a second read (on DynamoDB each listed checkpoint costs a query of its
    writes); a longer one is compared page by page, in bounded memory."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    namespaces: set[str] = set()
    kept: dict[str, list[CheckpointTuple]] | None = {}
    checkpoints = writes = 0
    for tup in saver.list(config):
        ns = tup.config["configurable"].get("checkpoint_ns", "")
        namespaces.add(ns)
        checkpoints += 1
        writes += len(tup.pending_writes or ())
        if kept is not None:
            kept.setdefault(ns, []).append(tup)
            if checkpoints > _KEEP:
                kept = None
    return kept, namespaces, checkpoints, writes


def _verify_thread(
    src: BaseCheckpointSaver[str],
    tgt: BaseCheckpointSaver[str],
    thread_id: str,
    report: VerifyReport,
    out: _Collector,
) -> None:
    src_kept, src_ns, src_checkpoints, src_writes = _scan(src, thread_id)
    tgt_kept, tgt_ns, _, _ = _scan(tgt, thread_id)
    if bool(src_ns) != bool(tgt_ns):
        report.checkpoints += src_checkpoints  # counts say what the source holds, whatever the target
        report.writes += src_writes
        out.add(thread_id, None, None, "thread", _presence(src_ns), _presence(tgt_ns))
        return
    for ns in sorted(src_ns | tgt_ns):
        listed = None
        if src_kept is not None and tgt_kept is not None:
            listed = (iter(src_kept.get(ns, [])), iter(tgt_kept.get(ns, [])))
        _verify_namespace(src, tgt, thread_id, ns, report, out, listed=listed)


def _presence(namespaces: set[str]) -> _Note:
    return _Note(f"present ({len(namespaces)} namespaces)") if namespaces else MISSING


def _pages(saver: BaseCheckpointSaver[str], thread_id: str, ns: str) -> Iterator[CheckpointTuple]:
    """All checkpoints of (thread, ns), newest first, one fully read ``list()`` page at a time."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
    before: RunnableConfig | None = None
    while True:
        page = list(saver.list(config, before=before, limit=_PAGE))
        if not page:
            return
        yield from page
        last = _cid(page[-1])
        if before is not None and last == before["configurable"]["checkpoint_id"]:
            return  # the saver ignored `before`: stop rather than loop forever
        before = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": last}}
        if len(page) < _PAGE:
            return


def _cid(tup: CheckpointTuple) -> str:
    return str(tup.config["configurable"]["checkpoint_id"])


def _verify_namespace(
    src: BaseCheckpointSaver[str],
    tgt: BaseCheckpointSaver[str],
    thread_id: str,
    ns: str,
    report: VerifyReport,
    out: _Collector,
    since: str | None = None,
    listed: tuple[Iterator[CheckpointTuple], Iterator[CheckpointTuple]] | None = None,
) -> None:
    """Merge-join both sides' newest-first lists on checkpoint id (ids are uuid6: they sort by
    time); with ``since``, only the checkpoints newer than it. ``listed``: both sides already
    read (``_scan``)."""
    src_it, tgt_it = listed or (_pages(src, thread_id, ns), _pages(tgt, thread_id, ns))
    if since is not None:
        src_it = itertools.takewhile(lambda tup: _cid(tup) > since, src_it)
        tgt_it = itertools.takewhile(lambda tup: _cid(tup) > since, tgt_it)
    s, t = next(src_it, None), next(tgt_it, None)
    prev_s: str | None = None
    prev_t: str | None = None
    while s is not None or t is not None:
        sid = _cid(s) if s is not None else None
        tid = _cid(t) if t is not None else None
        if sid is not None and prev_s is not None and sid >= prev_s:
            out.add(thread_id, ns, sid, "order", _Note(f"{sid} listed after {prev_s}"), _Note(""))
        if tid is not None and prev_t is not None and tid >= prev_t:
            out.add(thread_id, ns, tid, "order", _Note(""), _Note(f"{tid} listed after {prev_t}"))
        if s is not None and t is not None and sid == tid:
            _count(report, s)
            _compare_tuple(thread_id, ns, s, t, out)
            prev_s, prev_t = sid, tid
            s, t = next(src_it, None), next(tgt_it, None)
        elif s is not None and (tid is None or (sid is not None and sid > tid)):
            _count(report, s)
            out.add(thread_id, ns, sid, "checkpoint", PRESENT, MISSING)
            prev_s = sid
            s = next(src_it, None)
        else:
            out.add(thread_id, ns, tid, "checkpoint", MISSING, PRESENT)
            prev_t = tid
            t = next(tgt_it, None)

    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
    src_latest, tgt_latest = src.get_tuple(config), tgt.get_tuple(config)
    src_id = _cid(src_latest) if src_latest else None
    tgt_id = _cid(tgt_latest) if tgt_latest else None
    if src_id != tgt_id:
        out.add(thread_id, ns, None, "latest", src_id or MISSING, tgt_id or MISSING)


def _count(report: VerifyReport, tup: CheckpointTuple) -> None:
    report.checkpoints += 1
    report.writes += len(tup.pending_writes or ())


def _compare_tuple(thread_id: str, ns: str, s: CheckpointTuple, t: CheckpointTuple, out: _Collector) -> None:
    cid = _cid(s)

    def diff(what: str, a: Any, b: Any) -> None:
        out.add(thread_id, ns, cid, what, a, b)

    src_cp: dict[str, Any] = dict(s.checkpoint)
    tgt_cp: dict[str, Any] = dict(t.checkpoint)
    src_cp.setdefault("updated_channels", None)
    tgt_cp.setdefault("updated_channels", None)
    for key in _keys(src_cp, tgt_cp):
        a, b = src_cp.get(key, MISSING), tgt_cp.get(key, MISSING)
        if key in _PER_ENTRY_KEYS and isinstance(a, Mapping) and isinstance(b, Mapping):
            for sub in _keys(a, b):
                if not _same(a.get(sub, MISSING), b.get(sub, MISSING)):
                    diff(f"checkpoint.{key}.{sub}", a.get(sub, MISSING), b.get(sub, MISSING))
        elif not _same(a, b):
            diff(f"checkpoint.{key}", a, b)

    src_md: Mapping[str, Any] = s.metadata or {}
    tgt_md: Mapping[str, Any] = t.metadata or {}
    for key in _keys(src_md, tgt_md):
        if not _same(src_md.get(key, MISSING), tgt_md.get(key, MISSING)):
            diff(f"metadata.{key}", src_md.get(key, MISSING), tgt_md.get(key, MISSING))

    src_parent, tgt_parent = _parent(s), _parent(t)
    if src_parent != tgt_parent:
        diff("parent_checkpoint_id", src_parent, tgt_parent)

    _compare_writes(list(s.pending_writes or ()), list(t.pending_writes or ()), diff)


def _parent(tup: CheckpointTuple) -> str | None:
    if not tup.parent_config:
        return None
    parent = tup.parent_config["configurable"].get("checkpoint_id")
    return str(parent) if parent else None


def _compare_writes(
    src: list[PendingWrite], tgt: list[PendingWrite], diff: Callable[[str, Any, Any], None]
) -> None:
    """Multiset comparison (see ``verify``). Values may be unhashable, so match pairwise: writes
    per checkpoint are few. Leftovers with the same (task_id, channel) are reported as one changed
    value; the rest as missing or extra."""
    unmatched = list(tgt)
    lost: list[PendingWrite] = []
    for w in src:
        for i, u in enumerate(unmatched):
            if w[0] == u[0] and w[1] == u[1] and _same(w[2], u[2]):
                del unmatched[i]
                break
        else:
            lost.append(w)
    for w in lost:
        j = next((i for i, u in enumerate(unmatched) if (u[0], u[1]) == (w[0], w[1])), None)
        diff("pending_writes", w, unmatched.pop(j) if j is not None else MISSING)
    for u in unmatched:
        diff("pending_writes", MISSING, u)


def _keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Keys of both, in a stable order (``a``'s first) so reports are reproducible."""
    return list(a) + [k for k in b if k not in a]


def _same(a: Any, b: Any) -> bool:
    """``==``, except NaN equals NaN (a float channel value is not a difference with itself) and
    an ``==`` that raises (e.g. array-like values) counts as unequal."""
    if a is b:
        return True
    try:
        if bool(a == b):
            return True
    except Exception:
        return False
    if isinstance(a, float) and isinstance(b, float):
        return math.isnan(a) and math.isnan(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and type(a) is type(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return False


def _short(value: Any) -> str:
    """Bounded repr; computed only for differences, so a large value costs only when it differs."""
    text = repr(value)
    return text if len(text) <= _REPR_MAX else text[: _REPR_MAX - 1] + "…"


def verify_latest(
    source: BaseCheckpointSaver[str],
    target: BaseCheckpointSaver[str],
    pairs: list[tuple[str, str]],
    *,
    workers: int = 8,
    max_differences: int = 100,
) -> VerifyReport:
    """Compare what a resuming graph reads: ``get_tuple`` of each (thread, namespace).

    Two calls per pair and side where ``verify`` reads the whole history, so it is cheap
    enough to run while writes are fenced. A pair with no checkpoint on the source must have
    none on the target either (a deletion). Target reads are network round trips, so they run
    side by side; comparing stays in this thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    report = VerifyReport()
    out = _Collector(report, max_differences)

    def read(pair: tuple[str, str]) -> tuple[CheckpointTuple | None, CheckpointTuple | None]:
        cfg: RunnableConfig = {"configurable": {"thread_id": pair[0], "checkpoint_ns": pair[1]}}
        return source.get_tuple(cfg), target.get_tuple(cfg)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            tuples = list(pool.map(read, pairs))
        for (thread_id, ns), (a, b) in zip(pairs, tuples, strict=True):
            report.threads += 1
            if a is None or b is None or _cid(a) != _cid(b):
                out.add(thread_id, ns, None, "latest", a and _cid(a), b and _cid(b))
            else:
                _count(report, a)
                _compare_tuple(thread_id, ns, a, b, out)
    except _Enough:
        report.truncated = True
    return report


def verify_changed(
    source: BaseCheckpointSaver[str],
    target: BaseCheckpointSaver[str],
    pairs: Iterable[tuple[str, str]],
    since: str,
    *,
    max_differences: int = 100,
) -> VerifyReport:
    """``verify`` of the history written after ``since`` (a checkpoint id) in the given
    (thread, namespace) pairs: every checkpoint newer than it, with its metadata, parent and
    pending writes, and the latest of each pair. Checkpoints are never rewritten, so what was
    verified before ``since`` need not be read again (a deleted thread is not seen this way)."""
    report = VerifyReport()
    out = _Collector(report, max_differences)

    def check(thread_id: str, ns: str | None) -> None:
        _verify_namespace(source, target, thread_id, ns or "", report, out, since=since)

    return _each(pairs, check, out)
