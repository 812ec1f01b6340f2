"""Builds the configured source and sinks; the only place that maps a ``kind`` to a class."""

from __future__ import annotations

from connectors.base import Sink, Source
from replicator.config import Config, PostgresSourceConfig, TargetConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.state import StateStore


def make_source(config: PostgresSourceConfig, state: StateStore) -> Source:
    if config.kind == "postgres":
        from connectors.sources.postgres.source import PostgresSource

        return PostgresSource(config, state)
    raise ReplicatorError(ErrorKind.CONFIG, f"source.kind {config.kind!r} is not supported")


def make_sink(config: TargetConfig) -> Sink:
    if config.kind == "dynamodb":
        from connectors.sinks.dynamodb import DynamoDBSink

        return DynamoDBSink(
            name=config.name,
            table=config.table,
            region=config.region,
            endpoint_url=config.endpoint_url,
            s3_bucket=config.s3_bucket,
            s3_key_prefix=config.s3_key_prefix,
            s3_endpoint_url=config.s3_endpoint_url or config.endpoint_url,
        )
    raise ReplicatorError(ErrorKind.CONFIG, f"targets[{config.name}].kind {config.kind!r} is not supported")


def state_dsn(config: Config) -> str:
    return config.source.dsn.get_secret_value()
