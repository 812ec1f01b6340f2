"""Byte-level tests for the pgoutput decoder.

Fixtures come from a tiny encoder that mirrors PG 15's proto.c, kept here so the product has no encoder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import random
import struct
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from connectors.sources.postgres.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BinaryValue,
    Column,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputDecoder,
    PgOutputError,
    Relation,
    RelationCache,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    TextValue,
    Truncate,
    Type,
    Update,
    Value,
    pg_timestamp_to_epoch,
    tuple_to_dict,
)

# ------------------------------------------------------------------------------------------------
# Encoder (test-only): builds messages exactly as src/backend/replication/logical/proto.c does.
# ------------------------------------------------------------------------------------------------

PG_EPOCH_US = 946_684_800_000_000


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def xid_prefix(xid: int | None) -> bytes:
    return b"" if xid is None else struct.pack(">I", xid)


def enc_tuple(values: Iterable[object]) -> bytes:
    """None -> 'n', UNCHANGED_TOAST -> 'u', ('t'|'b', bytes) -> kind + Int32 length + data."""
    vals = list(values)
    out = bytearray(struct.pack(">h", len(vals)))
    for v in vals:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        else:
            assert isinstance(v, tuple)
            kind, data = v
            out += kind.encode() + struct.pack(">i", len(data)) + data
    return bytes(out)


def enc_begin(final_lsn: int, ts_us: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts_us, xid)


def enc_commit(flags: int, commit_lsn: int, end_lsn: int, ts_us: int) -> bytes:
    return b"C" + struct.pack(">BQQq", flags, commit_lsn, end_lsn, ts_us)


def enc_origin(lsn: int, name: str) -> bytes:
    return b"O" + struct.pack(">Q", lsn) + cstr(name)


def enc_relation(
    oid: int,
    ns: str,
    name: str,
    ident: str,
    cols: list[tuple[str, int, int, bool]],
    xid: int | None = None,
) -> bytes:
    out = b"R" + xid_prefix(xid) + struct.pack(">I", oid) + cstr(ns) + cstr(name) + ident.encode()
    out += struct.pack(">h", len(cols))
    for cname, type_oid, typmod, key in cols:
        out += struct.pack(">B", 1 if key else 0) + cstr(cname) + struct.pack(">Ii", type_oid, typmod)
    return out


def enc_type(oid: int, ns: str, name: str, xid: int | None = None) -> bytes:
    return b"Y" + xid_prefix(xid) + struct.pack(">I", oid) + cstr(ns) + cstr(name)


def enc_insert(oid: int, new: Iterable[object], xid: int | None = None) -> bytes:
    return b"I" + xid_prefix(xid) + struct.pack(">I", oid) + b"N" + enc_tuple(new)


def enc_update(
    oid: int,
    new: Iterable[object],
    old: Iterable[object] | None = None,
    old_kind: bytes = b"K",
    xid: int | None = None,
) -> bytes:
    out = b"U" + xid_prefix(xid) + struct.pack(">I", oid)
    if old is not None:
        out += old_kind + enc_tuple(old)
    return out + b"N" + enc_tuple(new)


def enc_delete(oid: int, old: Iterable[object], kind: bytes = b"K", xid: int | None = None) -> bytes:
    return b"D" + xid_prefix(xid) + struct.pack(">I", oid) + kind + enc_tuple(old)


def enc_truncate(oids: list[int], options: int, xid: int | None = None) -> bytes:
    return b"T" + xid_prefix(xid) + struct.pack(f">IB{len(oids)}I", len(oids), options, *oids)


def enc_message(flags: int, lsn: int, prefix: str, content: bytes, xid: int | None = None) -> bytes:
    return (
        b"M"
        + xid_prefix(xid)
        + struct.pack(">BQ", flags, lsn)
        + cstr(prefix)
        + struct.pack(">I", len(content))
        + content
    )


def enc_stream_start(xid: int, first: bool) -> bytes:
    return b"S" + struct.pack(">IB", xid, int(first))


def enc_stream_stop() -> bytes:
    return b"E"


def enc_stream_commit(xid: int, flags: int, commit_lsn: int, end_lsn: int, ts_us: int) -> bytes:
    return b"c" + struct.pack(">IBQQq", xid, flags, commit_lsn, end_lsn, ts_us)


def enc_stream_abort(xid: int, sub_xid: int) -> bytes:
    return b"A" + struct.pack(">II", xid, sub_xid)


def t(s: str | bytes) -> tuple[str, bytes]:
    return ("t", s.encode() if isinstance(s, str) else s)


def b(data: bytes) -> tuple[str, bytes]:
    return ("b", data)


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------

TS_US = 784_111_777_123_456  # 2024-11-05T09:29:37.123456Z


def test_pg_timestamp_to_epoch() -> None:
    assert pg_timestamp_to_epoch(0) == 946_684_800.0
    expected = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=TS_US)
    assert pg_timestamp_to_epoch(TS_US) == pytest.approx(expected.timestamp(), abs=1e-6)
    assert pg_timestamp_to_epoch(-PG_EPOCH_US) == 0.0


def test_begin_commit_origin() -> None:
    d = PgOutputDecoder()
    assert d.decode(enc_begin(0x16B3748, TS_US, 731)) == Begin(0x16B3748, pg_timestamp_to_epoch(TS_US), 731)
    assert d.decode(enc_commit(0, 0x16B3748, 0x16B3778, TS_US)) == Commit(
        0, 0x16B3748, 0x16B3778, pg_timestamp_to_epoch(TS_US)
    )
    assert d.decode(enc_origin(0xFFFF_FFFF_0000_0001, "pg_16384")) == Origin(
        0xFFFF_FFFF_0000_0001, "pg_16384"
    )


def test_begin_extreme_values_are_unsigned() -> None:
    msg = PgOutputDecoder().decode(enc_begin(2**64 - 1, 0, 2**32 - 1))
    assert msg == Begin(2**64 - 1, 946_684_800.0, 2**32 - 1)


def test_relation_is_decoded_and_cached() -> None:
    d = PgOutputDecoder()
    payload = enc_relation(
        16385,
        "public",
        "checkpoints",
        "d",
        [("thread_id", 25, -1, True), ("ckpt", 3802, -1, False), ("näme", 1043, 68, False)],
    )
    rel = d.decode(payload)
    assert rel == Relation(
        16385,
        "public",
        "checkpoints",
        "d",
        (
            Column("thread_id", 25, -1, True),
            Column("ckpt", 3802, -1, False),
            Column("näme", 1043, 68, False),
        ),
    )
    assert isinstance(rel, Relation)
    assert rel.qualified_name == "public.checkpoints"
    assert 16385 in d.relations
    assert d.relations.get(16385) is rel
    assert len(d.relations) == 1


def test_relation_with_zero_columns() -> None:
    rel = PgOutputDecoder().decode(enc_relation(1, "s", "empty", "n", []))
    assert rel == Relation(1, "s", "empty", "n", ())


def test_type() -> None:
    assert PgOutputDecoder().decode(enc_type(90001, "public", "mood")) == Type(90001, "public", "mood")


def test_insert_with_every_value_kind() -> None:
    msg = PgOutputDecoder().decode(
        enc_insert(7, [None, UNCHANGED_TOAST, t("héllo"), b(b"\x00\x01\xff"), t("")])
    )
    assert isinstance(msg, Insert)
    assert msg.relation_oid == 7 and msg.xid is None
    null, toast, text, binary, empty = msg.new
    assert null is None
    assert toast is UNCHANGED_TOAST and toast is not None
    assert isinstance(text, TextValue) and text == "héllo".encode() and text.kind == "t"
    assert isinstance(binary, BinaryValue) and binary == b"\x00\x01\xff" and binary.kind == "b"
    assert type(binary) is BinaryValue and type(text) is TextValue
    assert isinstance(empty, TextValue) and empty == b""
    assert "TextValue" in repr(text) and repr(toast) == "UNCHANGED_TOAST"


def test_insert_with_zero_columns() -> None:
    assert PgOutputDecoder().decode(enc_insert(7, [])) == Insert(7, ())


def test_update_variants() -> None:
    d = PgOutputDecoder()
    plain = d.decode(enc_update(5, [t("a"), UNCHANGED_TOAST]))
    assert plain == Update(5, None, (TextValue(b"a"), UNCHANGED_TOAST), False)
    keyed = d.decode(enc_update(5, [t("b"), t("x")], old=[t("a"), None], old_kind=b"K"))
    assert isinstance(keyed, Update)
    assert keyed.old == (b"a", None) and keyed.old_is_key
    full = d.decode(enc_update(5, [t("b"), t("x")], old=[t("a"), t("y")], old_kind=b"O"))
    assert isinstance(full, Update)
    assert full.old == (b"a", b"y") and not full.old_is_key
    assert full.new == (b"b", b"x")


def test_delete_variants() -> None:
    d = PgOutputDecoder()
    key = d.decode(enc_delete(5, [t("a"), None], b"K"))
    assert key == Delete(5, (TextValue(b"a"), None), True)
    full = d.decode(enc_delete(5, [t("a"), b(b"\x01")], b"O"))
    assert isinstance(full, Delete)
    assert not full.old_is_key and full.old == (b"a", b"\x01")


def test_truncate() -> None:
    d = PgOutputDecoder()
    assert d.decode(enc_truncate([16385, 16390], 3)) == Truncate((16385, 16390), 3)
    assert d.decode(enc_truncate([], 0)) == Truncate((), 0)


def test_logical_message() -> None:
    d = PgOutputDecoder()
    msg = d.decode(enc_message(1, 0x1234, "langgraph", b"\x00payload\xff"))
    assert msg == Message(1, 0x1234, "langgraph", b"\x00payload\xff")
    assert isinstance(msg, Message) and msg.transactional
    assert not Message(0, 1, "p", b"").transactional
    assert d.decode(enc_message(0, 9, "", b"")) == Message(0, 9, "", b"")


def test_stream_messages_and_xid_prefix() -> None:
    d = PgOutputDecoder()
    cols = [("id", 23, -1, True), ("v", 25, -1, False)]
    assert d.decode(enc_stream_start(900, True)) == StreamStart(900, True)
    assert d.in_stream and d.stream_xid == 900
    # Origin never carries an xid, even right after StreamStart.
    assert d.decode(enc_origin(0, "pg_1")) == Origin(0, "pg_1")
    rel = d.decode(enc_relation(42, "public", "t", "d", cols, xid=900))
    assert isinstance(rel, Relation) and rel.xid == 900 and rel.name == "t"
    assert d.decode(enc_type(90001, "public", "mood", xid=900)) == Type(90001, "public", "mood", 900)
    ins = d.decode(enc_insert(42, [b(struct.pack(">i", 1)), t("x")], xid=901))
    assert ins == Insert(42, (BinaryValue(struct.pack(">i", 1)), TextValue(b"x")), 901)
    upd = d.decode(
        enc_update(
            42, [b(struct.pack(">i", 2)), UNCHANGED_TOAST], old=[b(struct.pack(">i", 1)), None], xid=900
        )
    )
    assert isinstance(upd, Update) and upd.xid == 900 and upd.old_is_key
    assert d.decode(enc_delete(42, [b(struct.pack(">i", 2)), None], xid=900)) == Delete(
        42, (BinaryValue(struct.pack(">i", 2)), None), True, 900
    )
    assert d.decode(enc_truncate([42], 1, xid=900)) == Truncate((42,), 1, 900)
    assert d.decode(enc_message(1, 5, "p", b"c", xid=900)) == Message(1, 5, "p", b"c", 900)
    assert d.decode(enc_stream_stop()) == StreamStop()
    assert not d.in_stream and d.stream_xid is None
    # Outside the stream the same messages have no xid.
    assert d.decode(enc_insert(42, [None, None])) == Insert(42, (None, None))
    assert d.decode(enc_stream_start(900, False)) == StreamStart(900, False)
    assert d.decode(enc_stream_stop()) == StreamStop()
    assert d.decode(enc_stream_commit(900, 0, 0x100, 0x180, TS_US)) == StreamCommit(
        900, 0, 0x100, 0x180, pg_timestamp_to_epoch(TS_US)
    )
    assert d.decode(enc_stream_abort(900, 901)) == StreamAbort(900, 901)
    assert d.row(42, (BinaryValue(b"\x00\x00\x00\x07"), TextValue(b"x"))) == {"id": 7, "v": "x"}


def test_stream_state_violations() -> None:
    d = PgOutputDecoder()
    with pytest.raises(PgOutputError, match="StreamStop outside a stream"):
        d.decode(enc_stream_stop())
    d.decode(enc_stream_start(1, True))
    with pytest.raises(PgOutputError, match="inside the stream of xid 1"):
        d.decode(enc_stream_start(2, True))


def test_stream_xid_mismatch_is_caught_by_length_check() -> None:
    """Decoding a streamed message without stream state leaves bytes over; that must not pass silently."""
    d = PgOutputDecoder()
    with pytest.raises(PgOutputError):
        d.decode(enc_insert(42, [t("x")], xid=900))


def test_reset_forgets_stream_and_relations() -> None:
    d = PgOutputDecoder()
    d.decode(enc_relation(1, "s", "t", "d", [("a", 25, -1, True)]))
    d.decode(enc_stream_start(3, True))
    d.reset()
    assert not d.in_stream and d.stream_xid is None and 1 not in d.relations


def test_decode_accepts_bytearray_and_memoryview() -> None:
    payload = enc_insert(7, [t("a")])
    expected = Insert(7, (TextValue(b"a"),))
    assert PgOutputDecoder().decode(bytearray(payload)) == expected
    assert PgOutputDecoder().decode(memoryview(payload)) == expected


def test_unchanged_toast_is_a_singleton() -> None:
    assert copy.deepcopy(UNCHANGED_TOAST) is UNCHANGED_TOAST
    assert pickle.loads(pickle.dumps(UNCHANGED_TOAST)) is UNCHANGED_TOAST
    assert UNCHANGED_TOAST is not None and UNCHANGED_TOAST != None  # noqa: E711


def test_messages_are_frozen() -> None:
    msg = Begin(1, 2.0, 3)
    with pytest.raises(AttributeError):
        msg.xid = 4  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# Errors on malformed input
# ------------------------------------------------------------------------------------------------

REL_COLS = [("id", 23, -1, True), ("data", 17, -1, False)]


def all_fixtures() -> list[tuple[bool, bytes]]:
    """(in_stream, payload) for every message type, including stream variants."""
    row = [b(struct.pack(">i", 1)), t("\\x00ff")]
    return [
        (False, enc_begin(1, TS_US, 2)),
        (False, enc_commit(0, 1, 2, TS_US)),
        (False, enc_origin(5, "origin")),
        (False, enc_relation(42, "public", "t", "d", REL_COLS)),
        (False, enc_type(9, "public", "mood")),
        (False, enc_insert(42, row)),
        (False, enc_update(42, row, old=[t("1"), None])),
        (False, enc_update(42, [UNCHANGED_TOAST, None])),
        (False, enc_delete(42, [t("1"), None])),
        (False, enc_truncate([42, 43], 1)),
        (False, enc_message(1, 2, "prefix", b"content")),
        (False, enc_stream_start(5, True)),
        (False, enc_stream_commit(5, 0, 1, 2, TS_US)),
        (False, enc_stream_abort(5, 6)),
        (True, enc_stream_stop()),
        (True, enc_relation(42, "public", "t", "d", REL_COLS, xid=5)),
        (True, enc_type(9, "public", "mood", xid=5)),
        (True, enc_insert(42, row, xid=5)),
        (True, enc_update(42, row, old=[t("1"), None], old_kind=b"O", xid=5)),
        (True, enc_delete(42, [t("1"), None], xid=5)),
        (True, enc_truncate([42], 0, xid=5)),
        (True, enc_message(1, 2, "prefix", b"content", xid=5)),
    ]


def fresh_decoder(in_stream: bool) -> PgOutputDecoder:
    d = PgOutputDecoder()
    if in_stream:
        d.decode(enc_stream_start(5, True))
    return d


@pytest.mark.parametrize(("in_stream", "payload"), all_fixtures(), ids=lambda v: repr(v)[:20])
def test_every_truncation_raises_pgoutput_error(in_stream: bool, payload: bytes) -> None:
    fresh_decoder(in_stream).decode(payload)  # the whole message is valid
    for cut in range(1, len(payload)):
        with pytest.raises(PgOutputError, match=r"pgoutput \w+ message: .* at offset \d+"):
            fresh_decoder(in_stream).decode(payload[:cut])


@pytest.mark.parametrize(("in_stream", "payload"), all_fixtures(), ids=lambda v: repr(v)[:20])
def test_trailing_bytes_raise(in_stream: bool, payload: bytes) -> None:
    with pytest.raises(PgOutputError, match="trailing bytes"):
        fresh_decoder(in_stream).decode(payload + b"\x00")


def test_random_corruption_only_ever_raises_pgoutput_error() -> None:
    rng = random.Random(1234)
    fixtures = all_fixtures()
    for _ in range(5000):
        in_stream, payload = rng.choice(fixtures)
        mutated = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(1, len(mutated)) if len(mutated) > 1 else 0
            mutated[pos] = rng.randrange(256)
        with contextlib.suppress(PgOutputError):
            fresh_decoder(in_stream).decode(bytes(mutated))


def test_truncated_error_names_type_and_offset() -> None:
    payload = enc_insert(42, [t("abcdef")])
    with pytest.raises(
        PgOutputError, match=r"Insert message: truncated tuple column 0: need 6 bytes, have 3"
    ):
        PgOutputDecoder().decode(payload[:-3])
    with pytest.raises(PgOutputError, match=r"Begin message: truncated Begin fields.* at offset 1"):
        PgOutputDecoder().decode(enc_begin(1, 2, 3)[:10])
    with pytest.raises(PgOutputError, match=r"Relation message: unterminated string namespace at offset 5"):
        PgOutputDecoder().decode(b"R" + struct.pack(">I", 1) + b"publ")


def test_bad_markers_and_kinds() -> None:
    d = PgOutputDecoder()
    with pytest.raises(PgOutputError, match="expected 'N'"):
        d.decode(b"I" + struct.pack(">I", 1) + b"X" + enc_tuple([]))
    with pytest.raises(PgOutputError, match="expected 'N'"):
        d.decode(b"U" + struct.pack(">I", 1) + b"K" + enc_tuple([]) + b"X" + enc_tuple([]))
    with pytest.raises(PgOutputError, match="expected 'K' or 'O'"):
        d.decode(b"D" + struct.pack(">I", 1) + b"N" + enc_tuple([]))
    with pytest.raises(PgOutputError, match="unknown tuple column kind 0x78 for column 0"):
        d.decode(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"x")
    with pytest.raises(PgOutputError, match="negative tuple column count"):
        d.decode(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", -1))
    with pytest.raises(PgOutputError, match="truncated tuple column 0: need -5 bytes"):
        d.decode(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", -5))
    with pytest.raises(PgOutputError, match="not UTF-8"):
        d.decode(b"O" + struct.pack(">Q", 1) + b"\xff\xfe\x00")


def test_unknown_and_unsupported_message_types() -> None:
    d = PgOutputDecoder()
    with pytest.raises(PgOutputError, match="empty payload"):
        d.decode(b"")
    with pytest.raises(PgOutputError, match="unknown message type 0x5a"):
        d.decode(b"Z\x00")
    with pytest.raises(PgOutputError, match="two-phase"):
        d.decode(b"b" + bytes(20))


# ------------------------------------------------------------------------------------------------
# Value conversion
# ------------------------------------------------------------------------------------------------


def rel_of(*cols: tuple[str, int] | tuple[str, int, bool], oid: int = 100) -> Relation:
    columns = tuple(Column(c[0], c[1], -1, bool(c[2]) if len(c) > 2 else False) for c in cols)
    return Relation(oid, "public", "things", "d", columns)


def one(type_oid: int, value: Value) -> object:
    return tuple_to_dict(rel_of(("c", type_oid)), (value,))["c"]


PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
WHEN = datetime(2024, 11, 5, 9, 29, 37, 123456, tzinfo=UTC)
WHEN_US = (WHEN - PG_EPOCH) // timedelta(microseconds=1)
UID = UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
DOC = {"v": 1, "nested": {"pi": 3.25, "list": [1, "two", None, True], "ü": "ñ"}, "e": 1.5e-7}

# (type oid, binary send bytes, text output bytes, expected python value)
CASES: list[tuple[int, bytes, bytes, object]] = [
    (25, "héllo ✓ 🎉".encode(), "héllo ✓ 🎉".encode(), "héllo ✓ 🎉"),
    (1043, b"varchar", b"varchar", "varchar"),
    (1042, b"pad  ", b"pad  ", "pad  "),
    (19, b"a_name", b"a_name", "a_name"),
    (17, b"\x00\x01\xfe\xff\\x", b"\\x0001feff5c78", b"\x00\x01\xfe\xff\\x"),
    (17, b"", b"\\x", b""),
    (3802, b"\x01" + json.dumps(DOC).encode(), json.dumps(DOC).encode(), DOC),
    (114, b'{"a": [1, 2.5]}', b'{"a": [1, 2.5]}', {"a": [1, 2.5]}),
    (3802, b"\x01null", b"null", None),
    (21, struct.pack(">h", -32768), b"-32768", -32768),
    (21, struct.pack(">h", 32767), b"32767", 32767),
    (23, struct.pack(">i", -(2**31)), b"-2147483648", -(2**31)),
    (23, struct.pack(">i", 123456), b"123456", 123456),
    (20, struct.pack(">q", 2**63 - 1), b"9223372036854775807", 2**63 - 1),
    (20, struct.pack(">q", -5), b"-5", -5),
    (16, b"\x01", b"t", True),
    (16, b"\x00", b"f", False),
    (700, struct.pack(">f", 0.1), b"0.1", 0.1),
    (700, struct.pack(">f", 3.4028235e38), b"3.4028235e+38", 3.4028235e38),
    (700, struct.pack(">f", -1.5), b"-1.5", -1.5),
    (701, struct.pack(">d", 0.1), b"0.1", 0.1),
    (701, struct.pack(">d", -2.5e-300), b"-2.5e-300", -2.5e-300),
    (701, struct.pack(">d", float("inf")), b"Infinity", float("inf")),
    (701, struct.pack(">d", float("-inf")), b"-Infinity", float("-inf")),
    (26, struct.pack(">I", 4294967295), b"4294967295", 4294967295),
    (1184, struct.pack(">q", WHEN_US), b"2024-11-05 09:29:37.123456+00", WHEN),
    (1184, struct.pack(">q", WHEN_US), b"2024-11-05 11:29:37.123456+02", WHEN),
    (1184, struct.pack(">q", 0), b"2000-01-01 00:00:00+00", PG_EPOCH),
    (1184, struct.pack(">q", -1), b"1999-12-31 23:59:59.999999+00", PG_EPOCH - timedelta(microseconds=1)),
    (1114, struct.pack(">q", WHEN_US), b"2024-11-05 09:29:37.123456", WHEN),
    (1184, struct.pack(">q", 2**63 - 1), b"infinity", datetime.max.replace(tzinfo=UTC)),
    (1114, struct.pack(">q", -(2**63)), b"-infinity", datetime.min.replace(tzinfo=UTC)),
    (2950, UID.bytes, str(UID).encode(), str(UID)),
]


@pytest.mark.parametrize(("type_oid", "binary", "text", "expected"), CASES, ids=lambda v: repr(v)[:24])
def test_binary_and_text_conversion(type_oid: int, binary: bytes, text: bytes, expected: object) -> None:
    from_binary = one(type_oid, BinaryValue(binary))
    from_text = one(type_oid, TextValue(text))
    assert from_binary == expected
    assert from_text == expected
    assert type(from_binary) is type(expected)
    assert type(from_text) is type(expected)
    if isinstance(expected, datetime):
        assert isinstance(from_binary, datetime) and isinstance(from_text, datetime)
        assert from_binary.tzinfo is not None and from_binary.utcoffset() == timedelta(0)
        assert from_text.tzinfo is not None and from_text.utcoffset() == timedelta(0)


def test_float_nan() -> None:
    for type_oid, data in ((700, struct.pack(">f", float("nan"))), (701, struct.pack(">d", float("nan")))):
        value = one(type_oid, BinaryValue(data))
        assert isinstance(value, float) and value != value
        text_value = one(type_oid, TextValue(b"NaN"))
        assert isinstance(text_value, float) and text_value != text_value


def test_float4_binary_keeps_exact_value_when_no_short_form() -> None:
    # A float32 whose shortest repr needs 9 digits still round-trips.
    data = struct.pack(">f", 16777217.0)
    value = one(700, BinaryValue(data))
    assert isinstance(value, float) and struct.pack(">f", value) == data


def test_bytea_escape_format() -> None:
    assert one(17, TextValue(b"ab\\000\\\\c\\377")) == b"ab\x00\\c\xff"


def test_bytea_binary_returns_plain_bytes() -> None:
    value = one(17, BinaryValue(b"\x00\x01"))
    assert type(value) is bytes and value == b"\x00\x01"


def test_null_and_unchanged_toast_pass_through() -> None:
    rel = rel_of(("a", 17), ("b", 3802), ("c", 23))
    assert tuple_to_dict(rel, (UNCHANGED_TOAST, None, BinaryValue(struct.pack(">i", 3)))) == {
        "a": UNCHANGED_TOAST,
        "b": None,
        "c": 3,
    }


def test_key_only_returns_replica_identity_columns() -> None:
    rel = rel_of(("thread_id", 25, True), ("blob", 17, False), ("idx", 23, True))
    values = (TextValue(b"t1"), None, BinaryValue(struct.pack(">i", 4)))
    assert tuple_to_dict(rel, values, key_only=True) == {"thread_id": "t1", "idx": 4}
    assert tuple_to_dict(rel, values) == {"thread_id": "t1", "blob": None, "idx": 4}


def test_unknown_type_oid_names_relation_column_and_oid() -> None:
    rel = rel_of(("id", 23, True), ("amount", 1700))
    with pytest.raises(
        PgOutputError, match=r"public\.things \(oid 100\) column 'amount' has unsupported type oid 1700"
    ):
        tuple_to_dict(rel, (BinaryValue(struct.pack(">i", 1)), None))
    # Only the key columns are converted for a key tuple, so an exotic non-key type does not matter there.
    assert tuple_to_dict(rel, (BinaryValue(struct.pack(">i", 1)), None), key_only=True) == {"id": 1}


@pytest.mark.parametrize(
    ("type_oid", "value"),
    [
        (23, BinaryValue(b"\x00\x01\x02")),
        (21, BinaryValue(b"\x00")),
        (20, TextValue(b"12x")),
        (16, TextValue(b"yes")),
        (16, BinaryValue(b"")),
        (3802, BinaryValue(b"\x02{}")),
        (3802, BinaryValue(b"")),
        (3802, TextValue(b"{not json")),
        (25, BinaryValue(b"\xff\xfe")),
        (17, TextValue(b"\\xZZ")),
        (17, TextValue(b"\\x0")),
        (2950, BinaryValue(b"\x00" * 15)),
        (1184, TextValue(b"yesterday")),
        (1184, BinaryValue(b"\x00" * 7)),
        (1114, BinaryValue(struct.pack(">q", 2**62))),  # beyond Python's datetime range
        (700, BinaryValue(b"\x00" * 8)),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_bad_values_raise_pgoutput_error(type_oid: int, value: Value) -> None:
    with pytest.raises(
        PgOutputError, match=rf"public\.things \(oid 100\) column 'c' \(type oid {type_oid}\)"
    ):
        one(type_oid, value)


def test_column_count_mismatch() -> None:
    with pytest.raises(PgOutputError, match="has 2 columns but the tuple has 1"):
        tuple_to_dict(rel_of(("a", 25), ("b", 25)), (None,))


def test_relation_cache_plans_follow_schema_changes() -> None:
    d = PgOutputDecoder()
    d.decode(enc_relation(42, "public", "t", "d", [("id", 23, -1, True), ("v", 23, -1, False)]))
    ins = d.decode(enc_insert(42, [b(struct.pack(">i", 1)), b(struct.pack(">i", 2))]))
    assert isinstance(ins, Insert)
    assert d.row(ins.relation_oid, ins.new) == {"id": 1, "v": 2}
    assert d.row(ins.relation_oid, ins.new, key_only=True) == {"id": 1}
    # ALTER TABLE ... TYPE text: a new Relation message must replace the cached plan.
    d.decode(enc_relation(42, "public", "t", "d", [("id", 23, -1, True), ("v", 25, -1, False)]))
    ins2 = d.decode(enc_insert(42, [b(struct.pack(">i", 1)), t("two")]))
    assert isinstance(ins2, Insert)
    assert d.row(42, ins2.new) == {"id": 1, "v": "two"}


def test_relation_cache_unknown_relation() -> None:
    cache = RelationCache()
    with pytest.raises(PgOutputError, match="no Relation message seen for relation oid 77"):
        cache.to_dict(77, ())
    with pytest.raises(PgOutputError, match="relation oid 77"):
        PgOutputDecoder(cache).row(77, ())


def test_shared_relation_cache() -> None:
    cache = RelationCache()
    PgOutputDecoder(cache).decode(enc_relation(1, "s", "t", "d", [("a", 25, -1, True)]))
    assert cache.to_dict(1, (TextValue(b"x"),)) == {"a": "x"}
    cache.clear()
    assert 1 not in cache


def test_large_binary_value_round_trip() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    d = PgOutputDecoder()
    d.decode(enc_relation(3, "public", "blobs", "d", [("k", 25, -1, True), ("blob", 17, -1, False)]))
    msg = d.decode(enc_insert(3, [t("k"), b(big)]))
    assert isinstance(msg, Insert)
    assert d.row(3, msg.new) == {"k": "k", "blob": big}


def test_invalid_message_leaves_state_untouched() -> None:
    d = PgOutputDecoder()
    with pytest.raises(PgOutputError, match="trailing bytes"):
        d.decode(enc_relation(1, "s", "t", "d", [("a", 25, -1, True)]) + b"\x00")
    assert 1 not in d.relations
    with pytest.raises(PgOutputError, match="trailing bytes"):
        d.decode(enc_stream_start(3, True) + b"\x00")
    assert not d.in_stream
    d.decode(enc_stream_start(3, True))
    with pytest.raises(PgOutputError, match="trailing bytes"):
        d.decode(enc_stream_stop() + b"\x00")
    assert d.in_stream and d.stream_xid == 3
