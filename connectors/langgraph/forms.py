"""The two forms a checkpoint takes in LangGraph savers, and the conversions between them.

*Split* form (PostgresSaver): ``CheckpointChange`` carries the JSON skeleton with primitive
channel values inline; every other value is a blob keyed by ``(channel, version)``, written
once and shared by all later checkpoints whose version of that channel is the same.

*Whole* form (SqliteSaver, InMemorySaver, the DynamoDB savers): ``CheckpointDocument`` carries
one serialized checkpoint holding every channel value.

Values are never decoded: split -> whole splices each blob's msgpack bytes as ``msgspec.Raw``,
whole -> split cuts the raw slice of each value out of the document. So the conversion needs no
LangGraph classes and keeps the bytes the source's serializer wrote. No I/O here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    BlobKey,
    CheckpointChange,
    CheckpointDocument,
    Op,
)

BlobRef = tuple[str, str, str, str]  # (thread_id, checkpoint_ns, channel, version text)
CheckpointRef = tuple[str, str, str]  # (thread_id, checkpoint_ns, checkpoint_id)
WriteRef = tuple[str, str, str, str, int]  # (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
Blob = tuple[str, bytes | None]  # serde (type, data) as PostgresSaver stores it


class Form(enum.StrEnum):
    """How a target's saver stores a checkpoint."""

    SPLIT = "split"
    WHOLE = "whole"


class _Absent(enum.Enum):
    """A blob known not to exist in the target (before the batch being applied)."""

    ABSENT = 0


ABSENT = _Absent.ABSENT
Resolve = Callable[[str, str], "Blob | _Absent"]  # (channel, version text) -> blob


def version_text(version: Any) -> str:
    """A channel version as PostgresSaver's ``jsonb_each_text`` joins it to ``checkpoint_blobs``."""
    return version if isinstance(version, str) else json.dumps(version)


def may_have_blob(inline: dict[str, Any], channel: str) -> bool:
    """Whether a checkpoint's channel can have a blob, given its inline ``channel_values``.

    PostgresSaver (3.x) keeps None, str, int, float and bool values inline and writes a blob only
    for the other values, at the channel's version. A value is fixed by its version (a new value
    gets a new version), so a channel inline in a checkpoint has no blob at that version, and
    looking one up cannot find anything: the value read is the inline one. (A thread begun by an
    older PostgresSaver, which stored primitives as blobs too, may have one, holding the very value
    found inline.) The exception is DeltaChannel's snapshot, a blob behind an inline ``true``
    marker, so a channel whose inline value is ``True`` is still looked up. A channel not inline
    may have a blob (a non-primitive value) or none (no value: a consumed trigger, ``__start__``
    after its step). A blob written in the same batch is used all the same.
    """
    return channel not in inline or inline[channel] is True


def inline_values(skeleton: Mapping[str, Any]) -> dict[str, Any]:
    inline = skeleton.get("channel_values")
    return inline if isinstance(inline, dict) else {}


def blob_refs(thread_id: str, ns: str, skeleton: Mapping[str, Any]) -> Iterator[BlobRef]:
    """The explicit blob references of a split-form checkpoint: every ``(channel, version)``
    whose value may live in a blob (see ``may_have_blob``)."""
    inline = inline_values(skeleton)
    for channel, version in (skeleton.get("channel_versions") or {}).items():
        if may_have_blob(inline, channel):
            yield (thread_id, ns, channel, version_text(version))


# --------------------------------------------------------------------------- split -> whole


