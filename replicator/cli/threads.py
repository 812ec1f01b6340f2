"""Thread selection shared by ``copy``, ``cutover`` and ``verify``: ``--threads a,b`` or
``--threads-from FILE`` (one id per line; blank lines and lines starting with # skipped)."""

from __future__ import annotations

from pathlib import Path

import click

from replicator.cli.common import fail

threads_option = click.option(
    "--threads", "thread_ids", default=None, help="These thread ids, separated by commas."
)
threads_from_option = click.option(
    "--threads-from",
    type=click.Path(dir_okay=False),
    default=None,
    help="The thread ids in this file, one per line.",
)


def selected_threads(ids: str | None, from_file: str | None) -> list[str] | None:
    """The threads named (in order, each once); None when neither option was given."""
    if ids is not None and from_file is not None:
        fail("--threads and --threads-from name the threads twice: give one of them")
    if ids is not None:
        wanted = [t.strip() for t in ids.split(",") if t.strip()]
    elif from_file is not None:
        try:
            text = Path(from_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            fail(f"--threads-from {from_file}: cannot read it: {reason}")
        wanted = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        return None
    if not wanted:
        fail("no thread ids given: --threads takes ids separated by commas, --threads-from one per line")
    return list(dict.fromkeys(wanted))
