"""Named fault points: no-ops in production, switched on by tests to crash at exact places.

``LGREPL_FAULT=<point>`` (optionally ``<point>:<n>`` to fire on the n-th pass) makes the
process kill itself with SIGKILL when it reaches that point, which is what a pod eviction or
an OOM kill does: no cleanup, no flush.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "publisher.before_produce",
        "publisher.after_produce",
        "publisher.before_confirm",
        "applier.after_apply",
        "applier.after_commit",
        "snapshot.between_chunks",
    }
)

_spec = os.environ.get("LGREPL_FAULT", "")
_point, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def fault_point(name: str) -> None:
    """Kill this process here when the environment selected this point."""
    global _remaining
    if not _point or name != _point:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
