"""``replicator cutover`` and ``rollback``: the fenced switch of every app instance at once.

Cutover, in order:

1. **Gate** (nothing changed yet): the target's initial copy is done, its lag is within
   ``max_lag`` seconds, no thread is dead-lettered, and a verify runs: of every thread the
   first time, then of the history written since the last successful cutover's verify began,
   in the namespaces it touched (checkpoints are never rewritten; a deletion is not a change
   seen that way: ``replicator verify`` checks everything). Under live writes that verify sees
   changes the pipeline has not carried yet: once the target applied what the source had when
   the gate began, the threads that differed are compared again, and one that still differs
   and was not written since is a refusal. The rest is compared after the switch (7).
2. ``phase = fencing`` is committed (``status`` shows a switch in progress; a killed cutover
   leaves this trace, and the app still uses the store it used).
3. **Fence**: the switchboard's exclusive fence (Postgres: ``FOR UPDATE`` on the record under
   ``lock_timeout``) waits for the routing-saver writes in flight and makes every new one wait.
   The pause starts here.
4. **Mark**: a position at or past every write the source accepted, sent through the change
   stream as a marker the source turns into an immediate heartbeat.
5. **Flip**: ``phase = cut_over`` is stored with the marker's position, and the fence is
   released. The pause (fence to release) is only the lock, the marker and the record.
6. **Per-thread hold**: no call waits for the pipeline. A thread on the target whose partition
   of the pipeline has not applied the source up to the marker (every change of a thread
   travels its partition in order) stays on the source, reads and writes, until the target
   holds everything of it, its writes since included (replicator/routing.py). The command
   waits for every partition, then for the writes of every thread held so far.
7. **Check** exactly, through both stores' savers (the latest checkpoint and its pending
   writes, as a resuming graph reads them): every namespace with a checkpoint or write newer
   than the gate's start (checkpoint ids are uuid6: they sort by time, as far as the app hosts'
   clocks agree with this one), and those the gate left in doubt. A difference that stays
   after a few short retries switches every app back (``rolled_back``, with the reason in the
   history) and the command exits 1: nothing is lost,
   since the source holds every write made on the target meanwhile. A deletion, or a write to
   an older checkpoint with no new checkpoint after it, is not in that set (it is covered by
   the gate's verify only).

Any failure or timeout before the flip releases the fence with the record as it was (the app
never left its store), commits the previous phase with the reason in the history, and returns
a refusal; after the flip, it switches back as in 7.

The check runs after the release, so its length is not a pause: the fence never waits for a
target read. A canary (``percent`` < 100 or ``threads``) is the same switch for some threads only; a later
cutover widens it (``cut_over -> fencing -> cut_over``).

Dual write (``replicator.dualwrite``) has no pipeline: the gate is a finished back-fill (whose
start is the verify mark), the fence sends no marker and nothing is drained; the check after
the switch is the same. Leaving the target returns to ``dual_writing``.

Rollback is the same fence in the other direction, with no drain: while cut over, every
routing-saver write also wrote the same call to the source inside its fenced transaction
(``replicator.routing``), so once the fence is held the source has every write and the flip is
all that is left. The forward pipeline keeps running throughout, so the target stays equal to
the source and a later cutover is possible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Switchboard
from replicator.config import Config, TargetConfig
from replicator.errors import ErrorKind, ReplicatorError, classify
from replicator.faults import fault_point
from replicator.kafka import partition_of
from replicator.migration import MigrationRecord, Phase, Refused, Store
from replicator.state import StateStore, applier_positions, open_state_store

_POLL_S = 0.005
_GATE_DIFFERENCES = 10_000
_SETTLE_TRIES = 3
_SETTLE_S = 0.2


@dataclass
class CutoverResult:
    ok: bool
    phase: Phase
    reason: str = ""
    pause_ms: float | None = None  # fence to commit, as the waiting writes saw it
    fence_position: int | None = None
    drain_ms: float | None = None  # release to every partition applied up to the marker
    released_at: float | None = None  # wall clock (time.time()) when the fence was released
    verified_threads: int = 0
    steps: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """Which threads a cutover moves to the target: all, a percent (stable hash), or a list."""

    percent: int = 100
    threads: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ReplicatorError(ErrorKind.CONFIG, f"--percent must be 0..100, got {self.percent}")
        if self.percent == 0 and not self.threads:
            raise ReplicatorError(ErrorKind.CONFIG, "nothing to cut over: --percent 0 and no --threads")

    def widen(self, record: MigrationRecord) -> Scope:
        """A canary only grows: what is already on the target stays there."""
        if not record.on_target:
            return self
        return Scope(max(self.percent, record.percent), self.threads | record.threads)

    def describe(self) -> str:
        if self.percent >= 100:
            return "every thread"
        extra = f" and {len(self.threads)} named threads" if self.threads else ""
        return f"{self.percent}% of threads{extra}"


def pick_target(config: Config, name: str | None) -> TargetConfig:
    if name is not None:
        return config.target(name)
    if len(config.targets) > 1:
        names = ", ".join(t.name for t in config.targets)
        raise ReplicatorError(ErrorKind.CONFIG, f"several targets ({names}): name one with --target")
    return config.targets[0]


def gate(config: Config, state: StateStore, target: TargetConfig, max_lag: float) -> tuple[list[int], int]:
    """Raise Refused unless the target is caught up within ``max_lag`` s with no dead letter.

    Returns the publisher's partitions (each must be drained at the fence) and the source head.
    """
    from replicator.status import collect, source_head

    head, described = source_head(config)
    report = collect(config, state, head, described)
    if report["source"]["snapshot"]["state"] != "done":
        raise Refused(f"the initial copy is not done ({report['source']['snapshot']['state']})")
    info = report["targets"][target.name]
    if not info["partitions"]:
        raise Refused("the daemon has not published anything yet: is `replicator run` running?")
    dead = info["dead_letters"]
    if dead["count"] or dead["paused_threads"]:
        raise Refused(
            f"target {target.name!r} has {dead['count']} dead-lettered events "
            f"(paused threads: {', '.join(map(str, dead['paused_threads'])) or 'none'}); "
            "resolve them before switching"
        )
    lag = float(info["lag"]["seconds"])
    if not info["caught_up"] and lag > max_lag:
        raise Refused(f"target {target.name!r} is {lag:.1f}s behind the source (--max-lag {max_lag:g}s)")
    return sorted(int(p) for p in info["partitions"]), head


def verified_state_name(target: str) -> str:
    return f"cutover.verified:{target}"


def backfilled_state_name(target: str) -> str:
    return f"dualwrite.backfilled:{target}"


def dual_write_gate(state: StateStore, target: TargetConfig) -> tuple[list[int], int]:
    """Dual write has no pipeline to be caught up: the gate is a finished back-fill (its start
    is the verify mark). No partitions to drain, no position to reach."""
    if state.get(backfilled_state_name(target.name)) is None:
        raise Refused(
            f"dual writing: the history is not back-filled to {target.name!r} yet "
            "(run `replicator dual-write` to the end)"
        )
    return [], 0


def new_mark() -> str:
    """A checkpoint-id-shaped mark of now (uuid6 sorts by time, as checkpoint ids do)."""
    from langgraph.checkpoint.base.id import uuid6

    return str(uuid6(node=0, clock_seq=0))


def record_verified(state: StateStore, target: str, since: str) -> None:
    """Every thread was found equal by a verify that began at ``since``: the next cutover's
    gate verifies only what was written after it."""
    state.put(verified_state_name(target), {"since": since})


def _verify_since(
    config: Config, board: Switchboard, target: TargetConfig, since: str | None
) -> tuple[set[str], int]:
    """Threads with a difference and threads read: the whole history of every thread (``since``
    None), or the history written since the last cutover's verify in the namespaces changed."""
    from connectors.registry import make_sink, make_source
    from replicator.state import MemoryStateStore
    from replicator.verify import verify, verify_changed

    pairs = None if since is None else sorted(board.changed(since))
    if pairs is not None and not pairs:
        return set(), 0
    source = make_source(config.source, MemoryStateStore())
    sink = make_sink(target)
    try:
        if pairs is None or since is None:
            report = verify(source, sink, max_differences=_GATE_DIFFERENCES)
        else:
            report = verify_changed(
                source.saver(), sink.saver(), pairs, since, max_differences=_GATE_DIFFERENCES
            )
            report.threads = len({thread for thread, _ in pairs})
    finally:
        source.close()
        sink.close()
    if report.truncated:
        raise Refused(f"verify found more than {_GATE_DIFFERENCES} differences: the target is not ready")
    return {d.thread_id for d in report.differences}, report.threads


