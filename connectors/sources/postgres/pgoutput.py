"""Pure decoder for PostgreSQL's ``pgoutput`` logical replication protocol (PG 15, proto 1 and 2).

The replication connection (psycopg2 ``LogicalReplicationConnection`` with ``decode=False``) hands us one
pgoutput message per XLogData payload; this module turns those bytes into typed, immutable messages and
turns tuple data into ``dict[str, object]`` rows. It does no I/O so it can be tested byte for byte and
reused by any transport (psycopg2, psycopg 3, ``pg_logical_slot_get_binary_changes``).

Every malformed or truncated input raises :class:`PgOutputError` (never ``IndexError`` or
``struct.error``) so callers have exactly one failure type to handle.
"""

from __future__ import annotations

import binascii
import enum
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias
from uuid import UUID

import msgspec

from connectors import json_values

__all__ = [
    "SUPPORTED_TYPE_OIDS",
    "TRUNCATE_CASCADE",
    "TRUNCATE_RESTART_IDENTITY",
    "UNCHANGED_TOAST",
    "Begin",
    "BinaryValue",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "PgOutputError",
    "PgOutputMessage",
    "Relation",
    "RelationCache",
    "StreamAbort",
    "StreamCommit",
    "StreamStart",
    "StreamStop",
    "TextValue",
    "Truncate",
    "Type",
    "UnchangedToast",
    "Update",
    "Value",
    "pg_timestamp_to_epoch",
    "tuple_to_dict",
]


class PgOutputError(ValueError):
    """The single error type for undecodable pgoutput bytes or unconvertible column values."""


# --------------------------------------------------------------------------------------------------
# Tuple values
# --------------------------------------------------------------------------------------------------


class UnchangedToast(enum.Enum):
    """Marker type for a TOASTed column the UPDATE did not change (pgoutput ``'u'``).

    PostgreSQL does not log such values, so the sink must keep the value it already has; an enum
    gives a true singleton that survives pickling/copying and can be told apart from ``None`` (NULL).
    """

    UNCHANGED_TOAST = "u"

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = UnchangedToast.UNCHANGED_TOAST


class TextValue(bytes):
    """Raw column bytes in the type's text output format (pgoutput ``'t'``).

    A ``bytes`` subclass so the kind travels with the data at no extra allocation.
    """

    __slots__ = ()
    kind: Final = "t"

    def __repr__(self) -> str:
        return f"TextValue({bytes(self)!r})"


class BinaryValue(bytes):
    """Raw column bytes in the type's binary send format (pgoutput ``'b'``, option ``binary 'true'``)."""

    __slots__ = ()
    kind: Final = "b"

    def __repr__(self) -> str:
        return f"BinaryValue({bytes(self)!r})"


Value: TypeAlias = TextValue | BinaryValue | UnchangedToast | None
"""One column of a tuple: NULL -> None, unchanged TOAST -> UNCHANGED_TOAST, else tagged raw bytes."""


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------

# The messages sent for every transaction and every row (Begin, Commit, Insert, Update, Delete) are
# frozen msgspec Structs: immutable, hashable, compared by type and fields like the frozen dataclasses
# of the rarer messages, but built in C (a frozen dataclass sets each field through
# ``object.__setattr__``, several times slower on the hot path). ``gc=False``: their fields hold only
# ints, floats, bools and tuples of bytes/None/UNCHANGED_TOAST, so they can never be part of a cycle.


class Begin(msgspec.Struct, frozen=True, gc=False):
    """Start of a (non-streamed) transaction; ``final_lsn`` equals the matching Commit's ``commit_lsn``."""

    final_lsn: int
    commit_ts: float
    xid: int


