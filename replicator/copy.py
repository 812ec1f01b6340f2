"""The big-bang strategy: every thread (or some) copied once from the source store to every
target, without Kafka, through the same LangGraph layer and sinks the daemon applies with.

Each thread is read in one consistent read (``ThreadSource.thread_events``: a thread deletion
first, then all of it), so the target's copy of a thread is replaced, never merged. A digest
of what was copied is kept per target and thread in the state store: a second run copies only
threads whose source changed since, and says so (``unchanged``). Threads are applied in chunks
of up to ``batch_events`` events, on several workers where the target takes parallel writers
(DynamoDB, Postgres); a SQLite file or a saver reached through its API takes one.

A chunk that fails with a retryable error (throttled, unreachable) is retried with backoff; a
thread the target refuses (a malformed value) is set apart and reported, the others go on; any
other error (a missing table, bad config) stops the copy. Nothing is recorded as copied before
the target said it is durable.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from connectors.base import Sink, ThreadSource
from connectors.registry import make_sink, make_switchboard, make_thread_source
from replicator.config import Config, TargetConfig
from replicator.errors import ErrorKind, ReplicatorError, Retry, classify
from replicator.events import DataChange, ThreadDeletion
from replicator.migration import Phase
from replicator.state import StateStore

log = structlog.get_logger("replicator.copy")

# Targets that take several writers at once; the others get one (a SQLite file has one writer,
# a saver's API and the state store it keeps blobs in are used by one caller).
PARALLEL_KINDS = frozenset({"dynamodb", "postgres"})
# Phases in which the app writes only the source, so the source is what the target must hold.
COPYABLE_PHASES = frozenset({Phase.REPLICATING, Phase.ROLLED_BACK})
_RETRIES = 6


_DIGESTS = "copy:"


def digest_name(target: str, thread_id: str) -> str:
    """The state document holding the digest of what was last copied of a thread to a target."""
    return f"{_DIGESTS}{target}:{thread_id}"


def thread_digest(events: list[DataChange]) -> str:
    return hashlib.sha256(msgspec.msgpack.encode(events)).hexdigest()


@dataclass
class TargetReport:
    name: str
    threads: int = 0  # threads considered
    copied: int = 0
    unchanged: int = 0
    events: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # thread id -> why
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "threads": self.threads,
            "copied": self.copied,
            "unchanged": self.unchanged,
            "failed": dict(sorted(self.failed.items())),
            "events": self.events,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Chunk:
    threads: list[tuple[str, str, list[DataChange]]] = field(default_factory=list)  # (id, digest, events)
    events: int = 0


Progress = Callable[[str, int], None]  # (target, threads done) after each chunk


class _TargetCopy:
    """One target's workers: a pool of sinks, chunks in flight, digests recorded after apply."""

    def __init__(self, config: TargetConfig, state: StateStore, workers: int, report: TargetReport) -> None:
        self.config = config
        self.state = state
        self.report = report
        self.parallel = workers if config.kind in PARALLEL_KINDS else 1
        self._sinks: queue.SimpleQueue[Sink] = queue.SimpleQueue()
        self._all_sinks: list[Sink] = []
        self._lock = threading.Lock()
        self.chunk = _Chunk()
        self.present: set[str] | None = None  # listed: threads the target held at the start

    def check(self, list_threads: bool) -> None:
        """The target is reachable and set up; ``list_threads``: note which threads it holds."""
        sink = self._take()
        try:
            sink.check()
            if list_threads:
                self.present = set(sink.thread_ids())
        finally:
            self._sinks.put(sink)

    def events_for(self, thread_id: str, events: list[DataChange]) -> list[DataChange]:
        """A thread the target did not hold at the start needs no deletion first: one request
        (a DynamoDB Query) less per thread. Whatever applies it meanwhile (the daemon) carries
        source changes too, which the copy's consistent read of the thread includes or precedes."""
        fresh = self.present is not None and thread_id not in self.present
        if fresh and events and isinstance(events[0], ThreadDeletion):
            return events[1:]
        return events

    def _take(self) -> Sink:
        try:
            return self._sinks.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            sink = make_sink(self.config, self.state)
            self._all_sinks.append(sink)
        return sink

    def apply(self, chunk: _Chunk) -> None:
        """Apply a chunk (retrying what may pass later); isolate threads the target refuses."""
        sink = self._take()
        try:
            try:
                _apply_with_retries(sink, [e for _, _, events in chunk.threads for e in events])
                done = chunk.threads
            except ReplicatorError as exc:
                if exc.kind is not ErrorKind.MALFORMED_EVENT:
                    raise
                done = []
                for thread in chunk.threads:
                    try:
                        _apply_with_retries(sink, thread[2])
                        done.append(thread)
                    except ReplicatorError as one:
                        if one.kind is not ErrorKind.MALFORMED_EVENT:
                            raise
                        with self._lock:
                            self.report.failed[thread[0]] = str(one)
                        log.error(
                            "thread refused by the target; not copied",
                            target=self.config.name,
                            thread_id=thread[0],
                            error=str(one),
                        )
        finally:
            self._sinks.put(sink)
        self.state.put_many({digest_name(self.config.name, t): {"digest": d} for t, d, _ in done})
        with self._lock:
            self.report.copied += len(done)
            self.report.events += sum(len(events) for _, _, events in done)

    def close(self) -> None:
        for sink in self._all_sinks:
            try:
                sink.close()
            except Exception as exc:  # closing must not hide the copy's own outcome
                log.warning("closing a sink failed", target=self.config.name, error=str(exc))