class _Readers:
    """Both stores' savers, opened once before the fence: opening a connection or a client
    inside the fence would add to every waiting write's pause."""

    def __init__(self, config: Config, target: TargetConfig) -> None:
        from connectors.registry import make_sink, make_source
        from replicator.state import MemoryStateStore

        self._source = make_source(config.source, MemoryStateStore())
        try:
            self._sink = make_sink(target)
        except BaseException:
            self._source.close()
            raise
        self.source, self.target = self._source.saver(), self._sink.saver()

    def close(self) -> None:
        self._source.close()
        self._sink.close()


def _check_latest(
    board: Switchboard, readers: _Readers, pairs: set[tuple[str, str]], threads: set[str]
) -> set[tuple[str, str]]:
    """(thread, namespace) pairs whose latest checkpoint (with its pending writes) differs:
    ``pairs``, and every namespace of ``threads`` (those a verify found different as a whole)."""
    from replicator.verify import verify_latest

    wanted = set(pairs) | set(board.namespaces(sorted(threads)) if threads else ())
    if not wanted:
        return set()
    report = verify_latest(readers.source, readers.target, sorted(wanted), max_differences=_GATE_DIFFERENCES)
    return {(d.thread_id, d.checkpoint_ns or "") for d in report.differences}


def _behind(state: StateStore, target: str, wanted: dict[int, int]) -> list[int]:
    from replicator.state import POSITION

    positions = applier_positions(state, target)
    return sorted(p for p, at in wanted.items() if int((positions.get(p) or {}).get(POSITION) or 0) < at)


