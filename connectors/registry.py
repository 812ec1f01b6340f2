"""The only place that maps a ``kind`` to a connector class.

A new source or target adds its config model to the unions in ``replicator.config`` and one
entry here. Classes are imported when first built, so loading a config never imports a
driver it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from replicator.errors import ErrorKind, ReplicatorError

if TYPE_CHECKING:
    from connectors.base import Sink, Source, Switchboard, ThreadSource
    from connectors.sinks.cosmos_config import CosmosTargetConfig
    from connectors.sinks.dynamodb_config import DynamoDBTargetConfig
    from connectors.sinks.postgres_config import PostgresTargetConfig
    from connectors.sinks.saver_config import SaverTargetConfig
    from connectors.sinks.sqlite_config import SqliteTargetConfig
    from replicator.config import SourceConfig, TargetConfig
    from replicator.state import StateStore

SOURCES: dict[str, str] = {
    "postgres": "connectors.sources.postgres.source:PostgresSource",
    "memory": "connectors.sources.memory.source:MemorySource",
    "sqlite": "connectors.sources.sqlite.source:SqliteSource",
}


def _dynamodb(config: DynamoDBTargetConfig) -> Sink:
    from connectors.sinks.dynamodb import DynamoDBSink

    return DynamoDBSink(
        name=config.name,
        table=config.table,
        region=config.region,
        endpoint_url=config.endpoint_url,
        s3_bucket=config.s3_bucket,
        s3_key_prefix=config.s3_key_prefix,
        s3_endpoint_url=config.s3_endpoint_url or config.endpoint_url,
        concurrency=config.concurrency,
        blob_cache_bytes=config.blob_cache_bytes,
    )


def _postgres(config: PostgresTargetConfig) -> Sink:
    from connectors.sinks.postgres import PostgresSink

    return PostgresSink(
        config.name,
        config.dsn.get_secret_value(),
        config.schema_name,
        blob_cache_bytes=config.blob_cache_bytes,
    )


def _sqlite(config: SqliteTargetConfig) -> Sink:
    from connectors.sinks.sqlite import SqliteSink

    return SqliteSink(config.name, config.path, blob_cache_bytes=config.blob_cache_bytes)


def _saver(config: SaverTargetConfig, state: StateStore | None) -> Sink:
    from connectors.sinks.saver import SaverSink

    return SaverSink(config.name, config.factory, state, blob_cache_bytes=config.blob_cache_bytes)


def _cosmos(config: CosmosTargetConfig, state: StateStore | None) -> Sink:
    try:
        import azure.cosmos  # noqa: F401
        import langgraph_checkpoint_cosmosdb  # noqa: F401
    except ImportError as exc:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"targets[{config.name}] is a Cosmos DB target, which needs {exc.name}: "
            "pip install 'langgraph-replicator[cosmos]'",
        ) from None
    from connectors.sinks.cosmos import CosmosLayout, CosmosSink

    key = config.key.get_secret_value() if config.key else None
    return CosmosSink(
        CosmosLayout(config.name, config.endpoint, config.database, config.container, key, state),
        blob_cache_bytes=config.blob_cache_bytes,
    )


SINKS: dict[str, Callable[[Any, StateStore | None], Sink]] = {
    "dynamodb": lambda config, _: _dynamodb(config),
    "postgres": lambda config, _: _postgres(config),
    "sqlite": lambda config, _: _sqlite(config),
    "saver": _saver,
    "cosmos": _cosmos,
}


# Sources read one thread at a time by ``replicator copy`` (``connectors.base.ThreadSource``).
THREAD_SOURCES: dict[str, str] = {
    "postgres": "connectors.sources.postgres.threads:PostgresThreads",
    "saver": "connectors.sources.saver.threads:SaverThreads",
    "sqlite": "connectors.sources.sqlite.threads:SqliteThreads",
}
# Sources with no change log: copied once, never streamed.
COPY_ONLY = {"saver": "a saver read through its own API has no change log to stream"}


def make_thread_source(config: SourceConfig) -> ThreadSource:
    if config.kind not in THREAD_SOURCES:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"source.kind {config.kind!r} cannot be copied by `replicator copy`; "
            f"one of: {', '.join(THREAD_SOURCES)}",
        )
    module, name = THREAD_SOURCES[config.kind].split(":")
    source: ThreadSource = getattr(import_module(module), name)(config)
    return source


def source_class(kind: str) -> Any:
    """The class of a source kind (its static ``format_position`` needs no connection)."""
    if kind in COPY_ONLY:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"source.kind {kind!r}: {COPY_ONLY[kind]}: `replicator copy --config FILE` copies it "
            "to every target once (stop the app's writes first); `replicator run` cannot stream it",
        )
    if kind not in SOURCES:
        raise ReplicatorError(
            ErrorKind.CONFIG, f"source.kind {kind!r} is not supported; one of: {', '.join(SOURCES)}"
        )
    module, name = SOURCES[kind].split(":")
    return getattr(import_module(module), name)


def next_version(config: SourceConfig) -> Callable[[Any, None], Any]:
    """The source saver's ``get_next_version``, without connecting: a thread copied elsewhere keeps
    the kind of versions it began with (``replicator.target_saver``)."""
    if config.kind == "saver":  # only the saver itself knows: build it (factories connect lazily)
        from connectors.sources.saver.threads import saver_next_version

        return saver_next_version(config)
    version: Callable[[Any, None], Any] = source_class(config.kind).next_version
    return version


def make_source(config: SourceConfig, state: StateStore) -> Source:
    source: Source = source_class(config.kind)(config, state)
    return source


SWITCHBOARDS: dict[str, str] = {"postgres": "connectors.sources.postgres.switchboard:PostgresSwitchboard"}


def make_switchboard(config: SourceConfig, *, autocreate: bool = True) -> Switchboard:
    """The migration record and fences of the configured source (cutover, rollback, routing)."""
    if config.kind not in SWITCHBOARDS:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"source.kind {config.kind!r} cannot be cut over yet; "
            f"cutover needs one of: {', '.join(SWITCHBOARDS)}",
        )
    module, name = SWITCHBOARDS[config.kind].split(":")
    board: Switchboard = getattr(import_module(module), name)(config, autocreate=autocreate)
    return board


def position_format(config: SourceConfig) -> Callable[[int], str]:
    """How the configured source writes its positions for people, without connecting to it."""
    formatter: Callable[[int], str] = source_class(config.kind).format_position
    return formatter


def captured_in_app(config: SourceConfig) -> bool:
    """Whether the app itself publishes this source's changes (``kind = "memory"``): the daemon
    then runs no publisher, and the head is the topic's end (``replicator.memory_status``)."""
    if config.kind not in SOURCES:
        return False
    return bool(getattr(source_class(config.kind), "captured_in_app", False))


def make_sink(config: TargetConfig, state: StateStore | None = None) -> Sink:
    """The sink of a target. ``state`` is the replicator's state store, where a target with no
    place of its own for blobs keeps them (``kind = "saver"``); reading needs none."""
    build = SINKS.get(config.kind)
    if build is None:
        raise ReplicatorError(
            ErrorKind.CONFIG, f"targets[{config.name}].kind {config.kind!r} is not supported"
        )
    return build(config, state)
