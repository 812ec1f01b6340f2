"""A separate app process writing through RoutingSaver until a stop file appears.

Each conversation runs one turn to its interrupt and resumes it; after each finished conversation
the count is written to a file, so the test knows exactly which threads were written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.routing import RoutingSaver


def main(config: str, prefix: str, stop_file: str, count_file: str, interval: str) -> None:
    """One conversation at most every ``interval`` seconds: a steady load, not a flood."""
    with RoutingSaver.from_config(config) as saver:
        graph = build_graph(saver)
        done = 0
        while not Path(stop_file).exists():
            started = time.monotonic()
            run_conversation(graph, f"{prefix}-{done}", turns=1)
            done += 1
            Path(count_file).write_text(str(done))
            time.sleep(max(0.0, float(interval) - (time.monotonic() - started)))


if __name__ == "__main__":
    main(*sys.argv[1:6])
