"""py-spy on a running daemon process, summarised as the hot spots results.md lists.

``py-spy record --nonblocking`` samples the process without pausing it (the bench's timed numbers
come from runs without a profiler attached wherever a figure allows it). Idle threads are not
sampled, so percentages are shares of the CPU-active samples of the daemon process.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Profile:
    samples: int = 0
    self_time: collections.Counter[str] = field(default_factory=collections.Counter)
    inclusive: collections.Counter[str] = field(default_factory=collections.Counter)
    error: str | None = None

    def share(self, count: int) -> float:
        return 100.0 * count / self.samples if self.samples else 0.0


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``module.py:func``: stable across line numbers."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{short}:{name}"


def parse(raw: str, focus: str | None = None) -> Profile:
    """py-spy's raw (collapsed) output: ``frame;frame;...;leaf count`` per line, root first.

    With ``focus``, only samples inside a frame whose name ends with it count (start-up and
    imports of a short child process stay out of the percentages).
    """
    profile = Profile()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame_name(f) for f in stack.split(";") if f and not f.startswith(("thread (", "process "))
        ]
        if not frames or (focus is not None and not any(f.endswith(focus) for f in frames)):
            continue
        profile.samples += count
        profile.self_time[frames[-1]] += count
        for name in set(frames):
            profile.inclusive[name] += count
    return profile


DIR = Path(__file__).resolve().parent / "profiles"


def path(name: str) -> Path:
    """Where a raw profile is kept (``bench/profiles/``, not committed) for a closer look."""
    DIR.mkdir(exist_ok=True)
    return DIR / f"{name}.pyspy.txt"


def available() -> bool:
    return shutil.which("py-spy") is not None


@contextlib.contextmanager
def record(pid: int, out: Path, rate: int = 50) -> Iterator[list[Profile]]:
    """Sample ``pid`` while the block runs; the parsed profile is appended to the yielded list."""
    holder: list[Profile] = []
    if not available():
        holder.append(Profile(error="py-spy not installed (pip install 'langgraph-replicator[bench]')"))
        yield holder
        return
    proc = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--nonblocking",
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield holder
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if out.exists():
            holder.append(parse(out.read_text(errors="replace")))
        else:
            holder.append(Profile(error=(err or "py-spy wrote nothing").strip()[-300:]))


def spawn(
    cmd: list[str], name: str, *, focus: str | None = None, rate: int = 100, timeout: float = 600
) -> Profile:
    """Run ``cmd`` (a Python command) under py-spy from its start; its parsed profile."""
    if not available():
        return Profile(error="py-spy not installed (pip install 'langgraph-replicator[bench]')")
    out = path(name)
    proc = subprocess.run(
        ["py-spy", "record", "-r", str(rate), "-f", "raw", "-o", str(out), "--", *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or not out.exists():
        return Profile(error=(proc.stderr or "py-spy wrote nothing").strip()[-300:])
    return parse(out.read_text(errors="replace"), focus)


def table(profile: Profile, *, top: int = 12, inclusive: list[str] | None = None) -> str:
    """Markdown: the top self-time frames, then the inclusive share of named stages."""
    if profile.error:
        return f"(no profile: {profile.error})"
    lines = [
        f"{profile.samples:,} samples.",
        "",
        "| self time | function |",
        "|---:|---|",
    ]
    for name, count in profile.self_time.most_common(top):
        lines.append(f"| {profile.share(count):.1f}% | `{name}` |")
    if inclusive:
        lines += ["", "| inclusive | stage |", "|---:|---|"]
        for pattern in inclusive:
            count = max((c for n, c in profile.inclusive.items() if n.endswith(pattern)), default=0)
            lines.append(f"| {profile.share(count):.1f}% | `{pattern}` |")
    return "\n".join(lines)