def _drain_to(state: StateStore, target: str, wanted: dict[int, int], deadline: float, what: str) -> None:
    """Wait until each partition of ``wanted`` applied the source up to its position."""
    while behind := _behind(state, target, wanted):
        if time.monotonic() > deadline:
            raise Refused(
                f"timed out: target {target!r} did not apply {what} "
                f"on partitions {', '.join(map(str, behind))}"
            )
        time.sleep(_POLL_S)


def _drain(state: StateStore, target: str, partitions: list[int], position: int, deadline: float) -> None:
    _drain_to(state, target, dict.fromkeys(partitions, position), deadline, "up to the fence")


def held_behind(board: Switchboard, state: StateStore, record: MigrationRecord) -> dict[str, int]:
    """Threads held on the source after the last cutover whose writes the target has not all
    applied yet (see replicator/routing.py), with the position each waits for."""
    from replicator.state import POSITION

    if not record.on_target or record.drain_position is None or not record.drain_partitions:
        return {}
    held = board.holds(record.epoch)
    if not held:
        return {}
    positions = applier_positions(state, record.target or "")
    applied = {p: int((positions.get(p) or {}).get(POSITION) or 0) for p in record.drain_partitions}
    return {t: at for t, at in held.items() if applied[partition_of(t, record.drain_partitions)] < at}


def _drain_holds(board: Switchboard, state: StateStore, record: MigrationRecord, deadline: float) -> None:
    """Wait until the target applied every write made so far by threads held on the source."""
    behind = held_behind(board, state, record)
    wanted: dict[int, int] = {}
    for thread, at in behind.items():
        partition = partition_of(thread, record.drain_partitions)
        wanted[partition] = max(wanted.get(partition, 0), at)
    _drain_to(state, record.target or "", wanted, deadline, "the writes of threads held on the source")


