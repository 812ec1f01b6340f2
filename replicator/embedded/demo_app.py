"""A small real LangGraph app: the workload of the demo, the tests and the benchmarks.

It exercises what a replicator must carry: a subgraph (non-empty ``checkpoint_ns``), an
``interrupt()`` that leaves pending writes, a parallel branch, unicode, and optionally large
binary values (S3 offload, split Kafka records).
"""

from __future__ import annotations

import operator
import os
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt


class _SubState(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]
    approved: str


class _State(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]
    attachment: bytes
    counter: int
    note: str
    approved: str


def _ask(state: _SubState) -> dict[str, Any]:
    answer = interrupt({"question": "approve? ✅", "seen": len(state.get("messages", []))})
    return {"messages": [f"approved: {answer}"], "approved": str(answer)}


def _prepare(state: _State) -> dict[str, Any]:
    counter = state.get("counter", 0) + 1
    return {"messages": [f"prepare ✓ #{counter}"], "counter": counter}


def _side(state: _State) -> dict[str, Any]:
    return {"messages": ["side branch 🚀"], "note": "ünïcödé · 日本語 · emoji 🧠"}


def _finish(state: _State) -> dict[str, Any]:
    return {"messages": [f"done after {state.get('counter', 0)} turns"]}


def build_graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    sub = StateGraph(_SubState)
    sub.add_node("ask", _ask)
    sub.add_edge(START, "ask")
    sub.add_edge("ask", END)
    graph = StateGraph(_State)
    graph.add_node("prepare", _prepare)
    graph.add_node("review", sub.compile())
    graph.add_node("side", _side)
    graph.add_node("finish", _finish)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "review")
    graph.add_edge("prepare", "side")
    graph.add_edge(["review", "side"], "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)


def run_conversation(
    graph: Any, thread_id: str, *, turns: int = 1, attachment_bytes: int = 0, resume: bool = True
) -> None:
    """Each turn stops at the interrupt (pending writes stay), then resumes unless told not to."""
    config = {"configurable": {"thread_id": thread_id}}
    for turn in range(turns):
        attachment = os.urandom(attachment_bytes) if attachment_bytes else f"small {turn}".encode()
        graph.invoke({"messages": [f"hello {turn} from {thread_id} 👋"], "attachment": attachment}, config)
        if resume or turn < turns - 1:
            graph.invoke(Command(resume=f"yes-{turn}"), config)
