"""The Postgres source marks a checkpoint's channels that have no blob only where that is certain."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from connectors.sources.postgres.no_blob import NoBlobMarker
from replicator.events import BlobChange, BlobKey, CheckpointChange, CheckpointKey, Op, SourceMeta

META = SourceMeta(position=1)
_XIDS = itertools.count(100)


def v(n: int) -> str:
    """PostgresSaver's version text: a zero-padded counter and a random fraction."""
    return f"{n:032}.0.{n * 7919 % 1000:016}"


def checkpoint(cid: str, parent: str | None, versions: dict[str, Any], inline: dict[str, Any] | None = None,
               thread: str = "t", ns: str = "", xid: int | None = None) -> CheckpointChange:  # fmt: skip
    """A checkpoint as ``put`` commits it: in a transaction of its own, unless ``xid`` is given."""
    return CheckpointChange(
        op=Op.UPSERT,
        key=CheckpointKey(thread, ns, cid),
        source=SourceMeta(position=1, xid=next(_XIDS) if xid is None else xid),
        parent_checkpoint_id=parent,
        checkpoint={"v": 4, "id": cid, "channel_versions": versions, "channel_values": inline or {}},
        metadata={},
    )


def blob(channel: str, version: str, thread: str = "t", ns: str = "") -> BlobChange:
    return BlobChange(
        op=Op.UPSERT, key=BlobKey(thread, ns, channel, version), source=META, type="msgpack", data=b"\x90"
    )


def test_new_versions_without_a_blob_row_since_the_parent_are_marked() -> None:
    marker = NoBlobMarker()
    assert marker.checkpoint(checkpoint("c1", None, {"__start__": v(1)})).no_blob == (), "no parent seen"
    marker.blob(blob("messages", v(2)))
    step = checkpoint("c2", "c1", {"__start__": v(2), "messages": v(2), "branch:to:agent": v(2), "n": v(2)},
                      inline={"n": 3})  # fmt: skip
    assert marker.checkpoint(step).no_blob == ("__start__", "branch:to:agent"), (
        "messages has its blob row; n is inline"
    )
    unchanged_channel = checkpoint("c3", "c2", {"__start__": v(2), "messages": v(2), "agent": v(3)})
    assert marker.checkpoint(unchanged_channel).no_blob == ("__start__", "agent"), (
        "a marked version keeps its mark; messages keeps its blob"
    )
    fired = checkpoint(
        "c4", "c3", {"__start__": v(2), "messages": v(2), "agent": v(3)}, inline={"__start__": 1}
    )
    assert marker.checkpoint(fired).no_blob == ("agent",), "inline now"


def test_nothing_is_marked_without_the_parent_in_this_session() -> None:
    marker = NoBlobMarker()
    assert marker.checkpoint(checkpoint("c5", "c4", {"a": v(5)})).no_blob == (), "resumed after the parent"
    marker.checkpoint(checkpoint("c6", "c5", {"a": v(6)}))
    fork = checkpoint("c7", "c5", {"a": v(7)})  # a fork from an older checkpoint
    assert marker.checkpoint(fork).no_blob == ()
    other_ns = checkpoint("s1", "c7", {"a": v(8)}, ns="sub:1")
    assert marker.checkpoint(other_ns).no_blob == (), "chains are per namespace"


def test_versions_that_do_not_grow_or_compare_are_not_marked() -> None:
    marker = NoBlobMarker()
    marker.checkpoint(checkpoint("c1", None, {"a": v(5)}))
    assert marker.checkpoint(checkpoint("c2", "c1", {"a": v(5), "b": v(3)})).no_blob == (), (
        "older than the parent"
    )
    marker.checkpoint(checkpoint("i1", None, {"a": 1}, thread="ints"))
    assert marker.checkpoint(checkpoint("i2", "i1", {"a": 2, "b": 2}, thread="ints")).no_blob == ("a", "b")
    marker.checkpoint(checkpoint("m1", None, {"a": 1, "b": "x"}, thread="mixed"))
    assert marker.checkpoint(checkpoint("m2", "m1", {"a": 2}, thread="mixed")).no_blob == ()


def test_a_deleted_checkpoint_forgets_its_chain() -> None:
    marker = NoBlobMarker()
    marker.checkpoint(checkpoint("c1", None, {"a": v(1)}))
    assert marker.checkpoint(checkpoint("c2", "c1", {"a": v(2)})).no_blob == ("a",)
    marker.checkpoint(CheckpointChange(op=Op.DELETE, key=CheckpointKey("t", "", "c2"), source=META))
    assert marker.bytes == 0, "the deleted chain's bytes are no longer counted"
    assert marker.checkpoint(checkpoint("c3", "c2", {"a": v(3)})).no_blob == ()


