"""``replicator status``: positions and lag of every stage, from the daemon or the state store."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from replicator.cli.common import EXIT_PROBLEM, config_option, load
from replicator.config import Config
from replicator.redact import redact


def _daemon_report(config: Config) -> dict[str, Any] | None:
    """The running daemon's own report (live lag, stages), when it serves one."""
    import urllib.error
    import urllib.request

    from replicator.http import parse_listen

    if not config.http.listen:
        return None
    host, port = parse_listen(config.http.listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=2) as response:
            report: dict[str, Any] = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return report if "targets" in report else None


def members_table(report: dict[str, Any]) -> Any:
    """The apply processes of every target's consumer group (``members``), one row each."""
    from rich.table import Table

    table = Table(title="appliers (consumer group members)", title_justify="left")
    for column in ("target", "member", "host", "pid", "partitions", "state", "seen"):
        table.add_column(column)
    for name, target in report.get("targets", {}).items():
        members = target.get("members")
        if members is None:  # a report from an older daemon
            continue
        if not members:
            table.add_row(name, "(no live member)", "", "", "", "", "")
        for member in members:
            table.add_row(
                name,
                str(member.get("member_id") or member.get("member", "")),
                str(member.get("host", "")),
                str(member.get("pid", "")),
                ",".join(str(p) for p in member.get("partitions") or []) or "-",
                str(member.get("state", "")),
                f"{member.get('seen_s_ago', 0)} s ago",
            )
    return table


def settle_s(config: Config) -> float:
    """How long a status call may wait for the pipeline to carry its head marker through: two
    heartbeats (the daemon's report refreshes once a second), at least two seconds."""
    return max(2.0, 2 * float(getattr(config.source, "heartbeat_interval_s", 1.0)))


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--wait", "wait_s", type=float, default=0.0, help="Poll until caught up, at most this many seconds."
)
@click.option("--watch", is_flag=True, help="Refresh the table until interrupted.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--count", type=int, default=0, help="With --watch: stop after this many refreshes (0: never).")
def status(config_path: str, as_json: bool, wait_s: float, watch: bool, interval: float, count: int) -> None:
    """Positions and lag of every stage; caught_up when every target applied what the source had.

    Asks the running daemon's HTTP endpoint when [http] listen is set and it answers; otherwise
    reads the positions the stages persisted.
    """
    from connectors.registry import make_source
    from replicator.state import open_state_store
    from replicator.status import (
        collect,
        judge_idle_source,
        migration_view,
        open_switchboard,
        recheck_caught_up,
    )

    config = load(config_path)
    state = open_state_store(config, create=False)
    source = make_source(config.source, state)
    board = open_switchboard(config)
    try:
        # The head is a marker the pipeline carries (``Source.head``): caught up means applied
        # up to it, which a healthy pipeline shows within its end-to-end lag. So even a plain
        # call waits that long (at most ``settle_s``) before it answers "not caught up".
        heads = [source.head()]

        def take() -> dict[str, Any]:
            live = _daemon_report(config)
            if watch:  # judged against the previous refresh's head, as the daemon does
                heads.append(source.head())
            judged = heads[-2] if len(heads) > 1 else heads[0]
            if live is not None:
                report = recheck_caught_up(live, judged)
            else:
                report = collect(config, state, judged, source.describe())
            # Read now, not from the daemon's last round: a script decides the switch on it.
            report["migration"] = migration_view(board, state)
            return report

        if watch and not as_json:
            from rich.console import Group
            from rich.live import Live

            from replicator.render import status_table

            def view(report: dict[str, Any]) -> Group:
                return Group(status_table(report), members_table(report))

            refreshes = 0
            with Live(view(take()), refresh_per_second=4) as live_view:
                while count == 0 or refreshes < count - 1:
                    time.sleep(interval)
                    live_view.update(view(take()))
                    refreshes += 1
            return
        deadline = time.monotonic() + max(wait_s, settle_s(config))
        while True:
            report = take()
            if report["caught_up"] or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        report = judge_idle_source(report, source)
    finally:
        source.close()
        state.close()
        if board is not None:
            board.close()
    if as_json:
        click.echo(redact(json.dumps(report, sort_keys=True)))
    else:
        from rich.console import Console

        from replicator.render import render_status

        console = Console()
        render_status(report, console)
        console.print(members_table(report))
    if wait_s and not report["caught_up"]:
        sys.exit(EXIT_PROBLEM)