def commit_phase(board: Switchboard, to: Phase, note: str, timeout: float, **changes: Any) -> MigrationRecord:
    """Commit one phase change under a brief fence (a switch's first and last step)."""
    with board.fence(timeout) as fence:
        record = fence.record
        if to not in _allowed(record):
            raise Refused(f"the migration is in phase {record.phase.value!r}: cannot move to {to.value}")
        moved = record.moved(to, note=note, **changes)
        fence.commit(moved)
        return moved


def _allowed(record: MigrationRecord) -> frozenset[Phase]:
    from replicator.migration import TRANSITIONS

    return TRANSITIONS[record.phase]


def abort(board: Switchboard, reason: str, timeout: float = 30.0) -> MigrationRecord:
    """Back to the phase the app is still on, with the reason in the history."""
    with board.fence(timeout) as fence:
        record = fence.record
        if record.phase is Phase.FENCING:
            if record.store is Store.TARGET:
                back = Phase.CUT_OVER
            else:
                back = Phase.DUAL_WRITING if record.dual_write else Phase.REPLICATING
        elif record.phase is Phase.ROLLING_BACK:
            back = Phase.CUT_OVER
        else:
            return record
        moved = record.moved(back, note=f"aborted: {reason}")
        fence.commit(moved)
        return moved


class _Say:
    def __init__(self, log: Callable[[str], None] | None) -> None:
        self.steps: list[str] = []
        self._log = log

    def __call__(self, line: str) -> None:
        self.steps.append(line)
        if self._log is not None:
            self._log(line)


def _refusal(config: Config, reason: str, started: bool, say: _Say) -> CutoverResult:
    """Record the refusal on a fresh switchboard (the command's own may be what broke)."""
    from connectors.registry import make_switchboard

    say(f"refused: {reason}")
    board = make_switchboard(config.source)
    try:
        phase = abort(board, reason).phase if started else board.record().phase
    finally:
        board.close()
    return CutoverResult(ok=False, phase=phase, reason=reason, steps=say.steps)


def _refused(config: Config, exc: Exception, started: bool, say: _Say) -> CutoverResult:
    """A refusal for what the operator can act on; a bug is re-raised once the switch is undone."""
    reason = str(exc) if isinstance(exc, Refused) else str(classify(exc))
    result = _refusal(config, reason, started, say)
    if not isinstance(exc, Refused) and classify(exc).kind is ErrorKind.INTERNAL:
        raise exc
    return result