def test_a_blob_after_its_marked_checkpoint_sends_it_again_unmarked_and_stops_marking() -> None:
    marker = NoBlobMarker()
    marker.checkpoint(checkpoint("c1", None, {"a": v(1)}))
    sent = marker.checkpoint(checkpoint("c2", "c1", {"a": v(2)}))
    assert sent.no_blob == ("a",)
    again = marker.blob(blob("a", v(2)))
    assert again is not None and again.no_blob == () and again.key == sent.key
    assert not marker.enabled
    marker.checkpoint(checkpoint("c3", "c2", {"a": v(3)}))
    assert marker.checkpoint(checkpoint("c4", "c3", {"a": v(4)})).no_blob == ()


def test_the_remembered_chains_are_bounded() -> None:
    marker = NoBlobMarker(max_chains=2)
    for thread in ("a", "b", "c"):
        marker.checkpoint(checkpoint("c1", None, {"x": v(1)}, thread=thread))
    assert marker.checkpoint(checkpoint("c2", "c1", {"x": v(2)}, thread="a")).no_blob == (), "forgotten"
    assert marker.checkpoint(checkpoint("c2", "c1", {"x": v(2)}, thread="c")).no_blob == ("x",)


def test_the_bytes_the_chains_hold_are_bounded() -> None:
    """Marked checkpoints are kept (to send again if contradicted): their bytes bound the chains."""
    big = {"n": "x" * 4000}  # inline values travel in the checkpoint
    one = NoBlobMarker()
    one.checkpoint(checkpoint("c1", None, {"a": v(1)}, inline=big, thread="probe"))
    one.checkpoint(checkpoint("c2", "c1", {"a": v(2)}, inline=big, thread="probe"))
    per_chain = one.bytes
    assert per_chain > 4000, "a marked checkpoint counts its encoded size"
    marker = NoBlobMarker(max_bytes=3 * per_chain)
    for thread in "abcde":
        marker.checkpoint(checkpoint("c1", None, {"a": v(1)}, inline=big, thread=thread))
        marked = marker.checkpoint(checkpoint("c2", "c1", {"a": v(2)}, inline=big, thread=thread))
        assert marked.no_blob == ("a",)
        assert marker.bytes <= 3 * per_chain
    assert marker.checkpoint(checkpoint("c3", "c2", {"a": v(3)}, thread="a")).no_blob == (), "forgotten"
    kept = marker.checkpoint(checkpoint("c3", "c2", {"a": v(3)}, inline=big, thread="e"))
    assert kept.no_blob == ("a",), "the most recent chains are kept"
    again = marker.blob(blob("a", v(3), thread="e"))
    assert again == msgspec.structs.replace(kept, no_blob=()), "sent again exactly as it was, unmarked"


def test_checkpoints_written_in_one_transaction_are_not_marked() -> None:
    """A bulk ``INSERT ... SELECT`` of a thread: blobs first, then its checkpoints, one transaction."""
    marker = NoBlobMarker()
    for n in (1, 2, 3):
        marker.blob(blob("messages", v(n)))
    marker.checkpoint(checkpoint("c1", None, {"messages": v(1)}, xid=7))
    assert marker.checkpoint(checkpoint("c2", "c1", {"messages": v(2), "a": v(2)}, xid=7)).no_blob == ()


def test_blob_rows_read_before_the_parent_are_remembered() -> None:
    """Blobs of later steps committed before the parent (a restore in several transactions)."""
    marker = NoBlobMarker()
    for n in (1, 2, 3):
        marker.blob(blob("messages", v(n)))
    marker.checkpoint(checkpoint("c1", None, {"messages": v(1)}))
    assert marker.checkpoint(checkpoint("c2", "c1", {"messages": v(2), "a": v(2)})).no_blob == ("a",)
    assert marker.checkpoint(checkpoint("c3", "c2", {"messages": v(3), "a": v(2)})).no_blob == ("a",)


def test_a_chain_with_more_blob_rows_ahead_than_kept_marks_nothing_more() -> None:
    from connectors.sources.postgres import no_blob

    marker = NoBlobMarker()
    marker.checkpoint(checkpoint("c1", None, {"a": v(1)}))
    for n in range(no_blob._MAX_BLOBS_AHEAD + 1):
        marker.blob(blob(f"ch{n}", v(2)))
    assert marker.checkpoint(checkpoint("c2", "c1", {"a": v(2)})).no_blob == ()
    assert marker.checkpoint(checkpoint("c3", "c2", {"a": v(3)})).no_blob == ()