def _retryable(exc: BaseException) -> bool:
    return classify(exc).retry is Retry.TIMED


def _apply_with_retries(sink: Sink, events: list[DataChange]) -> None:
    for attempt in Retrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(_RETRIES),
        wait=wait_exponential(multiplier=0.2, max=10),
        reraise=True,
    ):
        with attempt:
            sink.apply(events)


def check_phase(config: Config) -> None:
    """Refuse while the app writes the target (cut over, dual writing, a switch under way): a
    copy from the source would overwrite newer data there."""
    try:
        board = make_switchboard(config.source, autocreate=False)
    except ReplicatorError as exc:
        if exc.kind is ErrorKind.CONFIG:  # a source with no migration record (no cutover)
            return
        raise
    try:
        try:
            record = board.record()
        except ReplicatorError as exc:
            if exc.kind is ErrorKind.SOURCE_SETUP:  # no migration record yet: never switched
                return
            raise
    finally:
        board.close()
    if record.phase not in COPYABLE_PHASES:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"the migration is in phase {record.phase.value!r} (target {record.target!r}): the app "
            "writes the target, and a copy from the source would overwrite newer data there. "
            "`replicator copy` runs while the app uses the source (replicating or rolled back)",
        )


@contextmanager
def _open_source(config: Config) -> Iterator[ThreadSource]:
    source = make_thread_source(config.source)
    try:
        yield source
    finally:
        source.close()


def copy(
    config: Config,
    state: StateStore,
    *,
    thread_ids: Iterable[str] | None = None,
    workers: int = 4,
    force: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[TargetReport]:
    """Copy every thread (or ``thread_ids``) to every target once; one report per target."""
    check_phase(config)
    reports = {t.name: TargetReport(t.name) for t in config.targets}
    copies = [_TargetCopy(t, state, workers, reports[t.name]) for t in config.targets]
    started = time.monotonic()
    try:
        with _open_source(config) as source:  # a bad source fails before any target is touched
            digests = _known_digests(state)
            for target in copies:
                # A target this command never copied to is listed once (one scan) so that its new
                # threads skip the deletion; after that, only changed threads are copied, and a
                # deletion each is cheaper than listing the whole target again.
                first = not any(name.startswith(digest_name(target.config.name, "")) for name in digests)
                target.check(list_threads=first)
            wanted = sorted(set(thread_ids)) if thread_ids is not None else source.threads()
            if on_total is not None:
                on_total(len(wanted))
            known = {} if force else digests
            pool = ThreadPoolExecutor(max(c.parallel for c in copies), thread_name_prefix="copy")
            try:
                _run(source, wanted, copies, known, pool, progress)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for target in copies:
            target.close()
    for report in reports.values():
        report.seconds = time.monotonic() - started
    return list(reports.values())


def _known_digests(state: StateStore) -> dict[str, str]:
    return {
        name: str(value.get("digest"))
        for name, value in state.prefixed(_DIGESTS).items()
        if isinstance(value, dict)
    }


def _run(
    source: ThreadSource,
    wanted: list[str],
    copies: list[_TargetCopy],
    known: dict[str, str],
    pool: ThreadPoolExecutor,
    progress: Progress | None,
) -> None:
    in_flight: dict[str, list[Future[None]]] = {c.config.name: [] for c in copies}

    def submit(target: _TargetCopy) -> None:
        chunk, target.chunk = target.chunk, _Chunk()
        if not chunk.threads:
            return
        futures = in_flight[target.config.name]
        # At most ``parallel`` chunks of a target in flight: a one-writer target (a SQLite file, a
        # saver's API) never gets a second sink writing beside the first; memory stays bounded.
        while len(futures) >= target.parallel:
            futures.pop(0).result()
        futures.append(pool.submit(_apply_and_report, target, chunk, progress))

    digest_of = getattr(source, "digest", thread_digest)  # a source may know better (saver.threads)
    for thread_id in wanted:
        events = source.thread_events(thread_id)
        digest = digest_of(events)
        for target in copies:
            target.report.threads += 1
            if known.get(digest_name(target.config.name, thread_id)) == digest:
                target.report.unchanged += 1
                continue
            mine = target.events_for(thread_id, events)
            target.chunk.threads.append((thread_id, digest, mine))
            target.chunk.events += len(mine)
            if target.chunk.events >= target.config.batch_events:
                submit(target)
    for target in copies:
        submit(target)
    for futures in in_flight.values():
        for future in futures:
            future.result()
    if progress is not None:
        for target in copies:
            progress(target.config.name, target.report.threads)


def _apply_and_report(target: _TargetCopy, chunk: _Chunk, progress: Progress | None) -> None:
    target.apply(chunk)
    if progress is not None:
        report = target.report
        progress(target.config.name, report.copied + report.unchanged + len(report.failed))


__all__ = ["COPYABLE_PHASES", "PARALLEL_KINDS", "TargetReport", "copy", "digest_name", "thread_digest"]
