"""``replicator copy`` tells an unchanged thread by a digest: it must be the same for the same
data in another process (a saver source re-serializes values, and sets iterate in hash order,
which differs between processes) and differ when anything in the thread differs."""

from __future__ import annotations

import subprocess
import sys

from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint

from connectors.langgraph.tuples import tuples_digest

_SCRIPT = """
from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from connectors.langgraph.tuples import tuples_digest
checkpoint = empty_checkpoint()
checkpoint["id"], checkpoint["ts"] = "c1", "2026-12-01T00:00:00+00:00"
checkpoint["channel_values"] = {"tags": {"alpha", "beta", "gamma", "delta"}, "m": [AIMessage("hi ü")]}
conf = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}
tup = CheckpointTuple(conf, checkpoint, {"step": 1, "source": "loop"}, None, [("task", "x", {"a", "b"})])
print(tuples_digest([tup]))
"""


def _digest_in_a_process(seed: str) -> str:
    env = {"PYTHONHASHSEED": seed, "PYTHONPATH": "."}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_the_digest_is_the_same_in_processes_with_different_hash_seeds() -> None:
    digests = {_digest_in_a_process(seed) for seed in ("1", "2", "3", "4")}
    assert len(digests) == 1


def test_the_digest_changes_with_a_value_metadata_or_a_write() -> None:
    def tup(
        value: object, step: int = 1, writes: list[tuple[str, str, object]] | None = None
    ) -> CheckpointTuple:
        checkpoint = empty_checkpoint()
        checkpoint["id"], checkpoint["ts"] = "c1", "2026-12-01T00:00:00+00:00"
        checkpoint["channel_values"] = {"v": value}
        conf = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}
        return CheckpointTuple(conf, checkpoint, {"step": step}, None, writes or [])  # type: ignore[arg-type]

    base = tuples_digest([tup({"x"})])
    assert base == tuples_digest([tup({"x"})])
    assert base != tuples_digest([tup({"y"})])
    assert base != tuples_digest([tup({"x"}, step=2)])
    assert base != tuples_digest([tup({"x"}, writes=[("task", "ch", 1)])])