def run_cutover(
    config: Config,
    timeout: float = 30.0,
    max_lag: float = 5.0,
    *,
    target: str | None = None,
    scope: Scope | None = None,
    state: StateStore | None = None,
    log: Callable[[str], None] | None = None,
) -> CutoverResult:
    """Switch every routing-saver app (or a canary's threads) to ``target`` (module doc)."""
    from connectors.registry import make_switchboard

    chosen = pick_target(config, target)
    say = _Say(log)
    own_state = state is None
    store = state if state is not None else open_state_store(config, create=False)
    board = make_switchboard(config.source)
    readers: _Readers | None = None
    started = False
    try:
        record = board.record()
        # A killed cutover's trace: this run takes it over, so a refusal now undoes it too.
        started = record.phase is Phase.FENCING
        if Phase.FENCING not in _allowed(record):
            raise Refused(f"the migration is in phase {record.phase.value!r}: nothing to cut over")
        if record.on_target and record.target not in (None, chosen.name):
            raise Refused(
                f"threads are on target {record.target!r}: roll back before switching to {chosen.name!r}"
            )
        wanted = (scope or Scope()).widen(record)
        if record.on_target and (wanted.percent, wanted.threads) == (record.percent, record.threads):
            raise Refused(f"{wanted.describe()} already on {chosen.name!r}: nothing to cut over")
        if record.dual_write:
            partitions, head = dual_write_gate(store, chosen)
        else:
            partitions, head = gate(config, store, chosen, max_lag)
        readers = _Readers(config, chosen)
        since = new_mark()
        last = (store.get(verified_state_name(chosen.name)) or {}).get("since")
        different, threads = _verify_since(config, board, chosen, last)
        scope_text = "every thread" if last is None else "threads changed since the last cutover's verify"
        say(f"gate: {threads} threads verified ({scope_text}), {len(different)} differ (in flight or not)")
        suspects: set[tuple[str, str]] = set()
        if different:
            # In flight, or really different? Once the target applied what the source had when
            # the gate began, what still differs is a refusal (nothing switched yet).
            _drain(store, chosen.name, partitions, head, time.monotonic() + timeout)
            suspects = _settle(board, readers, set(board.namespaces(sorted(different))))
            if suspects and not {t for t, _ in suspects} <= {t for t, _ in board.changed(since)}:
                names = sorted({t for t, _ in suspects} - {t for t, _ in board.changed(since)})
                raise Refused(f"verify found differences in {len(names)} threads: {', '.join(names[:10])}")
        commit_phase(board, Phase.FENCING, f"cutover of {wanted.describe()} to {chosen.name}", timeout)
        started = True
        fault_point("cutover.fencing")
        deadline = time.monotonic() + timeout
        result = CutoverResult(ok=False, phase=Phase.FENCING)
        with board.fence(max(0.001, deadline - time.monotonic())) as fence:
            # Dual write has no stream to carry a marker: every write is on both stores already.
            position = result.fence_position = fence.mark() if partitions else None
            fault_point("cutover.in_fence")
            if time.monotonic() > deadline:
                raise Refused(f"timed out after {timeout:g}s")
            fault_point("cutover.before_flip")
            pause_ms = (time.monotonic() - fence.fenced_at) * 1000
            fence.commit(
                fence.record.moved(
                    Phase.CUT_OVER,
                    target=chosen.name,
                    percent=wanted.percent,
                    threads=wanted.threads,
                    pause_ms=pause_ms,
                    drain_position=position,
                    drain_partitions=tuple(partitions),
                )
            )
        committed = fence.record
        released = time.monotonic()
        board.clear_holds(committed.epoch)  # the marker is past every write of an earlier hold
        result.released_at = time.time()
        # Released: each thread's first call waits only for its own partition to apply up to
        # the marker (RoutingSaver). Now wait for every partition, then check exactly what
        # changed during the last unfenced pass; a difference switches everything back.
        try:
            _drain(store, chosen.name, partitions, position or 0, released + timeout)
            result.drain_ms = (time.monotonic() - released) * 1000
            _drain_holds(board, store, committed, released + timeout)
            recheck = suspects | board.changed(since)  # everything written since the gate began
            result.verified_threads = len({thread for thread, _ in recheck})
            differing = _settle(board, readers, recheck)
            if differing:
                names = sorted({thread for thread, _ in differing})
                raise Refused(
                    f"the check after the switch found differences in {len(names)} threads: "
                    f"{', '.join(names[:10])}"
                )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, Refused) else str(classify(exc))
            undone = _switch_back(board, timeout, f"cutover undone: {reason}")
            say(f"refused: {reason}; every app is back on the source (epoch {undone.epoch})")
            return CutoverResult(ok=False, phase=undone.phase, reason=reason, steps=say.steps)
        # Everything changed before the gate's verify began is verified now: the next cutover
        # verifies only what changed after it (deletions are not seen that way: see README).
        record_verified(store, chosen.name, since)
        result.ok, result.phase, result.pause_ms, result.steps = True, committed.phase, pause_ms, say.steps
        say(
            f"cut over {wanted.describe()} to {chosen.name}: write pause {pause_ms:.1f} ms "
            f"(then each partition drained within {result.drain_ms:.1f} ms; "
            f"{result.verified_threads} threads changed during the gate checked), "
            f"epoch {committed.epoch}"
        )
        return result
    except Exception as exc:
        return _refused(config, exc, started, say)
    finally:
        if readers is not None:
            readers.close()
        board.close()
        if own_state:
            store.close()


