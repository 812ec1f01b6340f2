"""Named fault points: no-ops in production, switched on by tests to crash at exact places.

``LGREPL_FAULT=<point>[:<n>][@<phase>][!raise]`` makes the process kill itself with SIGKILL the
n-th time (default: the first) it reaches that point, which is what a pod eviction or an OOM kill
does: no cleanup, no flush. With ``@<phase>`` only passes made while the source is in that
phase count (``snapshot``: the initial copy; ``streaming``: reading the slot), so a test can
aim at live changes without counting the snapshot's control events first.

Every point is named in ``POINTS``; an unknown point in ``LGREPL_FAULT`` is refused when the
first fault point is reached, so a misspelt test cannot pass by never firing.

With ``!raise`` the point raises ``InjectedBug`` (a plain ``RuntimeError``, as an unforeseen bug
would) instead of killing the process: the tests of the one rule for bugs use it.
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = frozenset(
    {
        "publisher.before_produce",  # an event read, nothing of it sent to Kafka
        "publisher.after_send",  # an event handed to the Kafka client, its ack not yet seen
        "publisher.after_produce",  # Kafka acknowledged a flush, the source not yet confirmed
        "publisher.before_confirm",  # about to confirm a source position (slot or snapshot chunk)
        "applier.in_sink_apply",  # inside the sink's apply call, nothing of the batch written
        "applier.after_apply",  # the sink made a batch durable, its offsets not yet committed
        "applier.after_commit",  # offsets committed, the applied position not yet saved
        "applier.on_rebalance",  # partitions being revoked from this consumer
        "snapshot.between_chunks",  # a snapshot chunk published and confirmed, the next not read
        "source.after_read",  # a change decoded from the slot, not yet handed to the publisher
        "routing.between_stores",  # an app write committed on the source, not yet on the target
        "cutover.fencing",  # phase fencing committed, the fence not yet taken
        "cutover.in_fence",  # fence held and marker sent, not yet drained
        "cutover.before_flip",  # drained and checked inside the fence, the record not yet stored
        "rollback.rolling_back",  # phase rolling_back committed, the fence not yet taken
        "rollback.in_fence",  # fence held, the record not yet stored
    }
)
PHASES = frozenset({"snapshot", "streaming"})

_spec = os.environ.get("LGREPL_FAULT", "")
_spec, _, _action = _spec.partition("!")
_spec, _, _phase = _spec.partition("@")
_point, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1
_current_phase = ""


def _check_spec() -> None:
    if _point and _point not in POINTS:
        sys.stderr.write(f"LGREPL_FAULT names unknown fault point {_point!r}; known: {sorted(POINTS)}\n")
        os._exit(2)
    if _action and _action != "raise":
        sys.stderr.write(f"LGREPL_FAULT names unknown action {_action!r}; known: ['raise']\n")
        os._exit(2)
    if _phase and _phase not in PHASES:
        sys.stderr.write(f"LGREPL_FAULT names unknown phase {_phase!r}; known: {sorted(PHASES)}\n")
        os._exit(2)


def enter_phase(phase: str) -> None:
    """The source calls this when it starts its initial copy or starts reading the slot."""
    global _current_phase
    _current_phase = phase


def fault_point(name: str) -> None:
    """Kill this process here when the environment selected this point."""
    global _remaining
    if not _point:
        return
    _check_spec()
    if name != _point or (_phase and _phase != _current_phase):
        return
    _remaining -= 1
    if _remaining <= 0:
        if _action == "raise":
            raise InjectedBug(f"fault injected at {name}")
        os.kill(os.getpid(), signal.SIGKILL)


class InjectedBug(RuntimeError):
    """What ``!raise`` raises: deliberately not a ReplicatorError, like a real bug."""
