"""The Postgres source marks channels without a blob only where PostgresSaver wrote none."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.postgres import PostgresSaver

from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.source import PostgresSource
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.events import CheckpointChange, Committed
from replicator.state import MemoryStateStore

pytestmark = pytest.mark.integration


def test_marked_channels_have_no_blob_row_and_a_streaming_app_gets_marks(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        PostgresSaver(conn).setup()  # type: ignore[arg-type]
    config = PostgresSourceConfig(dsn=pg_dsn, slot="lgr_no_blob")  # type: ignore[arg-type]
    source = PostgresSource(config, MemoryStateStore())
    stream = source.stream()
    try:
        while next(stream) is not None:  # the (empty) initial copy, up to the first idle read
            pass
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            graph = build_graph(PostgresSaver(conn))  # type: ignore[arg-type]
            for i in range(3):  # subgraphs and an interrupt in every turn
                run_conversation(graph, f"nb-{i} ✓", turns=2, resume=i != 0)
        head = source.head()
        checkpoints: list[CheckpointChange] = []
        for item in stream:
            if isinstance(item, CheckpointChange):
                checkpoints.append(item)
            elif isinstance(item, Committed) and item.position >= head:
                break
        marked = [(c, channel) for c in checkpoints for channel in c.no_blob]
        with psycopg.connect(pg_dsn) as conn:
            blobs = {
                tuple(row)
                for row in conn.execute(
                    "SELECT thread_id, checkpoint_ns, channel, version FROM checkpoint_blobs"
                )
            }
        assert blobs, "the app wrote blobs"
        wrong = [
            (c.key, channel)
            for c, channel in marked
            if (c.key.thread_id, c.key.checkpoint_ns, channel, _version(c, channel)) in blobs
        ]
        assert wrong == [], "a channel marked as without blob has one"
        assert [c.no_blob for c in checkpoints] == _expected_marks(checkpoints, blobs)
        assert len(marked) > len(checkpoints) / 2, "most steps consume a trigger"
        assert source.no_blob_marker.enabled
    finally:
        stream.close()
        source.close()  # the test database goes with its slot


def _expected_marks(
    checkpoints: list[CheckpointChange], blobs: set[tuple[Any, ...]]
) -> list[tuple[str, ...]]:
    """From the saver's own tables: for each checkpoint whose parent was streamed just before
    it in its chain, its channels not inline with either a version newer than the parent's and
    no blob row, or the version marked in the parent."""
    last: dict[tuple[str, str], CheckpointChange] = {}
    last_marks: dict[tuple[str, str], dict[str, Any]] = {}
    expected: list[tuple[str, ...]] = []
    for c in checkpoints:
        assert c.checkpoint is not None
        chain = (c.key.thread_id, c.key.checkpoint_ns)
        parent = last.get(chain)
        versions = c.checkpoint["channel_versions"]
        marks: list[str] = []
        if parent is not None and parent.key.checkpoint_id == c.parent_checkpoint_id:
            assert parent.checkpoint is not None
            top = max(parent.checkpoint["channel_versions"].values())
            inline = c.checkpoint["channel_values"]
            carried = last_marks.get(chain, {})
            marks = [
                ch
                for ch, v in versions.items()
                if (ch not in inline or inline[ch] is True)
                and (carried.get(ch) == v or (v > top and (*chain, ch, v) not in blobs))
            ]
        expected.append(tuple(marks))
        last[chain] = c
        last_marks[chain] = {ch: versions[ch] for ch in marks}
    return expected


def _version(checkpoint: CheckpointChange, channel: str) -> Any:
    assert checkpoint.checkpoint is not None
    return checkpoint.checkpoint["channel_versions"][channel]