def _settle(board: Switchboard, readers: _Readers, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Pairs still different after a few short retries: a write in flight between the two
    stores (source committed, target not yet) differs for a moment, a real difference stays."""
    differing = _check_latest(board, readers, pairs, set())
    for _ in range(_SETTLE_TRIES):
        if not differing:
            break
        time.sleep(_SETTLE_S)
        differing = _check_latest(board, readers, differing, set())
    return differing


def _switch_back(board: Switchboard, timeout: float, note: str) -> MigrationRecord:
    """Every app back to the source, through the same two steps as a rollback."""
    commit_phase(board, Phase.ROLLING_BACK, note, timeout)
    return _flip_to_source(board, timeout, note)[0]


def _flip_to_source(board: Switchboard, timeout: float, note: str = "") -> tuple[MigrationRecord, float]:
    """A rollback's second step: under the fence, the record back on the source; with the write
    pause it cost, in milliseconds."""
    with board.fence(timeout) as fence:
        fault_point("rollback.in_fence")
        pause_ms = (time.monotonic() - fence.fenced_at) * 1000
        fence.commit(fence.record.moved(fence.record.source_phase, pause_ms=pause_ms, note=note))
    return fence.record, pause_ms


def run_rollback(
    config: Config, timeout: float = 30.0, *, log: Callable[[str], None] | None = None
) -> CutoverResult:
    """Switch every routing-saver app back to the source (module doc)."""
    from connectors.registry import make_switchboard

    say = _Say(log)
    board = make_switchboard(config.source)
    started = False
    try:
        record = board.record()
        started = record.phase is Phase.ROLLING_BACK  # a killed rollback's trace (as in cutover)
        if Phase.ROLLING_BACK not in _allowed(record):
            raise Refused(f"the migration is in phase {record.phase.value!r}: nothing to roll back")
        commit_phase(board, Phase.ROLLING_BACK, "rollback to the source", timeout)
        started = True
        fault_point("rollback.rolling_back")
        committed, pause_ms = _flip_to_source(board, timeout)
        say(f"rolled back to the source: write pause {pause_ms:.1f} ms, epoch {committed.epoch}")
        return CutoverResult(ok=True, phase=committed.phase, pause_ms=pause_ms, steps=say.steps)
    except Exception as exc:
        return _refused(config, exc, started, say)
    finally:
        board.close()


def run_finish(config: Config, timeout: float = 30.0) -> MigrationRecord:
    """Close the rollback window: no more shadow writes to the source (``finished``).

    On the target, it first waits until the target applied every write of the threads held on
    the source after the cutover (routing stops looking at holds once finished), and checks
    that again under the fence, where no write can add one.
    """
    from connectors.registry import make_switchboard

    board = make_switchboard(config.source)
    state: StateStore | None = None
    try:
        record = board.record()
        if record.phase is Phase.FINISHED:  # again (e.g. `finish --drop` after `finish`): nothing to do
            return record
        if Phase.FINISHED not in _allowed(record):
            raise Refused(f"the migration is in phase {record.phase.value!r}: it cannot finish now")
        note = f"finished on the {record.store.value}"
        if record.drain_position is None or not record.on_target:
            return commit_phase(board, Phase.FINISHED, note, timeout)
        state = open_state_store(config, create=False)
        deadline = time.monotonic() + timeout
        while True:
            _drain_holds(board, state, record, deadline)
            with board.fence(max(0.001, deadline - time.monotonic())) as fence:
                record = fence.record
                if Phase.FINISHED not in _allowed(record):
                    raise Refused(
                        f"the migration moved to phase {record.phase.value!r}: it cannot finish now"
                    )
                if not held_behind(board, state, record):
                    moved = record.moved(Phase.FINISHED, note=note)
                    fence.commit(moved)
                    return moved
    finally:
        board.close()
        if state is not None:
            state.close()
