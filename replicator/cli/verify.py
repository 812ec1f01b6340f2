"""``replicator verify``: every thread compared through both stores' own LangGraph savers."""

from __future__ import annotations

import sys
from typing import Any

import click

from replicator.cli.common import EXIT_PROBLEM, config_option, fail, load
from replicator.cli.threads import selected_threads, threads_from_option, threads_option
from replicator.redact import redact


@click.command()
@config_option
@click.option("--target", "target_name", default=None, help="Only this target (default: every target).")
@threads_option
@threads_from_option
@click.option(
    "--thread", "single", multiple=True, hidden=True, help="One thread id (repeatable; as --threads)."
)
def verify(
    config_path: str,
    target_name: str | None,
    thread_ids: str | None,
    threads_from: str | None,
    single: tuple[str, ...],
) -> None:
    """Compare every thread through both stores' own LangGraph savers; exit 1 on a difference."""
    from connectors.registry import COPY_ONLY, make_sink, make_source, make_thread_source
    from replicator.cutover import new_mark, record_verified
    from replicator.state import MemoryStateStore, open_state_store
    from replicator.verify import verify as run_verify

    if single and (thread_ids is not None or threads_from is not None):
        fail("--thread and --threads/--threads-from name the threads twice: give one of them")
    threads = list(dict.fromkeys(single)) or selected_threads(thread_ids, threads_from) or []
    config = load(config_path)
    targets = [config.target(target_name)] if target_name else config.targets
    if config.source.kind in COPY_ONLY:  # read through its saver only (after replicator copy)
        source: Any = make_thread_source(config.source)
    else:
        source = make_source(config.source, MemoryStateStore())
        source.check()
    failed = False
    try:
        for target in targets:
            sink = make_sink(target)
            try:
                sink.check()
                since = new_mark()
                report = run_verify(source, sink, thread_ids=threads or None)
            finally:
                sink.close()
            if report.ok and not threads:
                # A later cutover's gate then verifies only what was written after this one.
                state = open_state_store(config)
                try:
                    record_verified(state, target.name, since)
                finally:
                    state.close()
            click.echo(
                f"{target.name}: {report.threads} threads, {report.checkpoints} checkpoints, "
                f"{report.writes} writes, {len(report.differences)} differences"
            )
            for difference in report.differences:
                click.echo(f"  {redact(str(difference))}")
            failed = failed or not report.ok
    finally:
        source.close()
    sys.exit(EXIT_PROBLEM if failed else 0)
