"""``replicator dual-write``: keep a target equal with no change log, then cut over as usual.

For a source whose log cannot be read (a managed Postgres without logical replication), the
routing saver does the pipeline's job:

1. **Start**: ``phase = dual_writing`` is committed under the fence, so every routing-saver
   write after it goes to the source (authoritative, committed first) and then to the target;
   reads stay on the source.
2. **Back-fill**: every thread of the source (and every thread the target has and the source
   does not) is copied whole, one at a time: the thread's writes and any switch are held off
   while its rows are read and applied, and a ``ThreadDeletion`` goes first, so the target's
   thread ends exactly the source's. A write that comes after the copy goes to both stores.
3. The back-fill's start is recorded as the cutover gate's verify mark: ``replicator
   cutover`` verifies every thread written since then (a dual write whose target half failed
   is among them), fences, flips and checks, with no pipeline to drain.

Running the command again back-fills again (the repair for a target that missed writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from replicator.config import Config
from replicator.cutover import backfilled_state_name, commit_phase, new_mark, pick_target, record_verified
from replicator.migration import Phase, Refused
from replicator.state import StateStore, open_state_store

_PROGRESS_EVERY_S = 5.0


@dataclass
class BackfillResult:
    threads: int
    events: int
    removed: int  # threads the target had and the source did not
    seconds: float


def run_dual_write(
    config: Config,
    *,
    target: str | None = None,
    timeout: float = 30.0,
    state: StateStore | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> BackfillResult:
    """Start dual writing (if not started) and back-fill every thread to the target."""
    from connectors.registry import make_sink, make_switchboard

    chosen = pick_target(config, target)
    board = make_switchboard(config.source)
    own_state = state is None
    store = state if state is not None else open_state_store(config, create=True)
    sink = None
    try:
        record = board.record()
        if record.phase is Phase.REPLICATING:
            commit_phase(
                board, Phase.DUAL_WRITING, f"dual write to {chosen.name}", timeout, target=chosen.name
            )
            log(f"dual writing: every routing-saver write now goes to the source, then to {chosen.name}")
        elif record.phase is not Phase.DUAL_WRITING:
            raise Refused(
                f"the migration is in phase {record.phase.value!r}: dual write starts from replicating"
            )
        elif record.target not in (None, chosen.name):
            raise Refused(f"dual writing goes to target {record.target!r}, not {chosen.name!r}")
        sink = make_sink(chosen, store)
        since = new_mark()  # every write after this is on both stores or verified at cutover
        started = time.monotonic()
        on_source = board.threads()
        extra = sorted(set(sink.thread_ids()) - set(on_source))
        result = BackfillResult(threads=0, events=0, removed=len(extra), seconds=0.0)
        said = started
        for thread_id in [*on_source, *extra]:
            with board.thread_copy(thread_id) as (now, events):
                if now.phase is not Phase.DUAL_WRITING:
                    raise Refused(f"the migration moved to {now.phase.value!r} during the back-fill")
                sink.apply(events)
            result.threads += 1
            result.events += len(events)
            if time.monotonic() - said > _PROGRESS_EVERY_S:
                said = time.monotonic()
                log(f"back-filled {result.threads} of {len(on_source) + len(extra)} threads")
        record_verified(store, chosen.name, since)
        store.put(backfilled_state_name(chosen.name), {"since": since, "threads": result.threads})
        result.seconds = time.monotonic() - started
        log(
            f"back-filled {result.threads} threads ({result.events} rows, {result.removed} removed "
            f"from the target) to {chosen.name} in {result.seconds:.1f}s; "
            "`replicator cutover` can switch now"
        )
        return result
    finally:
        if sink is not None:
            sink.close()
        board.close()
        if own_state:
            store.close()
