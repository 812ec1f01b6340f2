"""``replicator demo``: throwaway services, a live app, replication and verify, end to end."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--threads", default=20, show_default=True, help="Conversations the demo app writes.")
@click.option("--turns", default=2, show_default=True, help="Turns per conversation.")
def demo(threads: int, turns: int) -> None:
    """Start throwaway Postgres, Kafka-protocol broker and DynamoDB, replicate a live app, verify."""
    from replicator.embedded.demo import run_demo

    sys.exit(run_demo(threads=threads, turns=turns))
