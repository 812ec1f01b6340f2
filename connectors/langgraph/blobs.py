"""Where a target keeps blobs, and the byte-bounded LRU cache in front of it.

A split-form checkpoint names its blobs by ``(channel, version)``; a target that stores whole
checkpoints must find blobs written arbitrarily long before the checkpoint that uses them. Each
target decides where they live (DynamoDB: items of its own in the same table) and answers
``BlobStore.get_many``; the cache spares most of those reads. No I/O here.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from connectors.langgraph.forms import ABSENT, Blob, BlobRef, _Absent


class BlobStore(Protocol):
    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        """The blobs stored for ``refs``, as of before the batch being applied; absent ones left out."""
        ...


def _json_key(*parts: str) -> str:
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


# Serde types, shared by every cached blob instead of one string object per blob.
_BLOB_TYPES: dict[str, str] = {
    t: t for t in ("msgpack", "bytes", "bytearray", "null", "empty", "json", "pickle")
}
_BLOB_TUPLE_BYTES = sys.getsizeof(("msgpack", b""))
_NOT_CACHED: Any = object()


def _cache_key(ref: BlobRef) -> str:
    """One string for a blob reference: its parts joined by NUL, which no Postgres text can hold.

    Parts that do hold one (from another source) are keyed by their JSON array instead, which
    never contains a raw NUL, so the two forms cannot collide.
    """
    key = "\x00".join(ref)
    return key if key.count("\x00") == 3 else _json_key(*ref)


def _cache_key_thread(key: str) -> str:
    return key[: key.index("\x00")] if "\x00" in key else str(json.loads(key)[0])


def _own_str_bytes(text: str) -> int:
    """What a private copy of ``text`` costs (``getsizeof`` of the caller's object may include
    a cached UTF-8 form, so it could differ between the string indexed and the one removing it)."""
    return sys.getsizeof((text + "\x00")[:-1])


class BlobCache:
    """LRU of blob lookups (values and known absences), bounded by the memory it really holds.

    PostgresSaver's blobs are insert-only, so an entry only goes stale when the blob (or its
    whole thread) is deleted, and every such delete passes through the sink and evicts it.

    ``size`` counts Python objects as ``sys.getsizeof`` measures them, so that ``capacity`` bounds
    the cache's real memory: each entry's key (one string, built here), its value (``ABSENT``
    is a shared singleton; a blob is a ``(type, data)`` tuple, its type string shared), the
    tables of the LRU and of the per-thread index (as allocated: they do not shrink when entries
    go), and each indexed thread's id and set. A tuple of four strings per key and a cost per
    entry, as before, took 2-3 times the bytes counted with small blobs.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._entries: OrderedDict[str, Blob | _Absent] = OrderedDict()
        self._by_thread: dict[str, set[str]] = {}
        self._held = 0  # entries' keys and values, index sets and thread ids

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._held + sys.getsizeof(self._entries) + sys.getsizeof(self._by_thread)

    def get(self, ref: BlobRef) -> Blob | _Absent | None:
        key = _cache_key(ref)
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, ref: BlobRef, value: Blob | _Absent) -> None:
        key = _cache_key(ref)
        self._discard(key, ref[0])
        if value is not ABSENT:
            type_, data = value
            value = (_BLOB_TYPES.get(type_, type_), data)
        cost = self._cost(key, value)
        if cost > self.capacity:
            return
        self._entries[key] = value
        thread = ref[0]
        keys = self._by_thread.get(thread)
        if keys is None:
            keys = self._by_thread[(thread + "\x00")[:-1]] = set()
            self._held += _own_str_bytes(thread) + sys.getsizeof(keys)
        before = sys.getsizeof(keys)
        keys.add(key)
        self._held += cost + sys.getsizeof(keys) - before
        while self.size > self.capacity and self._entries:
            old_key, old_value = self._entries.popitem(last=False)
            self._held -= self._cost(old_key, old_value)
            self._unindex(old_key, _cache_key_thread(old_key))

    def discard(self, ref: BlobRef) -> None:
        self._discard(_cache_key(ref), ref[0])

    def evict_thread(self, thread_id: str) -> None:
        for key in list(self._by_thread.get(thread_id, ())):
            self._discard(key, thread_id)

    def _discard(self, key: str, thread: str) -> None:
        value = self._entries.pop(key, _NOT_CACHED)
        if value is not _NOT_CACHED:
            self._held -= self._cost(key, value)
            self._unindex(key, thread)

    def _unindex(self, key: str, thread: str) -> None:
        keys = self._by_thread.get(thread)
        if keys is not None:
            keys.discard(key)  # a set never shrinks on removal: its size stays as counted
            if not keys:
                del self._by_thread[thread]
                self._held -= _own_str_bytes(thread) + sys.getsizeof(keys)

    @staticmethod
    def _cost(key: str, value: Blob | _Absent) -> int:
        cost = sys.getsizeof(key)
        if value is not ABSENT:
            type_, data = value
            cost += _BLOB_TUPLE_BYTES + (0 if data is None else sys.getsizeof(data))
            if _BLOB_TYPES.get(type_) is not type_:
                cost += sys.getsizeof(type_)
        return cost