def assemble(
    skeleton: Mapping[str, Any], resolve: Resolve, where: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The full checkpoint as PostgresSaver._load_checkpoint_tuple builds it, values undecoded.

    Returns it (blob values as ``msgspec.Raw``) and the channels this very checkpoint updated
    whose blob was not found (by version), for the caller to count and report. ``where`` names
    the checkpoint in errors.
    """
    inline = inline_values(skeleton)
    values: dict[str, Any] = dict(inline)
    updated = set(skeleton.get("updated_channels") or ())
    missing: dict[str, str] = {}
    for channel, version in (skeleton.get("channel_versions") or {}).items():
        text = version_text(version)
        blob = resolve(channel, text)
        if blob is ABSENT:
            # PostgresSaver writes no blob for a primitive (inline) value nor for a channel
            # without value (a consumed trigger, __start__ after step -1, ...), so an absent
            # blob is normal and cannot be told from a lost one in general. A channel this
            # very checkpoint updated but that has no value is suspicious (an UntrackedValue
            # channel is the one legitimate case), so that is what gets reported.
            if channel not in inline and channel in updated:
                missing[channel] = text
            continue
        type_, data = blob
        if type_ == "empty":
            continue
        values[channel] = splice(type_, data, where, channel)
    return {**skeleton, "channel_values": values}, missing


def splice(type_: str, data: bytes | None, where: str, channel: str) -> Any:
    """A blob as a value inside a msgpack checkpoint, without decoding it."""
    if type_ == "msgpack" and data:
        return msgspec.Raw(data)
    if type_ in ("bytes", "bytearray"):
        # JsonPlusSerializer packs bytes and bytearray alike as msgpack bin (read back as bytes).
        return data or b""
    if type_ == "null":
        return None
    raise ReplicatorError(
        ErrorKind.MALFORMED_EVENT,
        f"{where} channel {channel!r}: blob of serde type "
        f"{type_!r}{' without data' if type_ == 'msgpack' else ''} cannot be spliced into a "
        "msgpack checkpoint, as SqliteSaver and DynamoDBSaver store it (only msgpack, bytes, "
        "bytearray and null can; pickle, json and encrypted values would have to be decoded and "
        "re-encoded)",
    )


def encode(value: Any, where: str) -> bytes:
    """msgpack bytes of a tree holding ``msgspec.Raw`` parts, as whole-form savers read them."""
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError, msgspec.EncodeError) as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"{where} cannot be encoded as msgpack: {exc} "
            "(msgpack savers cannot hold integers outside 64 bits)",
        ) from None


def where(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return f"thread {thread_id!r} ns {ns!r} checkpoint {checkpoint_id}"


def to_document(change: CheckpointChange, resolve: Resolve) -> tuple[CheckpointDocument, dict[str, str]]:
    """Split -> whole: the document a whole-form saver would hold for this checkpoint upsert, and
    the updated channels whose blob was missing (see ``assemble``)."""
    k = change.key
    at = where(k.thread_id, k.checkpoint_ns, k.checkpoint_id)
    if change.checkpoint is None:
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"checkpoint upsert of {at} carries no checkpoint")
    full, missing = assemble(change.checkpoint, resolve, at)
    document = CheckpointDocument(
        Op.UPSERT,
        k,
        change.source,
        parent_checkpoint_id=change.parent_checkpoint_id,
        type="msgpack",
        data=encode(full, at),
        metadata=change.metadata or {},
    )
    return document, missing


# --------------------------------------------------------------------------- whole -> split


_DELTA_SNAPSHOT_EXT = 7  # langgraph.checkpoint.serde.jsonplus.EXT_DELTA_SNAPSHOT


# msgpack heads: nil, false, true, float 32/64, uint 8-64, int 8-64, str 8/16/32 (fixint, fixstr
# and negative fixint are ranges, tested in _is_primitive).
_PRIMITIVE_HEADS = frozenset(
    {0xC0, 0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3, 0xD9, 0xDA, 0xDB}
)
_BIN_HEADS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # bin 8/16/32: length bytes after the head
_EXT_TYPE_AT = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}


def _is_primitive(raw: bytes) -> bool:
    """nil, bool, int, float or str: what PostgresSaver keeps inline in its JSON skeleton."""
    b = raw[0]
    return b <= 0x7F or b >= 0xE0 or 0xA0 <= b <= 0xBF or b in _PRIMITIVE_HEADS


def _ext_code(raw: bytes) -> int | None:
    at = _EXT_TYPE_AT.get(raw[0])
    return None if at is None else int.from_bytes(raw[at : at + 1], "big", signed=True)


@dataclass(frozen=True)
class SplitCheckpoint:
    """A whole checkpoint cut into PostgresSaver's form: the skeleton and the new blobs."""

    skeleton: dict[str, Any]
    blobs: list[tuple[str, str, str, bytes]]  # (channel, version text, type, data)


def split(data: bytes, previous_versions: Mapping[str, Any] | None, where: str) -> SplitCheckpoint:
    """Whole -> split: walk the msgpack map of a serialized checkpoint (JsonPlusSerializer).

    A primitive value stays inline; a ``bin`` value becomes a blob of type ``bytes`` (its payload);
    anything else a blob of type ``msgpack`` (its raw slice), a DeltaChannel snapshot also leaving
    the inline ``true`` marker, as PostgresSaver does. Blobs are emitted only for channels whose
    version differs from ``previous_versions`` (the previous checkpoint's, None for all): blobs are
    shared by version, so what a source sends grows with what changed, not with the thread.
    """
    try:
        parts = msgspec.msgpack.decode(data, type=dict[str, msgspec.Raw])
        top: dict[str, Any] = {
            name: msgspec.msgpack.decode(raw) for name, raw in parts.items() if name != "channel_values"
        }
        values = parts.get("channel_values")
        raw_values = {} if values is None else msgspec.msgpack.decode(values, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT, f"{where}: the checkpoint is not a msgpack map ({exc})"
        ) from None
    versions: Mapping[str, Any] = top.get("channel_versions") or {}
    previous = previous_versions or {}
    inline: dict[str, Any] = {}
    blobs: list[tuple[str, str, str, bytes]] = []
    for channel, value in raw_values.items():
        raw = bytes(value)
        blob: tuple[str, bytes] | None = None
        if _is_primitive(raw):
            inline[channel] = msgspec.msgpack.decode(raw)
        elif raw[0] in _BIN_HEADS:
            n = _BIN_HEADS[raw[0]]
            blob = ("bytes", raw[1 + n :])
        else:
            if _ext_code(raw) == _DELTA_SNAPSHOT_EXT:
                inline[channel] = True
            blob = ("msgpack", raw)
        if blob is None:
            continue
        if channel not in versions:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT, f"{where}: channel {channel!r} has a value but no version"
            )
        version = versions[channel]
        if channel in previous and version_text(previous[channel]) == version_text(version):
            continue
        blobs.append((channel, version_text(version), *blob))
    top["channel_values"] = inline
    return SplitCheckpoint(top, blobs)


