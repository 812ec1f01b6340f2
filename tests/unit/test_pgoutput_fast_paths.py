"""The decoder's hot-path representations behave exactly like the ones they replaced.

* JSON and JSONB columns are decoded with msgspec instead of ``json.loads``: same values, same types
  (int vs float vs bool), same key order, and the same outcome for inputs msgspec refuses.
* The per-transaction and per-row messages (Begin, Commit, Insert, Update, Delete) and RawMessage are
  frozen msgspec Structs instead of frozen dataclasses: same fields, positional and keyword
  construction, defaults, immutability, hashing, equality by type and fields, pattern matching.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from connectors.sources.postgres import pgoutput
from connectors.sources.postgres.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    BinaryValue,
    Column,
    Commit,
    Delete,
    Insert,
    PgOutputError,
    Relation,
    TextValue,
    Update,
    tuple_to_dict,
)
from connectors.sources.postgres.stream import RawMessage


def strictly_equal(a: Any, b: Any, path: str = "$") -> None:
    """Equal values of identical types, dict keys in the same order; floats bit for bit."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            strictly_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            strictly_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b)), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def pg_numeric(value: float, rnd: random.Random) -> str:
    """A number as JSON text may hold it: Python's repr, fixed notation (jsonb's numeric output
    never uses an exponent) or trailing zeros."""
    form = rnd.randrange(4)
    if form == 0:
        return repr(value)
    if form == 1:
        return f"{value:.{rnd.randrange(0, 20)}f}"
    if form == 2:
        return f"{value:.{rnd.randrange(1, 25)}e}"
    return f"{value!r}00" if "e" not in repr(value) and "." in repr(value) else repr(value)


def random_text(rnd: random.Random) -> str:
    alphabet = 'aZ09 _-#:|."\\/\b\f\n\r\t\x01\x1fäöüßéñ日本語中文한국어🙂🦊🚀\u2028\u2029\ufeff'
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 24)))


def random_number_text(rnd: random.Random) -> str:
    kind = rnd.randrange(6)
    if kind == 0:
        return str(rnd.randrange(-(2**70), 2**70))  # beyond int64 and uint64
    if kind == 1:
        return str(rnd.choice([0, -1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**64), 10**40]))
    if kind == 2:  # any finite double, from random bits
        while True:
            (value,) = struct.unpack(">d", rnd.getrandbits(64).to_bytes(8, "big"))
            if math.isfinite(value):
                return pg_numeric(value, rnd)
    if kind == 3:
        return pg_numeric(rnd.uniform(-1e6, 1e6), rnd)
    if kind == 4:  # more digits than a double holds; ties and near-ties in rounding
        return rnd.choice(["0.1000000000000000055511151231257827", "9007199254740993", "9007199254740993.0"])
    return rnd.choice(["1.0", "-0.0", "0.000001", "1E+2", "2.5e-7", "1e308", "5e-324", "4.9e-324", "1e-400"])


def random_json(rnd: random.Random, depth: int = 0) -> str:
    """JSON text shaped like a checkpoint: nested objects, lists, unicode, numbers of every kind."""
    kind = rnd.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return json.dumps(random_text(rnd), ensure_ascii=rnd.random() < 0.5)
    if kind == 1:
        return random_number_text(rnd)
    if kind == 2:
        return rnd.choice(["true", "false", "null"])
    if kind == 3:
        return json.dumps(rnd.choice(["", "ü", "\u0000", "\ud83e\udd8a", "a\\b"]))
    if kind in (4, 5):
        items = [
            f"{json.dumps(random_text(rnd), ensure_ascii=rnd.random() < 0.5)}: {random_json(rnd, depth + 1)}"
            for _ in range(rnd.randrange(0, 6))
        ]
        return "{" + ", ".join(items) + "}"
    return "[" + ", ".join(random_json(rnd, depth + 1) for _ in range(rnd.randrange(0, 6))) + "]"


def checkpoint_json(rnd: random.Random) -> str:
    """A PostgresSaver checkpoint as jsonb prints it (", " and ": " separators, sorted by key length)."""
    channels = ["messages", "counter", "note", "approved", "attachment", "branch:to:review", "__start__"]
    versions = {ch: f"{rnd.randrange(1, 40):032}.{rnd.random():016}" for ch in channels}
    doc = {
        "v": 4,
        "id": "1f0c8e2a-6b7d-6d3e-8003-0242ac120002",
        "ts": "2026-11-25T09:29:37.123456+00:00",
        "channel_values": {
            "counter": rnd.randrange(10**6),
            "note": "ünïcödé · 日本語 · emoji 🧠",
            "approved": "yes",
        },
        "channel_versions": versions,
        "versions_seen": {"__input__": {}, "prepare": {"branch:to:prepare": versions["__start__"]}},
        "updated_channels": ["counter", "messages"],
    }
    return json.dumps(doc, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(8))
