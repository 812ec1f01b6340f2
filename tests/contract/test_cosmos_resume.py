"""A conversation moved to Cosmos DB resumes there: the documents the Cosmos target wrote, read by
CosmosDBSaver through ``replicator.target_saver``'s version rule, carry a real graph on from its
pending ``interrupt()`` and through more turns. Over the in-memory container: NOT against a live
account (see cosmos_container.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.types import Command

from connectors.sinks.cosmos import CosmosLayout, CosmosSink, bound_saver
from replicator.config import parse_config
from replicator.embedded.demo_app import build_graph, run_conversation
from replicator.state import SqliteStateStore
from replicator.target_saver import continuing_versions
from tests.contract.cosmos_container import InMemoryContainer
from tests.contract.recording import Recorder, batches

CONFIG = parse_config(
    {
        "source": {"dsn": "postgresql://app@db/app"},
        "kafka": {"bootstrap_servers": "k:9092"},
        "targets": [
            {
                "name": "cosmos",
                "kind": "cosmos",
                "endpoint": "https://not-a-live-account.documents.azure.com:443/",
                "database": "langgraph",
                "container": "checkpoints",
            }
        ],
    },
    env={},
)


def test_a_thread_moved_to_cosmos_resumes_its_interrupt_in_memory_container_not_a_live_account(
    tmp_path: Path,
) -> None:
    recorder = Recorder()  # the source app's saver, turned into change events
    run_conversation(build_graph(recorder), "moved", turns=2, resume=False)  # ends at an interrupt
    container = InMemoryContainer()
    layout = CosmosLayout(
        "cosmos",
        "https://x",
        "langgraph",
        "checkpoints",
        None,
        SqliteStateStore(tmp_path / "s.db"),
        container,
    )
    sink = CosmosSink(layout)
    for batch in batches(recorder.events, 25):
        sink.apply(batch)

    bare = bound_saver(container)
    versions = bare.get_tuple({"configurable": {"thread_id": "moved"}}).checkpoint["channel_versions"]
    with pytest.raises(NotImplementedError):  # CosmosDBSaver counts in ints; the thread has strs
        bare.get_next_version(versions["messages"], None)

    saver = continuing_versions(bound_saver(container), CONFIG)
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": "moved"}}
    pending = graph.get_state(config)
    assert pending.next and any(task.interrupts for task in pending.tasks)
    graph.invoke(Command(resume="yes-on-cosmos"), config)
    after = graph.get_state(config)
    assert not after.next and "approved: yes-on-cosmos" in after.values["messages"]
    counter = after.values["counter"]
    run_conversation(graph, "moved", turns=2)  # more turns, interrupts included
    final = graph.get_state(config)
    assert final.values["counter"] == counter + 2 and not final.next
    assert saver.get_tuple(config).checkpoint["channel_versions"]["messages"] > versions["messages"]
