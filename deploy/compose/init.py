"""One-shot set-up of the compose trial, then ``replicator check``.

What the daemon does not create, because in production the app and the operator do: the
PostgresSaver tables (the app's ``PostgresSaver.setup()``; capture refuses to start without
them) and the DynamoDB table of every DynamoDB target (key ``PK``/``SK``, strings). The Kafka
topic is created by the daemon itself. Then the same preflight as ``replicator check``: wal_level,
tables, replication rights, broker, targets.

Usage: ``python init.py CONFIG`` (the compose service ``init`` runs it once).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _retry(what: str, attempt: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return attempt()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"init: {what} failed for {timeout_s:.0f} s: {exc}") from None
            time.sleep(1.0)


def main(path: str) -> None:
    import boto3
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    from replicator.config import DynamoDBTargetConfig, load_config
    from replicator.daemon import Daemon

    config = load_config(path)
    dsn = config.source.dsn.get_secret_value()  # type: ignore[union-attr]

    def saver_tables() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            PostgresSaver(conn).setup()  # type: ignore[arg-type]

    _retry("creating the PostgresSaver tables", saver_tables)
    print("init: PostgresSaver tables ready", flush=True)
    for target in config.targets:
        if not isinstance(target, DynamoDBTargetConfig):
            continue
        client = boto3.client("dynamodb", region_name=target.region, endpoint_url=target.endpoint_url)

        def table(client: Any = client, name: str = target.table) -> None:
            try:
                client.create_table(
                    TableName=name,
                    KeySchema=[
                        {"AttributeName": "PK", "KeyType": "HASH"},
                        {"AttributeName": "SK", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "PK", "AttributeType": "S"},
                        {"AttributeName": "SK", "AttributeType": "S"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            except client.exceptions.ResourceInUseException:
                pass
            client.get_waiter("table_exists").wait(TableName=name)

        _retry(f"creating DynamoDB table {target.table!r}", table)
        print(f"init: DynamoDB table {target.table!r} ready", flush=True)
    _retry("replicator check", Daemon(config).preflight)
    print("init: ok: source, broker and every target are reachable and set up", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/etc/replicator/replicator.toml")