class Commit(msgspec.Struct, frozen=True, gc=False):
    """End of a transaction; ``end_lsn`` is the LSN to confirm as flushed once the txn is durable."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: float


@dataclass(frozen=True, slots=True)
class Origin:
    """Replication origin of the transaction (only when it was itself replicated from elsewhere)."""

    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """One published column of a relation; ``is_key`` marks replica identity columns."""

    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """Schema of a table, sent before its first change in a session and again after any DDL on it."""

    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]
    xid: int | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass(frozen=True, slots=True)
class Type:
    """Name of a non built-in data type used by a following Relation."""

    oid: int
    namespace: str
    name: str
    xid: int | None = None


class Insert(msgspec.Struct, frozen=True, gc=False):
    relation_oid: int
    new: tuple[Value, ...]
    xid: int | None = None


class Update(msgspec.Struct, frozen=True, gc=False):
    """``old`` is None unless the key changed (``old_is_key``) or replica identity is FULL."""

    relation_oid: int
    old: tuple[Value, ...] | None
    new: tuple[Value, ...]
    old_is_key: bool = False
    xid: int | None = None


class Delete(msgspec.Struct, frozen=True, gc=False):
    """``old`` is the replica identity key (``old_is_key``; non-key columns NULL) or the full old row."""

    relation_oid: int
    old: tuple[Value, ...]
    old_is_key: bool = True
    xid: int | None = None


TRUNCATE_CASCADE: Final = 1
TRUNCATE_RESTART_IDENTITY: Final = 2


@dataclass(frozen=True, slots=True)
class Truncate:
    """``options`` is a bit set of TRUNCATE_CASCADE / TRUNCATE_RESTART_IDENTITY."""

    relation_oids: tuple[int, ...]
    options: int
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A ``pg_logical_emit_message`` record (only sent with the ``messages 'true'`` option)."""

    flags: int
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None

    @property
    def transactional(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Start of a chunk of a streamed (in-progress) transaction (proto 2, ``streaming 'on'``)."""

    xid: int
    first: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    """End of a streamed chunk; changes of ``xid`` may continue in a later chunk."""


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: float


@dataclass(frozen=True, slots=True)
class StreamAbort:
    """Abort of a streamed top-level transaction (``sub_xid == xid``) or of one subtransaction."""

    xid: int
    sub_xid: int


PgOutputMessage: TypeAlias = (
    Begin
    | Commit
    | Origin
    | Relation
    | Type
    | Insert
    | Update
    | Delete
    | Truncate
    | Message
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
)

# --------------------------------------------------------------------------------------------------
# Low-level reading
# --------------------------------------------------------------------------------------------------

_PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since the Unix epoch
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)

_U8 = struct.Struct(">B")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_COLUMN_TYPE = struct.Struct(">Ii")
_TRUNCATE_HEAD = struct.Struct(">IB")
_MESSAGE_HEAD = struct.Struct(">BQ")
_STREAM_START = struct.Struct(">IB")
_STREAM_COMMIT = struct.Struct(">IBQQq")
_STREAM_ABORT = struct.Struct(">II")

_MESSAGE_NAMES: Final[Mapping[int, str]] = {
    ord("B"): "Begin",
    ord("C"): "Commit",
    ord("O"): "Origin",
    ord("R"): "Relation",
    ord("Y"): "Type",
    ord("I"): "Insert",
    ord("U"): "Update",
    ord("D"): "Delete",
    ord("T"): "Truncate",
    ord("M"): "Message",
    ord("S"): "StreamStart",
    ord("E"): "StreamStop",
    ord("c"): "StreamCommit",
    ord("A"): "StreamAbort",
}
_TWO_PHASE: Final = frozenset(b"bPKrp")


def pg_timestamp_to_epoch(us: int) -> float:
    """Convert pgoutput's int64 microseconds since 2000-01-01 to Unix epoch seconds."""
    return (us + _PG_EPOCH_US) / 1_000_000


class _Reader:
    """Cursor over one message; every read is bounds-checked so truncation yields a PgOutputError."""

    __slots__ = ("buf", "mv", "pos", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.mv = memoryview(buf)
        self.pos = 1  # past the message type byte
        self.what = what

    def error(self, detail: str, pos: int | None = None) -> PgOutputError:
        at = self.pos if pos is None else pos
        return PgOutputError(
            f"pgoutput {self.what} message: {detail} at offset {at} (length {len(self.buf)})"
        )

    def unpack(self, st: struct.Struct, field: str) -> tuple[Any, ...]:
        pos = self.pos
        if pos + st.size > len(self.buf):
            raise self.error(f"truncated {field}: need {st.size} bytes, have {len(self.buf) - pos}")
        self.pos = pos + st.size
        return st.unpack_from(self.buf, pos)

    def u8(self, field: str) -> int:
        pos = self.pos
        if pos >= len(self.buf):
            raise self.error(f"truncated {field}: need 1 byte, have 0")
        self.pos = pos + 1
        return self.buf[pos]

    def u32(self, field: str) -> int:
        return int(self.unpack(_U32, field)[0])

    def string(self, field: str) -> str:
        pos = self.pos
        end = self.buf.find(b"\0", pos)
        if end < 0:
            raise self.error(f"unterminated string {field}")
        try:
            value = self.buf[pos:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"string {field} is not UTF-8 ({exc.reason})") from None
        self.pos = end + 1
        return value

    def take(self, n: int, field: str) -> bytes:
        pos = self.pos
        if n < 0 or pos + n > len(self.buf):
            raise self.error(f"truncated {field}: need {n} bytes, have {len(self.buf) - pos}")
        self.pos = pos + n
        return bytes(self.mv[pos : pos + n])

    def tuple_data(self) -> tuple[Value, ...]:
        """Decode TupleData with local variables only: this is the hot path for every row."""
        buf = self.buf
        mv = self.mv
        size = len(buf)
        pos = self.pos
        if pos + 2 > size:
            raise self.error("truncated tuple column count")
        ncols = _I16.unpack_from(buf, pos)[0]
        if ncols < 0:
            raise self.error(f"negative tuple column count {ncols}")
        pos += 2
        out: list[Value] = []
        append = out.append
        unpack_len = _I32.unpack_from
        for i in range(ncols):
            if pos >= size:
                raise self.error(f"truncated tuple: column {i} of {ncols} missing", pos)
            kind = buf[pos]
            if kind == 0x74 or kind == 0x62:  # 't' text / 'b' binary: Int32 length + bytes
                if pos + 5 > size:
                    raise self.error(f"truncated length of tuple column {i}", pos + 1)
                length = unpack_len(buf, pos + 1)[0]
                start = pos + 5
                pos = start + length
                if length < 0 or pos > size:
                    raise self.error(
                        f"truncated tuple column {i}: need {length} bytes, have {size - start}", start
                    )
                append(TextValue(mv[start:pos]) if kind == 0x74 else BinaryValue(mv[start:pos]))
            elif kind == 0x6E:  # 'n' NULL
                append(None)
                pos += 1
            elif kind == 0x75:  # 'u' unchanged TOAST
                append(UNCHANGED_TOAST)
                pos += 1
            else:
                raise self.error(f"unknown tuple column kind {kind:#04x} for column {i}", pos)
        self.pos = pos
        return tuple(out)


# --------------------------------------------------------------------------------------------------
# Message decoder
# --------------------------------------------------------------------------------------------------


class PgOutputDecoder:
    """Stateful decoder for one replication session.

    State is needed because, inside a stream (between StreamStart and StreamStop, proto 2), data and
    schema messages carry a leading xid; and because rows can only be converted with the most recent
    Relation of their table, which the decoder records in :attr:`relations`. Feed it every message of
    the session in order; call :meth:`reset` when the replication connection is re-established.
    """

    __slots__ = ("_dispatch", "in_stream", "relations", "stream_xid")

    def __init__(self, relations: RelationCache | None = None) -> None:
        self.relations = relations if relations is not None else RelationCache()
        self.in_stream = False
        self.stream_xid: int | None = None
        self._dispatch: dict[int, Callable[[_Reader], PgOutputMessage]] = {
            ord("B"): self._begin,
            ord("C"): self._commit,
            ord("O"): self._origin,
            ord("R"): self._relation,
            ord("Y"): self._type,
            ord("I"): self._insert,
            ord("U"): self._update,
            ord("D"): self._delete,
            ord("T"): self._truncate,
            ord("M"): self._message,
            ord("S"): self._stream_start,
            ord("E"): self._stream_stop,
            ord("c"): self._stream_commit,
            ord("A"): self._stream_abort,
        }

    def reset(self) -> None:
        """Forget stream state and relations: a new walsender session re-sends every Relation it uses."""
        self.in_stream = False
        self.stream_xid = None
        self.relations.clear()

    def decode(self, payload: bytes | bytearray | memoryview) -> PgOutputMessage:
        """Decode one pgoutput message (the XLogData payload, starting with the message type byte)."""
        buf = payload if type(payload) is bytes else bytes(payload)
        if not buf:
            raise PgOutputError("pgoutput message: empty payload at offset 0")
        tag = buf[0]
        handler = self._dispatch.get(tag)
        if handler is None:
            if tag in _TWO_PHASE:
                raise PgOutputError(
                    f"pgoutput message type {chr(tag)!r} (two-phase commit) is not supported; "
                    "do not enable the two_phase slot option, at offset 0"
                )
            raise PgOutputError(f"pgoutput message: unknown message type {tag:#04x} at offset 0")
        reader = _Reader(buf, _MESSAGE_NAMES[tag])
        msg = handler(reader)
        if reader.pos != len(buf):
            raise reader.error(f"{len(buf) - reader.pos} unexpected trailing bytes")
        # Apply state changes only once the whole message is known to be valid.
        if type(msg) is Relation:
            self.relations.add(msg)
        elif type(msg) is StreamStart:
            self.in_stream = True
            self.stream_xid = msg.xid
        elif type(msg) is StreamStop:
            self.in_stream = False
            self.stream_xid = None
        return msg

    def row(
        self, relation_oid: int, values: tuple[Value, ...], *, key_only: bool = False
    ) -> dict[str, object]:
        """Convert a tuple of ``relation_oid`` with the cached Relation (see RelationCache.to_dict)."""
        return self.relations.to_dict(relation_oid, values, key_only=key_only)

    # -- per message type -------------------------------------------------------------------------

    def _xid(self, r: _Reader) -> int | None:
        return r.u32("xid") if self.in_stream else None

    def _begin(self, r: _Reader) -> Begin:
        final_lsn, ts, xid = r.unpack(_BEGIN, "Begin fields")
        return Begin(final_lsn, pg_timestamp_to_epoch(ts), xid)

    def _commit(self, r: _Reader) -> Commit:
        flags, commit_lsn, end_lsn, ts = r.unpack(_COMMIT, "Commit fields")
        return Commit(flags, commit_lsn, end_lsn, pg_timestamp_to_epoch(ts))

    def _origin(self, r: _Reader) -> Origin:
        # Never carries an xid, even when sent right after StreamStart.
        (lsn,) = r.unpack(_U64, "origin LSN")
        return Origin(lsn, r.string("origin name"))

    def _relation(self, r: _Reader) -> Relation:
        xid = self._xid(r)
        oid = r.u32("relation oid")
        namespace = r.string("namespace")
        name = r.string("relation name")
        replica_identity = chr(r.u8("replica identity"))
        (ncols,) = r.unpack(_I16, "column count")
        if ncols < 0:
            raise r.error(f"negative column count {ncols}")
        columns = []
        for i in range(ncols):
            flags = r.u8(f"flags of column {i}")
            col_name = r.string(f"name of column {i}")
            type_oid, typmod = r.unpack(_COLUMN_TYPE, f"type of column {col_name!r}")
            columns.append(Column(col_name, type_oid, typmod, bool(flags & 1)))
        return Relation(oid, namespace, name, replica_identity, tuple(columns), xid)

    def _type(self, r: _Reader) -> Type:
        xid = self._xid(r)
        oid = r.u32("type oid")
        return Type(oid, r.string("type namespace"), r.string("type name"), xid)

    def _insert(self, r: _Reader) -> Insert:
        xid = self._xid(r)
        oid = r.u32("relation oid")
        marker = r.u8("new tuple marker")
        if marker != 0x4E:  # 'N'
            raise r.error(f"expected 'N' before the new tuple, got {marker:#04x}", r.pos - 1)
        return Insert(oid, r.tuple_data(), xid)

    def _update(self, r: _Reader) -> Update:
        xid = self._xid(r)
        oid = r.u32("relation oid")
        marker = r.u8("tuple marker")
        old: tuple[Value, ...] | None = None
        old_is_key = False
        if marker == 0x4B or marker == 0x4F:  # 'K' key / 'O' full old row
            old_is_key = marker == 0x4B
            old = r.tuple_data()
            marker = r.u8("new tuple marker")
        if marker != 0x4E:
            raise r.error(f"expected 'N' before the new tuple, got {marker:#04x}", r.pos - 1)
        return Update(oid, old, r.tuple_data(), old_is_key, xid)

    def _delete(self, r: _Reader) -> Delete:
        xid = self._xid(r)
        oid = r.u32("relation oid")
        marker = r.u8("old tuple marker")
        if marker != 0x4B and marker != 0x4F:
            raise r.error(f"expected 'K' or 'O' before the old tuple, got {marker:#04x}", r.pos - 1)
        return Delete(oid, r.tuple_data(), marker == 0x4B, xid)

    def _truncate(self, r: _Reader) -> Truncate:
        xid = self._xid(r)
        nrels, options = r.unpack(_TRUNCATE_HEAD, "Truncate header")
        oids = r.unpack(struct.Struct(f">{nrels}I"), "relation oids")
        return Truncate(tuple(oids), options, xid)

    def _message(self, r: _Reader) -> Message:
        xid = self._xid(r)
        flags, lsn = r.unpack(_MESSAGE_HEAD, "Message header")
        prefix = r.string("prefix")
        length = r.u32("content length")
        return Message(flags, lsn, prefix, r.take(length, "content"), xid)

    def _stream_start(self, r: _Reader) -> StreamStart:
        xid, first = r.unpack(_STREAM_START, "StreamStart fields")
        if self.in_stream:
            raise r.error(f"StreamStart for xid {xid} inside the stream of xid {self.stream_xid}", 0)
        return StreamStart(xid, bool(first))

    def _stream_stop(self, r: _Reader) -> StreamStop:
        if not self.in_stream:
            raise r.error("StreamStop outside a stream", 0)
        return StreamStop()

    def _stream_commit(self, r: _Reader) -> StreamCommit:
        xid, flags, commit_lsn, end_lsn, ts = r.unpack(_STREAM_COMMIT, "StreamCommit fields")
        return StreamCommit(xid, flags, commit_lsn, end_lsn, pg_timestamp_to_epoch(ts))

    def _stream_abort(self, r: _Reader) -> StreamAbort:
        xid, sub_xid = r.unpack(_STREAM_ABORT, "StreamAbort fields")
        return StreamAbort(xid, sub_xid)


# --------------------------------------------------------------------------------------------------
# Column value conversion
# --------------------------------------------------------------------------------------------------

Converter: TypeAlias = Callable[[bytes], object]

_BYTEA_ESCAPE = re.compile(rb"\\(\\|[0-7]{3})")


def _utf8(data: bytes) -> str:
    return data.decode("utf-8")


def _bytea_text(data: bytes) -> bytes:
    if data[:2] == b"\\x":  # bytea_output = hex (the default)
        return binascii.a2b_hex(memoryview(data)[2:])
    # bytea_output = escape: backslash-escaped octets; anything else is literal
    return _BYTEA_ESCAPE.sub(lambda m: b"\\" if m[1] == b"\\" else bytes((int(m[1], 8),)), data)


def _bytea_binary(data: bytes) -> bytes:
    return bytes(data)


# JSON text (``json`` in both formats, ``jsonb`` in text format) as Python values.
_json_text: Final = json_values.loads


def _jsonb_binary(data: bytes) -> object:
    """``jsonb_send``: a version byte (1) followed by the JSON text."""
    if not data or data[0] != 1:
        raise ValueError(f"unsupported jsonb binary version {data[:1]!r}")
    return _json_text(memoryview(data)[1:])


def _bool_text(data: bytes) -> bool:
    if data == b"t":
        return True
    if data == b"f":
        return False
    raise ValueError(f"invalid boolean {data!r}")


def _bool_binary(data: bytes) -> bool:
    if len(data) != 1:
        raise ValueError(f"boolean must be 1 byte, got {len(data)}")
    return data != b"\x00"


def _int_text(data: bytes) -> int:
    return int(data)


def _float_text(data: bytes) -> float:
    return float(data)


_I16_UNPACK = struct.Struct(">h").unpack
_I32_UNPACK = struct.Struct(">i").unpack
_I64_UNPACK = struct.Struct(">q").unpack
_U32_UNPACK = struct.Struct(">I").unpack
_F32 = struct.Struct(">f")
_F64_UNPACK = struct.Struct(">d").unpack


def _int2_binary(data: bytes) -> int:
    return int(_I16_UNPACK(data)[0])


def _int4_binary(data: bytes) -> int:
    return int(_I32_UNPACK(data)[0])


def _int8_binary(data: bytes) -> int:
    return int(_I64_UNPACK(data)[0])


def _oid_binary(data: bytes) -> int:
    return int(_U32_UNPACK(data)[0])


def _float4_binary(data: bytes) -> float:
    """Return the shortest decimal that round-trips the float32, as PostgreSQL's text output does.

    Without this, 0.1::float4 would decode as 0.10000000149011612 in binary mode but 0.1 in text mode.
    """
    value = float(_F32.unpack(data)[0])
    if value != value or value in (float("inf"), float("-inf")):
        return value
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if _F32.pack(candidate) == data:
            return candidate
    return value


def _float8_binary(data: bytes) -> float:
    return float(_F64_UNPACK(data)[0])


def _timestamp_binary(data: bytes) -> datetime:
    us = _I64_UNPACK(data)[0]
    if us == _INT64_MAX:  # 'infinity'
        return datetime.max.replace(tzinfo=UTC)
    if us == _INT64_MIN:  # '-infinity'
        return datetime.min.replace(tzinfo=UTC)
    return _PG_EPOCH + timedelta(microseconds=us)


def _timestamp_text(data: bytes) -> datetime:
    """Parse the ISO DateStyle output (the default); naive timestamps are taken as UTC like binary ones."""
    text = data.decode("ascii")
    if text == "infinity":
        return datetime.max.replace(tzinfo=UTC)
    if text == "-infinity":
        return datetime.min.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _uuid_binary(data: bytes) -> str:
    return str(UUID(bytes=bytes(data)))


def _uuid_text(data: bytes) -> str:
    return data.decode("ascii")


_TEXT_TYPES: Final = (25, 1043, 1042, 19)  # text, varchar, bpchar, name
_TEXT_CONVERTERS: Final[Mapping[int, Converter]] = {
    **dict.fromkeys(_TEXT_TYPES, _utf8),
    17: _bytea_text,
    3802: _json_text,
    114: _json_text,
    21: _int_text,
    23: _int_text,
    20: _int_text,
    26: _int_text,
    16: _bool_text,
    700: _float_text,
    701: _float_text,
    1184: _timestamp_text,
    1114: _timestamp_text,
    2950: _uuid_text,
}
_BINARY_CONVERTERS: Final[Mapping[int, Converter]] = {
    **dict.fromkeys(_TEXT_TYPES, _utf8),  # their send functions emit the text itself
    17: _bytea_binary,
    3802: _jsonb_binary,
    114: _json_text,  # json_send emits the JSON text
    21: _int2_binary,
    23: _int4_binary,
    20: _int8_binary,
    26: _oid_binary,
    16: _bool_binary,
    700: _float4_binary,
    701: _float8_binary,
    1184: _timestamp_binary,
    1114: _timestamp_binary,
    2950: _uuid_binary,
}
SUPPORTED_TYPE_OIDS: Final = frozenset(_TEXT_CONVERTERS)

# (index in tuple, column name, text converter, binary converter)
_PlanEntry: TypeAlias = tuple[int, str, Converter, Converter]


def _build_plan(relation: Relation, key_only: bool) -> tuple[_PlanEntry, ...]:
    plan = []
    for index, col in enumerate(relation.columns):
        if key_only and not col.is_key:
            continue
        text_conv = _TEXT_CONVERTERS.get(col.type_oid)
        if text_conv is None:
            raise PgOutputError(
                f"relation {relation.qualified_name} (oid {relation.oid}) column {col.name!r} has "
                f"unsupported type oid {col.type_oid}"
            )
        plan.append((index, col.name, text_conv, _BINARY_CONVERTERS[col.type_oid]))
    return tuple(plan)


def _convert(
    relation: Relation, plan: tuple[_PlanEntry, ...], values: tuple[Value, ...]
) -> dict[str, object]:
    if len(values) != len(relation.columns):
        raise PgOutputError(
            f"relation {relation.qualified_name} (oid {relation.oid}) has {len(relation.columns)} columns "
            f"but the tuple has {len(values)}"
        )
    out: dict[str, object] = {}
    index = 0
    try:
        for index, name, text_conv, binary_conv in plan:
            value = values[index]
            if value is None or value is UNCHANGED_TOAST:
                out[name] = value
            elif type(value) is TextValue:
                out[name] = text_conv(value)
            else:
                out[name] = binary_conv(value)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        col = relation.columns[index]
        kind = "text" if type(values[index]) is TextValue else "binary"
        raise PgOutputError(
            f"relation {relation.qualified_name} (oid {relation.oid}) column {col.name!r} "
            f"(type oid {col.type_oid}): "
            f"cannot decode {kind} value: {exc}"
        ) from exc
    return out


def tuple_to_dict(
    relation: Relation, values: tuple[Value, ...], *, key_only: bool = False
) -> dict[str, object]:
    """Convert a tuple to ``{column: python value}``; NULL -> None, UNCHANGED_TOAST passes through.

    With ``key_only`` only replica identity columns are returned, which is what a key tuple ('K',
    from DELETE or a key-changing UPDATE) really carries: its other columns are sent as NULL.
    Prefer :meth:`RelationCache.to_dict`, which caches the per-relation conversion plan.
    """
    return _convert(relation, _build_plan(relation, key_only), values)


class RelationCache:
    """Latest Relation per oid plus its precomputed conversion plans."""

    __slots__ = ("_plans", "_relations")

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._plans: dict[tuple[int, bool], tuple[_PlanEntry, ...]] = {}

    def add(self, relation: Relation) -> None:
        self._relations[relation.oid] = relation
        self._plans.pop((relation.oid, False), None)
        self._plans.pop((relation.oid, True), None)

    def get(self, oid: int) -> Relation:
        try:
            return self._relations[oid]
        except KeyError:
            raise PgOutputError(f"no Relation message seen for relation oid {oid}") from None

    def __contains__(self, oid: object) -> bool:
        return oid in self._relations

    def __len__(self) -> int:
        return len(self._relations)

    def clear(self) -> None:
        self._relations.clear()
        self._plans.clear()

    def to_dict(
        self, relation_oid: int, values: tuple[Value, ...], *, key_only: bool = False
    ) -> dict[str, object]:
        """Convert ``values`` of ``relation_oid``; raises PgOutputError for unknown relations or types."""
        relation = self.get(relation_oid)
        plan = self._plans.get((relation_oid, key_only))
        if plan is None:
            plan = self._plans[(relation_oid, key_only)] = _build_plan(relation, key_only)
        return _convert(relation, plan, values)