def test_json_and_jsonb_decode_like_json_loads(seed: int) -> None:
    rnd = random.Random(seed)
    texts = [random_json(rnd) for _ in range(300)] + [checkpoint_json(rnd) for _ in range(20)]
    for text in texts:
        data = text.encode()
        expected = json.loads(data)
        strictly_equal(pgoutput._jsonb_binary(BinaryValue(b"\x01" + data)), expected)
        strictly_equal(pgoutput._json_text(TextValue(data)), expected)
        strictly_equal(pgoutput._json_text(BinaryValue(data)), expected)


@pytest.mark.parametrize(
    "text",
    [
        b"1e400",  # beyond the float range: json.loads gives inf, msgspec refuses
        b"[-1.8e308]",
        b'"\\ud800"',  # a lone surrogate escape
        b'{"\\udfff": 1}',
        b"\xef\xbb\xbf{}",  # UTF-8 byte order mark
        '{"a": "ü"}'.encode("utf-16-le"),  # json.loads detects UTF-16/32
        '["ü"]'.encode("utf-32"),
        b"NaN",
        b"[Infinity, -Infinity]",
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8 (json.loads uses surrogatepass)
    ],
    ids=repr,
)
def test_inputs_msgspec_refuses_decode_as_json_loads_does(text: bytes) -> None:
    expected = json.loads(text)
    strictly_equal(pgoutput._json_text(TextValue(text)), expected)
    strictly_equal(pgoutput._jsonb_binary(BinaryValue(b"\x01" + text)), expected)


@pytest.mark.parametrize(
    "text", [b"{not json", b"[1,]", b"", b'"\xff"', b'"\x00"', b'{"a": 1}x', b"tru"], ids=repr
)
def test_invalid_json_fails_as_with_json_loads(text: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    rel = Relation(
        1, "public", "checkpoints", "d", (Column("j", 3802, -1, False), Column("k", 114, -1, False))
    )
    for values in [(BinaryValue(b"\x01" + text), None), (TextValue(text), None), (None, BinaryValue(text))]:
        with pytest.raises(PgOutputError, match="cannot decode"):
            tuple_to_dict(rel, values)


def test_messages_keep_the_dataclass_behaviour() -> None:
    begin = Begin(1, 2.5, 3)
    assert begin == Begin(final_lsn=1, commit_ts=2.5, xid=3) and hash(begin) == hash(Begin(1, 2.5, 3))
    assert repr(begin) == "Begin(final_lsn=1, commit_ts=2.5, xid=3)"
    assert (begin.final_lsn, begin.commit_ts, begin.xid) == (1, 2.5, 3)
    commit = Commit(0, 10, 20, 2.5)
    assert (commit.flags, commit.commit_lsn, commit.end_lsn, commit.commit_ts) == (0, 10, 20, 2.5)

    new = (TextValue(b"a"), None, UNCHANGED_TOAST)
    insert = Insert(7, new)
    assert insert.xid is None and insert == Insert(7, new, None)
    update = Update(7, None, new)
    assert update.old_is_key is False and update.xid is None
    delete = Delete(7, new)
    assert delete.old_is_key is True and delete.xid is None

    # Compared by type and fields, never as tuples (a NamedTuple would equal any tuple).
    assert Insert(7, (), 5) != Delete(7, (), True, 5)
    assert begin != (1, 2.5, 3)
    assert Begin(1, 2.5, 3) != Begin(1, 2.5, 4)
    # Not iterable, immutable.
    with pytest.raises(TypeError):
        iter(begin)  # type: ignore[call-overload]
    with pytest.raises(AttributeError):
        insert.xid = 9  # type: ignore[misc]
    # Dispatch as the source does it.
    assert isinstance(update, Insert | Update | Delete) and not isinstance(begin, Insert | Update | Delete)
    match delete:
        case Delete(relation_oid=oid, old=old, old_is_key=True):
            assert oid == 7 and old is new
        case _:
            pytest.fail("keyword pattern did not match")
    match update:
        case Update(oid, None, values):
            assert oid == 7 and values is new
        case _:
            pytest.fail("positional pattern did not match")


def test_raw_message() -> None:
    raw = RawMessage(b"B...", 100, 200)
    assert raw == RawMessage(payload=b"B...", data_start=100, wal_end=200)
    assert (raw.payload, raw.data_start, raw.wal_end) == (b"B...", 100, 200)
    with pytest.raises(AttributeError):
        raw.wal_end = 1  # type: ignore[misc]
