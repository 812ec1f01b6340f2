"""Quick figures for the core path (snapshot rows/s, streaming events/s, end-to-end lag).

    python -m bench.quick [--threads 400] [--live 200]

Starts its own Postgres, broker and moto; prints one line per figure. Absolute numbers on
this machine, for the record; bench/ proper compares against baselines in the same run.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

from replicator import logs
from replicator.config import parse_config
from replicator.daemon import Daemon
from replicator.embedded import (
    EmbeddedBroker,
    EmbeddedMoto,
    EmbeddedPostgres,
    create_dynamodb_table,
    create_s3_bucket,
)
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import PostgresStateStore
from replicator.status import collect, source_head


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=400)
    parser.add_argument("--live", type=int, default=200)
    args = parser.parse_args()
    logs.configure("console", "warning")
    with EmbeddedPostgres() as pg, EmbeddedBroker() as broker, EmbeddedMoto() as moto:
        os.environ.update(moto.aws_env())
        dsn = pg.create_database("bench")
        create_dynamodb_table(moto.endpoint_url, "cp")
        create_s3_bucket(moto.endpoint_url, "off")
        conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn)
        saver.setup()
        graph = build_graph(saver)
        for i in range(args.threads):
            run_conversation(graph, f"s{i}", turns=1)
        rows = sum(
            conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]  # type: ignore[index]
            for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        )
        config = parse_config(
            {
                "source": {"dsn": dsn, "heartbeat_interval_s": 0.2, "snapshot_chunk_rows": 5000},
                "kafka": {"bootstrap_servers": broker.bootstrap_servers, "partitions": 4},
                "targets": [
                    {"name": "d", "table": "cp", "endpoint_url": moto.endpoint_url, "s3_bucket": "off"}
                ],
            }
        )
        state = PostgresStateStore(dsn)
        daemon = Daemon(config)
        started = time.monotonic()
        runner = threading.Thread(target=lambda: daemon.run(install_signals=False), daemon=True)
        runner.start()
        while (state.get("source") or {}).get("snapshot") != "done":
            time.sleep(0.05)
        snapshot_s = time.monotonic() - started
        head, slot = source_head(config)
        while not collect(config, state, head, slot)["caught_up"]:
            time.sleep(0.05)
        copy_s = time.monotonic() - started
        print(
            f"snapshot: {rows} rows captured+published in {snapshot_s:.2f}s = {rows / snapshot_s:,.0f} rows/s"
        )
        print(f"initial copy applied to DynamoDB (moto): {copy_s:.2f}s = {rows / copy_s:,.0f} rows/s")
        before = int((state.get("publisher") or {}).get("events", 0))
        t0 = time.monotonic()
        for i in range(args.live):
            run_conversation(graph, f"l{i}", turns=1)
        write_s = time.monotonic() - t0
        head, slot = source_head(config)
        while not collect(config, state, head, slot)["caught_up"]:
            time.sleep(0.02)
        total_s = time.monotonic() - t0
        events = int((state.get("publisher") or {}).get("events", 0)) - before
        print(
            f"streaming: {events} events from {args.live} live conversations; app wrote for {write_s:.2f}s, "
            f"target caught up {total_s - write_s:.2f}s after the last write; "
            f"{events / total_s:,.0f} events/s end to end (app-bound)"
        )
        # Lag of one small transaction at rest: commit -> durable in the target.
        lags = []
        for i in range(20):
            t1 = time.monotonic()
            run_conversation(graph, f"p{i}", turns=1)
            head, slot = source_head(config)
            while not collect(config, state, head, slot)["caught_up"]:
                time.sleep(0.005)
            lags.append(time.monotonic() - t1)
        lags.sort()
        p50, worst = lags[10] * 1000, lags[-1] * 1000
        print(f"conversation written -> applied in DynamoDB: p50 {p50:.0f} ms, max {worst:.0f} ms")
        daemon.stop_event.set()
        runner.join(30)
        state.close()
        conn.close()


if __name__ == "__main__":
    main()
