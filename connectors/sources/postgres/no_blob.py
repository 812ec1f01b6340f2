"""Which channels of a streamed checkpoint have no blob, so that a target need not look them up.

PostgresSaver writes a blob for a channel only when the channel has a new version in the
checkpoint being put and a value that is not inline. A consumed trigger (``branch:to:*``,
``__start__`` after its step) gets a new version and no blob. A target storing whole
checkpoints (DynamoDB, SQLite, Cosmos) looks up every version it has not seen written, so each
such channel costs a lookup that can only miss: one round trip before a batch's writes, in
almost every batch of a streaming pipeline (bench/results.md, recommendation 6).

The source can tell from what it read, without relying on how LangGraph numbers versions. For
a checkpoint of ``(thread, namespace)`` whose parent is the last checkpoint this process read
for that pair, committed in an earlier transaction (each ``put`` is its own transaction), a
channel has no blob at its version when all of these hold:

* the version is greater than every version in the parent: created after the parent was
  written, so its blob, if any, was written after the parent too (``put`` writes a step's blobs
  with, and before, its checkpoint, and a thread's steps run one after the other);
* this process read no blob row of that channel and version (it keeps the rows it read of
  versions ahead of the chain's latest checkpoint, whenever they came);
* the channel is not inline (an inline value never has a blob).

A channel marked so keeps its mark in the chain's next checkpoints for as long as its version
stays (a consumed trigger keeps its version until it fires again).

Anything else marks nothing, and the target looks up as before: the stream resumed after the
parent, a fork from an older checkpoint, versions that do not compare, the initial copy, and
rows written by other means than ``put``, such as a bulk ``INSERT ... SELECT`` that writes a
thread's checkpoints in one transaction.

PostgresSaver and AsyncPostgresSaver write a step's blobs before its checkpoint. A writer that
wrote a blob after its checkpoint would contradict a mark: the blob's arrival then returns the
checkpoint unmarked, to be sent again after it (a replayed upsert changes nothing else), and
marking stops for the rest of the session.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from connectors.langgraph.forms import inline_values, may_have_blob, version_text
from replicator.events import BlobChange, CheckpointChange, Op

log = structlog.get_logger("replicator.source.postgres")

# What the marker may hold: past either bound the least recently used chains are forgotten (their
# next checkpoint then marks nothing). A chain matters only while its thread is running, so a few
# thousand cover the threads an app runs at once; the bytes bound the rest (invariant 5).
_MAX_CHAINS = 4096
_MAX_BYTES = 16 * 1024 * 1024
# Approximate cost of a chain's own objects (key, ids, the LRU's entry) and of each remembered
# blob row or marked channel; a marked checkpoint is kept encoded and costs its length.
_CHAIN_BYTES = 640
_ENTRY_BYTES = 160
# Blob rows kept per chain ahead of its latest checkpoint (a step writes a few); past it the
# chain marks nothing more in this session (a bulk load, not an app's steps).
_MAX_BLOBS_AHEAD = 256

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CheckpointChange)


@dataclass(slots=True)
class _Chain:
    checkpoint_id: str | None = None  # the chain's latest checkpoint read (None: only blobs yet)
    xid: int = 0  # the transaction it was committed in
    top: Any = None  # its greatest channel version (None: none, or not comparable)
    blobs: set[tuple[str, str]] | None = None  # (channel, version) read, ahead of top
    marked: bytes | None = None  # the latest checkpoint as sent, encoded, when it was marked
    absent: dict[str, Any] | None = None  # channel -> version marked without blob
    overflow: bool = False  # more blob rows ahead than kept: marks nothing any more
    cost: int = _CHAIN_BYTES  # approximate bytes held, counted in the marker's total

    def measure(self) -> int:
        return (
            _CHAIN_BYTES
            + _ENTRY_BYTES * (len(self.blobs or ()) + len(self.absent or ()))
            + len(self.marked or b"")
        )


class NoBlobMarker:
    """Fed every streamed change of one replication session, in commit order."""

    def __init__(self, max_chains: int = _MAX_CHAINS, max_bytes: int = _MAX_BYTES) -> None:
        self._chains: OrderedDict[tuple[str, str], _Chain] = OrderedDict()
        self._max_chains = max_chains
        self._max_bytes = max_bytes
        self.bytes = 0  # approximate bytes the chains hold
        self.enabled = True
        self.marked = 0  # channels marked, for tests and the bench

    def _chain(self, key: tuple[str, str]) -> _Chain:
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain()
            self.bytes += chain.cost
        else:
            self._chains.move_to_end(key)
        return chain

    def _settle(self, chain: _Chain) -> None:
        """Count a changed chain's new size, then forget the oldest chains past either bound."""
        cost = chain.measure()
        self.bytes += cost - chain.cost
        chain.cost = cost
        while self._chains and (len(self._chains) > self._max_chains or self.bytes > self._max_bytes):
            self._drop(next(iter(self._chains)))

    def _drop(self, key: tuple[str, str]) -> None:
        chain = self._chains.pop(key, None)
        if chain is not None:
            self.bytes -= chain.cost

    def blob(self, event: BlobChange) -> CheckpointChange | None:
        """Record a blob row; a checkpoint to send again, unmarked, if the row contradicts a mark."""
        if event.op != Op.UPSERT or not self.enabled:
            return None
        k = event.key
        chain = self._chain((k.thread_id, k.checkpoint_ns))
        if not chain.overflow:
            if chain.blobs is None:
                chain.blobs = set()
            chain.blobs.add((k.channel, k.version))
            if len(chain.blobs) > _MAX_BLOBS_AHEAD:
                chain.overflow, chain.blobs = True, None
        again = self._contradicted(chain, k.channel, k.version)
        if again is None:
            self._settle(chain)
            return None
        log.warning(
            "a blob arrived after the checkpoint that uses it: sending the checkpoint again and "
            "no longer marking channels without blobs in this session",
            thread_id=k.thread_id,
            checkpoint_ns=k.checkpoint_ns,
            channel=k.channel,
        )
        self.enabled = False
        self._chains.clear()
        self.bytes = 0
        return msgspec.structs.replace(again, no_blob=())

    @staticmethod
    def _contradicted(chain: _Chain, channel: str, version: str) -> CheckpointChange | None:
        """The chain's last checkpoint as sent, if it marked this channel at this version."""
        if chain.marked is None or chain.absent is None or channel not in chain.absent:
            return None
        if version_text(chain.absent[channel]) != version:
            return None
        return _decoder.decode(chain.marked)

    def checkpoint(self, event: CheckpointChange) -> CheckpointChange:
        """The event, with ``no_blob`` naming the channels that have none, where that is certain."""
        if not self.enabled:
            return event
        k = event.key
        key = (k.thread_id, k.checkpoint_ns)
        if event.op != Op.UPSERT or event.checkpoint is None or "checkpoint" in event.unchanged:
            self._drop(key)  # nothing certain about this chain any more
            return event
        skeleton = event.checkpoint
        versions = skeleton.get("channel_versions") or {}
        chain = self._chain(key)
        marks: list[str] = []
        if (
            not chain.overflow
            and chain.checkpoint_id is not None
            and event.parent_checkpoint_id == chain.checkpoint_id
            and event.source.xid != chain.xid
            and chain.top is not None
        ):
            inline = inline_values(skeleton)
            blobs = chain.blobs or ()
            absent = chain.absent or {}
            for channel, version in versions.items():
                if not may_have_blob(inline, channel):
                    continue
                if (channel in absent and absent[channel] == version) or (
                    _greater(version, chain.top) and (channel, version_text(version)) not in blobs
                ):
                    marks.append(channel)
        chain.checkpoint_id, chain.xid, chain.top = k.checkpoint_id, event.source.xid, _top(versions.values())
        if chain.blobs:
            chain.blobs = {(c, v) for c, v in chain.blobs if _text_greater(v, chain.top)} or None
        chain.absent = {channel: versions[channel] for channel in marks} or None
        if not marks:
            chain.marked = None
            self._settle(chain)
            return event
        self.marked += len(marks)
        sent = msgspec.structs.replace(event, no_blob=tuple(marks))
        chain.marked = _encoder.encode(sent)
        self._settle(chain)
        return sent


def _comparable(version: Any) -> bool:
    return isinstance(version, str | int) and not isinstance(version, bool)


def _greater(version: Any, top: Any) -> bool:
    return _comparable(version) and type(version) is type(top) and version > top


def _text_greater(text: str, top: Any) -> bool:
    """Whether a blob row's version (as text) may be ahead of ``top``: kept when unsure."""
    if isinstance(top, str):
        return text > top
    if isinstance(top, int) and text.isdigit():
        return int(text) > top
    return True


def _top(versions: Any) -> Any:
    """The greatest version, or None when there is none or they are not of one comparable type."""
    values = list(versions)
    if not values or not all(_comparable(v) for v in values):
        return None
    if len({type(v) for v in values}) != 1:
        return None
    return max(values)
