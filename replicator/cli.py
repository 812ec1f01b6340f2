"""``replicator``: one function per subcommand.

Exit codes: 0 success; 1 the command ran and found a problem (verify found a difference, the
daemon stopped on a fatal error, status --wait timed out); 2 bad input or an error that
stopped the command (config, unreachable service, missing table). Errors are one readable
message on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, NoReturn

import click

from replicator.config import Config, load_config
from replicator.errors import ReplicatorError
from replicator.redact import redact, register_dsn, register_secret

EXIT_PROBLEM = 1
EXIT_ERROR = 2


def _load(path: str) -> Config:
    config = load_config(path)
    register_dsn(config.source.dsn.get_secret_value())
    if config.kafka.sasl_password is not None:
        register_secret(config.kafka.sasl_password.get_secret_value())
    return config


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Replicate LangGraph checkpoints from one store to another while the app keeps running."""


_config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="TOML config file."
)


@cli.command()
@_config_option
@click.option(
    "--log-format", type=click.Choice(["json", "console"]), default=None, help="Overrides [log] format."
)
def run(config_path: str, log_format: str | None) -> None:
    """Run the replication daemon until SIGTERM or SIGINT."""
    from replicator import logs
    from replicator.daemon import Daemon

    config = _load(config_path)
    logs.configure(log_format or config.log.format, config.log.level)
    code = Daemon(config).run()
    sys.exit(code)


@cli.command()
@_config_option
def check(config_path: str) -> None:
    """Check config, source, broker and targets without changing anything but the topic."""
    from replicator import logs
    from replicator.daemon import Daemon

    config = _load(config_path)
    logs.configure("console", "warning")
    Daemon(config).preflight()
    click.echo("ok: source, broker and every target are reachable and set up")


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


@cli.command()
@_config_option
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
    from replicator.state import PostgresStateStore
    from replicator.status import collect, recheck_caught_up, source_head

    config = _load(config_path)
    head, _ = source_head(config)
    state = PostgresStateStore(config.source.dsn.get_secret_value(), create=False)

    def take() -> dict[str, Any]:
        live = _daemon_report(config)
        if live is not None:
            return live if watch else recheck_caught_up(live, head)
        now_head, slot = source_head(config)
        return collect(config, state, head if not watch else now_head, slot)

    try:
        if watch and not as_json:
            from rich.live import Live

            from replicator.render import status_table

            refreshes = 0
            with Live(status_table(take()), refresh_per_second=4) as live_view:
                while count == 0 or refreshes < count - 1:
                    time.sleep(interval)
                    live_view.update(status_table(take()))
                    refreshes += 1
            return
        deadline = time.monotonic() + wait_s
        while True:
            report = take()
            if report["caught_up"] or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        state.close()
    if as_json:
        click.echo(redact(json.dumps(report, sort_keys=True)))
    else:
        from replicator.render import render_status

        render_status(report)
    if wait_s and not report["caught_up"]:
        sys.exit(EXIT_PROBLEM)


@cli.command()
@_config_option
@click.option("--target", "target_name", default=None, help="Only this target (default: every target).")
@click.option("--thread", "threads", multiple=True, help="Only these thread ids.")
def verify(config_path: str, target_name: str | None, threads: tuple[str, ...]) -> None:
    """Compare every thread through both stores' own LangGraph savers; exit 1 on a difference."""
    from connectors.registry import make_sink, make_source
    from replicator.state import MemoryStateStore
    from replicator.verify import verify as run_verify

    config = _load(config_path)
    targets = [config.target(target_name)] if target_name else config.targets
    source = make_source(config.source, MemoryStateStore())
    source.check()
    failed = False
    try:
        for target in targets:
            sink = make_sink(target)
            try:
                sink.check()
                report = run_verify(source, sink, thread_ids=threads or None)
            finally:
                sink.close()
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


@cli.command()
@_config_option
@click.option("--yes", is_flag=True, help="Confirm: drop the slot and every saved position.")
def reset(config_path: str, yes: bool) -> None:
    """Drop the replication slot and saved positions, so the next run copies everything anew."""
    from connectors.sources.postgres.setup import connect
    from replicator.state import STATE_SCHEMA

    config = _load(config_path)
    if not yes:
        _fail("reset drops the replication slot and every saved position; add --yes to confirm")
    with connect(config.source.dsn.get_secret_value(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
            (config.source.slot,),
        )
        conn.execute(f"DROP TABLE IF EXISTS {STATE_SCHEMA}.state")
    click.echo(
        f"dropped slot {config.source.slot!r} and saved positions; the next run starts with a full copy"
    )


@cli.command()
@click.option("--threads", default=20, show_default=True, help="Conversations the demo app writes.")
@click.option("--turns", default=2, show_default=True, help="Turns per conversation.")
def demo(threads: int, turns: int) -> None:
    """Start throwaway Postgres, Kafka-protocol broker and DynamoDB, replicate a live app, verify."""
    from replicator.demo import run_demo

    sys.exit(run_demo(threads=threads, turns=turns))


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_PROBLEM)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except ReplicatorError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