def to_changes(
    document: CheckpointDocument, previous_versions: Mapping[str, Any] | None
) -> list[BlobChange | CheckpointChange]:
    """Whole -> split: the rows PostgresSaver.put would insert (new blobs, then the checkpoint)."""
    k = document.key
    at = where(k.thread_id, k.checkpoint_ns, k.checkpoint_id)
    if document.op == Op.DELETE:
        return [CheckpointChange(Op.DELETE, k, document.source)]
    if document.type != "msgpack" or not document.data:
        raise ReplicatorError(
            ErrorKind.MALFORMED_EVENT,
            f"{at}: a checkpoint of serde type {document.type!r} cannot be split without decoding it "
            "(only msgpack can)",
        )
    cut = split(document.data, previous_versions, at)
    events: list[BlobChange | CheckpointChange] = [
        BlobChange(
            Op.UPSERT,
            BlobKey(k.thread_id, k.checkpoint_ns, channel, version),
            document.source,
            type=type_,
            data=data,
        )
        for channel, version, type_, data in cut.blobs
    ]
    events.append(
        CheckpointChange(
            Op.UPSERT,
            k,
            document.source,
            parent_checkpoint_id=document.parent_checkpoint_id,
            checkpoint=cut.skeleton,
            metadata=document.metadata or {},
        )
    )
    return events
