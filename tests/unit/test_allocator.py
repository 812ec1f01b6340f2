"""The daemon hands freed memory back to the OS (replicator/allocator.py)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
from replicator import allocator

def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

assert allocator.configure(), "glibc took the mapping threshold"
blocks = [bytes(32 * 1024) for _ in range(8000)]  # below the threshold: carved from the heap
del blocks[::2]  # holes between live blocks: free() alone cannot shrink the heap
before = rss_mib()
allocator.release()
print(before, rss_mib())
"""


def test_freed_holes_go_back_to_the_os() -> None:
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    before, after = map(int, run.stdout.split())
    assert before - after >= 60, f"RSS {before} MiB before the release, {after} MiB after"
