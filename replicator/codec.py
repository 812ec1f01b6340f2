"""Change events to Kafka records and back, splitting values that exceed the broker's limit.

A record's value is the msgpack encoding of one event. An event larger than the configured
``max_message_bytes`` is cut into consecutive pieces of one key (so one partition, in order),
each carrying a ``lgr-chunk`` header ``<id>:<index>:<count>``. The applier reassembles them and
commits offsets only below the first piece of a set it has not completed, so a crash between
pieces replays the whole set. Pieces of different sets never interleave in a partition: the
single publisher sends each set's pieces back to back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgspec

from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import ChangeEvent, thread_of

FORMAT_VERSION = b"1"
_VERSION_HEADER = "lgr-v"
_CHUNK_HEADER = "lgr-chunk"
# Room for key, headers and the record framing inside the broker's limit.
_RECORD_OVERHEAD = 4096

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[ChangeEvent] = msgspec.msgpack.Decoder(ChangeEvent)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes
    headers: Headers


def encode(event: ChangeEvent, max_message_bytes: int) -> list[Record]:
    """One record, or several pieces when the event does not fit ``max_message_bytes``."""
    thread = thread_of(event)
    key = thread.encode("utf-8") if thread is not None else None
    value = _encoder.encode(event)
    budget = max_message_bytes - _RECORD_OVERHEAD - (len(key) if key else 0)
    if budget <= 0:
        raise ReplicatorError(
            ErrorKind.CONFIG, f"kafka.max_message_bytes={max_message_bytes} leaves no room for a record"
        )
    if len(value) <= budget:
        return [Record(key, value, [(_VERSION_HEADER, FORMAT_VERSION)])]
    set_id = uuid.uuid4().hex
    count = -(-len(value) // budget)
    return [
        Record(
            key,
            value[i * budget : (i + 1) * budget],
            [(_VERSION_HEADER, FORMAT_VERSION), (_CHUNK_HEADER, f"{set_id}:{i}:{count}".encode())],
        )
        for i in range(count)
    ]


def decode_value(value: bytes) -> ChangeEvent:
    try:
        return _decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"undecodable event: {exc}") from None


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

    def feed(self, offset: int, value: bytes | None, headers: Headers) -> ChangeEvent | None:
        """The event this record completes, or None while a split event is incomplete."""
        if value is None:
            raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"record at offset {offset} has no value")
        header = dict(headers or [])
        version = header.get(_VERSION_HEADER)
        if version != FORMAT_VERSION:
            raise ReplicatorError(
                ErrorKind.MALFORMED_EVENT,
                f"record at offset {offset} has event format {version!r}, expected {FORMAT_VERSION!r}",
            )
        chunk = header.get(_CHUNK_HEADER)
        if chunk is None:
            self._abandon()
            return decode_value(value)
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
            return None
        assert self.pending is not None
        self.pending.pieces.append(value)
        if len(self.pending.pieces) < self.pending.count:
            return None
        whole = b"".join(self.pending.pieces)
        self.pending = None
        return decode_value(whole)

    def _abandon(self) -> None:
        if self.pending is not None:
            self.abandoned += 1
            self.pending = None

    def safe_commit(self, next_offset: int) -> int:
        """Offset to commit after consuming up to ``next_offset - 1``."""
        return self.pending.first_offset if self.pending is not None else next_offset
