"""Events to Kafka records and back, including events split across records."""

from __future__ import annotations

import pytest

from replicator.codec import Reassembler, batch_record, decode_record, decode_value, encode, encode_value
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import (
    BlobChange,
    BlobKey,
    CheckpointChange,
    CheckpointKey,
    Control,
    ControlKind,
    Op,
    SourceMeta,
    ThreadDeletion,
    WriteChange,
    WriteKey,
)

META = SourceMeta(position=42, commit_ts=1.5, xid=7, seq=3, table="checkpoint_blobs")


def blob(size: int, thread: str = "t-ü") -> BlobChange:
    return BlobChange(
        op=Op.UPSERT,
        key=BlobKey(thread, "sub:1", "messages", "00001.5"),
        source=META,
        type="msgpack",
        data=bytes(range(256)) * (size // 256) + b"x" * (size % 256),
    )


@pytest.mark.parametrize(
    "event",
    [
        blob(10),
        CheckpointChange(
            op=Op.UPSERT,
            key=CheckpointKey("t", "", "1ef"),
            source=META,
            parent_checkpoint_id=None,
            checkpoint={"v": 4, "channel_values": {"n": 1.5, "s": "✓"}},
            metadata={"step": -1},
        ),
        CheckpointChange(op=Op.DELETE, key=CheckpointKey("t", "", "1ef"), source=META),
        WriteChange(
            op=Op.UPSERT,
            key=WriteKey("t", "", "1ef", "task", -3),
            source=META,
            channel="__interrupt__",
            type="msgpack",
            data=b"\x90",
            task_path="~__pregel_pull, review",
        ),
        ThreadDeletion(thread_id="t", source=META),
        Control(kind=ControlKind.HEARTBEAT, source=SourceMeta(position=99)),
    ],
)
def test_round_trip(event: object) -> None:
    (record,) = encode(event, 1_000_000)  # type: ignore[arg-type]
    assert Reassembler().feed(0, record.value, record.headers) == [event]


def test_key_is_the_thread_and_control_events_have_none() -> None:
    assert encode(blob(1, thread="thread-ß"), 1_000_000)[0].key == "thread-ß".encode()
    assert encode(Control(kind=ControlKind.HEARTBEAT, source=META), 1_000_000)[0].key is None


def test_large_event_is_split_below_the_limit_and_reassembled() -> None:
    event = blob(3_500_000)
    records = encode(event, 1_000_000)
    assert len(records) == 4
    assert all(len(r.value) + len(r.key or b"") < 1_000_000 for r in records)
    assembler = Reassembler()
    results = [assembler.feed(i, r.value, r.headers) for i, r in enumerate(records)]
    assert results[:-1] == [[], [], []] and results[-1] == [event]


def test_offsets_commit_only_below_an_incomplete_split_event() -> None:
    records = encode(blob(2_500_000), 1_000_000)
    assembler = Reassembler()
    assembler.feed(10, records[0].value, records[0].headers)
    assembler.feed(11, records[1].value, records[1].headers)
    assert assembler.safe_commit(12) == 10  # a crash now replays the whole set
    assembler.feed(12, records[2].value, records[2].headers)
    assert assembler.safe_commit(13) == 13


def test_a_set_interrupted_by_a_crash_is_abandoned_and_the_resent_set_wins() -> None:
    first = encode(blob(2_500_000), 1_000_000)
    again = encode(blob(2_500_000), 1_000_000)  # re-sent after a publisher restart: new set id
    assembler = Reassembler()
    assembler.feed(0, first[0].value, first[0].headers)
    assert assembler.feed(1, again[0].value, again[0].headers) == []
    assert assembler.abandoned == 1
    assert assembler.feed(2, again[1].value, again[1].headers) == []
    assert assembler.feed(3, again[2].value, again[2].headers) == [blob(2_500_000)]


def test_stray_piece_without_its_start_is_skipped() -> None:
    records = encode(blob(2_500_000), 1_000_000)
    assembler = Reassembler()
    assert assembler.feed(5, records[1].value, records[1].headers) == []
    assert assembler.safe_commit(6) == 6


@pytest.mark.parametrize(
    ("value", "headers", "fragment"),
    [
        (b"\xc1", [("lgr-v", b"1")], "undecodable event"),
        (b"\x80", [("lgr-v", b"1")], "undecodable event"),
        (b"\x80", [], "event format None"),
        (b"\x80", [("lgr-v", b"9")], "event format b'9'"),
        (b"\x90", [("lgr-v", b"2")], "an empty batch"),
        (b"\x91\x80", [("lgr-v", b"2")], "undecodable batch"),
        (None, [("lgr-v", b"1")], "has no value"),
        (b"x", [("lgr-v", b"1"), ("lgr-chunk", b"nonsense")], "bad chunk header"),
    ],
)
def test_malformed_records_are_named(
    value: bytes | None, headers: list[tuple[str, bytes]], fragment: str
) -> None:
    with pytest.raises(ReplicatorError) as raised:
        Reassembler().feed(7, value, headers)
    assert raised.value.kind is ErrorKind.MALFORMED_EVENT
    assert fragment in str(raised.value)


@pytest.mark.parametrize("count", [1, 2, 15, 16, 70_000])
def test_a_batch_record_holds_one_threads_events_in_order(count: int) -> None:
    """Array headers of every msgpack width: fixarray (< 16), array 16, array 32."""
    events = [blob(i % 40, thread="t-1") for i in range(count)]
    record = batch_record(b"t-1", [encode_value(e) for e in events])
    assert record.key == b"t-1"
    assert dict(record.headers)["lgr-v"] == (b"1" if count == 1 else b"2")
    assert Reassembler().feed(3, record.value, record.headers) == events
    assert decode_record(record.value, record.headers) == events


def test_a_batch_record_between_pieces_abandons_the_incomplete_set() -> None:
    pieces = encode(blob(2_500_000), 1_000_000)
    batch = batch_record(b"t", [encode_value(blob(1)), encode_value(blob(2))])
    assembler = Reassembler()
    assembler.feed(0, pieces[0].value, pieces[0].headers)
    assert assembler.feed(1, batch.value, batch.headers) == [blob(1), blob(2)]
    assert assembler.abandoned == 1 and assembler.safe_commit(2) == 2


def test_decode_rejects_an_unknown_entity() -> None:
    with pytest.raises(ReplicatorError):
        decode_value(b"\x81\xa6entity\xa4nope")


def test_the_source_position_keeps_its_wire_name() -> None:
    """Topics written before the rename (``lsn``) still decode, and new records read the same."""
    import msgspec

    encoded = msgspec.msgpack.encode(SourceMeta(position=7, seq=1))
    assert msgspec.msgpack.decode(encoded) == {"lsn": 7, "seq": 1}
    assert msgspec.msgpack.decode(msgspec.msgpack.encode({"lsn": 9}), type=SourceMeta).position == 9
