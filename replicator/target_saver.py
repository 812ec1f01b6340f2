"""The saver an app uses once it has moved: the target's own saver, continuing the source's
channel versions.

    from replicator.target_saver import target_saver

    with target_saver("replicator.toml") as saver:  # or target_saver(path, "dynamo")
        graph = builder.compile(checkpointer=saver)

Channel versions live inside every stored checkpoint, and savers disagree on their type:
PostgresSaver, SqliteSaver and InMemorySaver write strings (``"00000000000000000000000000000003.0.5"``),
the DynamoDB, Cosmos, MongoDB and plain-Redis savers integers. A copied thread keeps the versions
the source wrote, so the target's own ``get_next_version`` would fail on its next step
(``NotImplementedError`` for a str, ``TypeError`` comparing str with int). This saver is the
target's official saver with one change: its ``get_next_version`` is the source saver's, which
continues any version it is given. Everything else (reads, writes, layout) is the target saver's.
``RoutingSaver`` does the same in every phase of a migration; this is for after it, when the
source and the replicator are gone. It needs no connection to the source.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

from replicator.config import Config, load_config
from replicator.errors import ErrorKind, ReplicatorError


def continuing_versions(saver: BaseCheckpointSaver[str], config: Config) -> BaseCheckpointSaver[str]:
    """``saver`` with the source saver's ``get_next_version`` (in place; returned for chaining)."""
    from connectors.registry import next_version

    saver.get_next_version = next_version(config.source)  # type: ignore[method-assign, assignment]
    return saver


@contextmanager
def target_saver(
    config: str | Path | Config, target: str | None = None
) -> Iterator[BaseCheckpointSaver[str]]:
    """The official saver of ``target`` (the only target when None), opened from the config file,
    with the source's channel versions; closed when the block ends."""
    from connectors.registry import make_sink

    cfg = config if isinstance(config, Config) else load_config(config)
    if target is None:
        if len(cfg.targets) > 1:
            names = ", ".join(t.name for t in cfg.targets)
            raise ReplicatorError(
                ErrorKind.CONFIG, f"several targets ({names}): name the one the app moved to"
            )
        target = cfg.targets[0].name
    sink = make_sink(cfg.target(target))
    try:
        yield continuing_versions(sink.saver(), cfg)
    finally:
        sink.close()
