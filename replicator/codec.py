"""Change events to Kafka records and back, splitting values that exceed the broker's limit.

Two record formats, named by the ``lgr-v`` header:

* ``1``: the value is the msgpack encoding of one event. An event larger than the configured
  ``max_message_bytes`` is cut into consecutive pieces of one key (so one partition, in order),
  each carrying a ``lgr-chunk`` header ``<id>:<index>:<count>``. The applier reassembles them and
  commits offsets only below the first piece of a set it has not completed, so a crash between
  pieces replays the whole set. Pieces of different sets never interleave in a partition: the
  single publisher sends each set's pieces back to back.
* ``2``: the value is a msgpack array of events of one thread (the record's key), in source
  order. kafka-python's cost is per record, not per byte (partitioning, the accumulator, a
  future per record): the publisher sends a thread's consecutive changes as one record
  (``batch_record``), which keeps per-thread order exactly as one record per event did.

Control events and the pieces of a split event always travel in format 1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgspec

from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import ChangeEvent, thread_of

FORMAT_VERSION = b"1"  # one event, or one piece of a split event
BATCH_FORMAT = b"2"  # a msgpack array of one thread's events
_VERSION_HEADER = "lgr-v"
_CHUNK_HEADER = "lgr-chunk"
# Room for key, headers and the record framing inside the broker's limit.
_RECORD_OVERHEAD = 4096

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[ChangeEvent] = msgspec.msgpack.Decoder(ChangeEvent)
_batch_decoder: msgspec.msgpack.Decoder[list[ChangeEvent]] = msgspec.msgpack.Decoder(list[ChangeEvent])

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes
    headers: Headers


def key_of(event: ChangeEvent) -> bytes | None:
    """The record key: the thread id, so one thread's changes share a partition."""
    thread = thread_of(event)
    return thread.encode("utf-8") if thread is not None else None


def encode_value(event: ChangeEvent) -> bytes:
    return _encoder.encode(event)


def budget(max_message_bytes: int, key: bytes | None) -> int:
    """The largest record value that fits the broker's limit beside ``key`` and the headers."""
    room = max_message_bytes - _RECORD_OVERHEAD - (len(key) if key else 0)
    if room <= 0:
        raise ReplicatorError(
            ErrorKind.CONFIG, f"kafka.max_message_bytes={max_message_bytes} leaves no room for a record"
        )
    return room


def encode(event: ChangeEvent, max_message_bytes: int) -> list[Record]:
    """One record, or several pieces when the event does not fit ``max_message_bytes``."""
    key = key_of(event)
    return single_records(key, encode_value(event), budget(max_message_bytes, key))


def single_records(key: bytes | None, value: bytes, room: int) -> list[Record]:
    """Format 1 for one encoded event: one record, or its pieces of at most ``room`` bytes."""
    if len(value) <= room:
        return [Record(key, value, [(_VERSION_HEADER, FORMAT_VERSION)])]
    set_id = uuid.uuid4().hex
    count = -(-len(value) // room)
    return [
        Record(
            key,
            value[i * room : (i + 1) * room],
            [(_VERSION_HEADER, FORMAT_VERSION), (_CHUNK_HEADER, f"{set_id}:{i}:{count}".encode())],
        )
        for i in range(count)
    ]


def batch_record(key: bytes | None, values: list[bytes]) -> Record:
    """Format 2: events of one thread, already encoded, as one record (a msgpack array)."""
    if len(values) == 1:
        return Record(key, values[0], [(_VERSION_HEADER, FORMAT_VERSION)])
    return Record(key, _array_header(len(values)) + b"".join(values), [(_VERSION_HEADER, BATCH_FORMAT)])


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def decode_value(value: bytes) -> ChangeEvent:
    try:
        return _decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"undecodable event: {exc}") from None


def decode_batch(value: bytes) -> list[ChangeEvent]:
    try:
        events = _batch_decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"undecodable batch of events: {exc}") from None
    if not events:
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, "an empty batch of events")
    return events


def decode_record(value: bytes, headers: Headers) -> list[ChangeEvent]:
    """The events of one whole record (not a piece of a split event), in either format."""
    version = dict(headers or []).get(_VERSION_HEADER)
    if version == BATCH_FORMAT:
        return decode_batch(value)
    return [decode_value(value)]


@dataclass
class _PendingSet:
    set_id: str
    first_offset: int
    count: int
    pieces: list[bytes] = field(default_factory=list)


@dataclass
class Reassembler:
    """Rebuilds split events of one partition; knows the lowest offset that is safe to commit."""

    pending: _PendingSet | None = None
    abandoned: int = 0

    def feed(self, offset: int, value: bytes | None, headers: Headers) -> list[ChangeEvent]:
        """The events this record completes: its own, the split event it ends, or none while a
        split event is incomplete."""
        if value is None:
            raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"record at offset {offset} has no value")
        header = dict(headers or [])
        version = header.get(_VERSION_HEADER)
        if version == BATCH_FORMAT:
            self._abandon()
            return decode_batch(value)
        if version != FORMAT_VERSION:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT,
                f"record at offset {offset} has event format {version!r}, expected {FORMAT_VERSION!r} "
                f"or {BATCH_FORMAT!r}",
            )
        chunk = header.get(_CHUNK_HEADER)
        if chunk is None:
            self._abandon()
            return [decode_value(value)]
        try:
            set_id, index_text, count_text = chunk.decode().split(":")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT, f"record at offset {offset} has a bad chunk header {chunk!r}"
            ) from None
        if index == 0:
            self._abandon()
            self.pending = _PendingSet(set_id, offset, count)
        elif self.pending is None or self.pending.set_id != set_id or len(self.pending.pieces) != index:
            # A piece whose set did not start here: its start was committed past (impossible by
            # construction) or the publisher died mid-set; the set is re-sent after a restart.
            self._abandon()
            return []
        assert self.pending is not None
        self.pending.pieces.append(value)
        if len(self.pending.pieces) < self.pending.count:
            return []
        whole = b"".join(self.pending.pieces)
        self.pending = None
        return [decode_value(whole)]

    def _abandon(self) -> None:
        if self.pending is not None:
            self.abandoned += 1
            self.pending = None

    def safe_commit(self, next_offset: int) -> int:
        """Offset to commit after consuming up to ``next_offset - 1``."""
        return self.pending.first_offset if self.pending is not None else next_offset
