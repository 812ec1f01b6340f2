"""The DynamoDB sink's blob cache: its byte budget bounds the memory it really holds.

Measured with tracemalloc: everything the cache keeps (keys, values, the LRU's and the index's
tables, per-thread sets) against ``blob_cache_bytes``. Before, an entry cost 2-3 times what it was
charged (a tuple of four strings per key, a cost tuple per value, a fixed 128 bytes for the rest).
"""

from __future__ import annotations

import gc
import random
import tracemalloc
import uuid
from collections.abc import Callable, Iterator

import pytest

from connectors.langgraph.blobs import BlobCache as _BlobCache
from connectors.langgraph.forms import ABSENT, Blob, BlobRef, _Absent
from connectors.sinks.dynamodb import DynamoDBSink

Entry = tuple[BlobRef, Blob | _Absent]


def fresh(text: str) -> str:
    """A new string object, as each decoded event has its own."""
    return (text + "\x00")[:-1]


def version(rnd: random.Random, step: int) -> str:
    return f"{step:032}.{rnd.random():016}"  # PostgresSaver's channel versions


def demo_like(rnd: random.Random) -> Iterator[Entry]:
    """The demo app's shape: a root and a subgraph namespace per thread, consumed triggers known
    absent, small msgpack and bytes blobs."""
    absent = ["branch:to:prepare", "branch:to:review", "branch:to:side", "branch:to:finish", "__start__"]
    while True:
        t = str(uuid.UUID(int=rnd.getrandbits(128)))
        for ns in ("", f"review:{uuid.UUID(int=rnd.getrandbits(128))}"):
            for step in range(1, 4):
                for ch in absent:
                    yield (fresh(t), fresh(ns), fresh(ch), version(rnd, step)), ABSENT
                yield (
                    (fresh(t), fresh(ns), fresh("messages"), version(rnd, step)),
                    (fresh("msgpack"), rnd.randbytes(rnd.randrange(20, 400))),
                )
                yield (fresh(t), fresh(ns), fresh("attachment"), version(rnd, step)), ("bytes", b"small 0")


def one_absent_per_thread(rnd: random.Random) -> Iterator[Entry]:
    """The worst case for per-thread costs: every entry in a thread of its own."""
    while True:
        yield (str(uuid.UUID(int=rnd.getrandbits(128))), "", fresh("__start__"), version(rnd, 2)), ABSENT


def one_long_thread(rnd: random.Random) -> Iterator[Entry]:
    """One thread with ever more entries (its index set grows), unicode everywhere, odd types."""
    step = 0
    while True:
        step += 1
        ref = ("thread-ünï-🚀", "outer:1|inner:2", f"ch#{step % 7}-日本", version(rnd, step))
        value: Blob | _Absent = ABSENT if step % 3 else (fresh("custom+aes"), None)
        yield ref, value


def large_blobs(rnd: random.Random) -> Iterator[Entry]:
    while True:
        t = fresh(f"t-{rnd.randrange(50)}")
        yield (
            (t, "", fresh("messages"), version(rnd, 1)),
            ("msgpack", rnd.randbytes(rnd.randrange(1, 60_000))),
        )


def traced(fill: Callable[[], _BlobCache]) -> tuple[_BlobCache, int]:
    """The cache ``fill`` builds and the bytes still traced once it returns (all it keeps)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        cache = fill()
        gc.collect()
        return cache, tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


BUDGET = 2 * 1024 * 1024


@pytest.mark.parametrize("shape", [demo_like, one_absent_per_thread, one_long_thread, large_blobs])
def test_memory_held_stays_within_the_budget(shape: Callable[[random.Random], Iterator[Entry]]) -> None:
    def fill() -> _BlobCache:
        cache = _BlobCache(BUDGET)
        put = cache.put
        entries = shape(random.Random(7))
        added = 0
        while added < 3 * BUDGET:  # well past full: entries are evicted all along
            ref, value = next(entries)
            put(ref, value)
            added += 250 if value is ABSENT else 250 + len(value[1] or b"")
        return cache

    cache, held = traced(fill)
    assert cache.size <= BUDGET
    # What it holds is what it counts (tracemalloc also sees the cache object itself and the
    # interpreter's free lists), and the budget is used, not wasted by overcounting.
    assert held <= BUDGET * 1.1, f"{held} bytes held for a budget of {BUDGET} ({len(cache)} entries)"
    assert abs(held - cache.size) <= BUDGET * 0.05
    assert cache.size >= BUDGET * 0.9


def test_removing_everything_returns_the_count_to_the_empty_tables() -> None:
    cache = _BlobCache(1 << 20)
    empty = cache.size
    rnd = random.Random(1)
    entries = demo_like(rnd)
    refs = []
    for _ in range(500):
        ref, value = next(entries)
        cache.put(ref, value)
        refs.append(ref)
    for ref in refs[::2]:
        cache.discard(ref)
    for thread in {ref[0] for ref in refs}:
        cache.evict_thread(fresh(thread))
    assert len(cache) == 0
    assert cache._held == 0 and cache.size >= empty  # only the (unshrunk) tables remain


def test_keys_are_unambiguous_whatever_the_parts_hold() -> None:
    cache = _BlobCache(1 << 20)
    refs: list[BlobRef] = [
        ("a\x00b", "", "c", "1"),
        ("a", "b", "\x00c", "1"),
        ("a", "b\x00", "c", "1"),
        ("a", "b", "c", "1"),
        ('["a"', "b", "c", "1"),
        ('["a","b","c","1"]', "", "", ""),
        ("a", "b", "c", '1"]'),
    ]
    for n, ref in enumerate(refs):
        cache.put(ref, ("bytes", bytes([n])))
    assert len(cache) == len(refs)
    for n, ref in enumerate(refs):
        assert cache.get(ref) == ("bytes", bytes([n]))
    cache.evict_thread("a")
    assert [cache.get(r) is None for r in refs] == [r[0] == "a" for r in refs]
    cache.evict_thread("a\x00b")
    cache.evict_thread('["a"')
    cache.evict_thread('["a","b","c","1"]')
    assert len(cache) == 0 and cache._held == 0


def test_lru_order_replacement_and_oversized_values() -> None:
    cache = _BlobCache(20_000)
    for i in range(40):
        cache.put(("t", "", f"c{i}", "1"), ("msgpack", b"x" * 1000))
    assert cache.size <= 20_000 and 5 < len(cache) < 20
    assert cache.get(("t", "", "c0", "1")) is None  # least recently used went first
    assert cache.get(("t", "", "c39", "1")) == ("msgpack", b"x" * 1000)
    count = len(cache)
    cache.put(("t", "", "c39", "1"), ABSENT)  # replaced, not duplicated
    assert cache.get(("t", "", "c39", "1")) is ABSENT and len(cache) == count
    cache.put(("u", "", "c", "1"), ("bytes", b"y" * 30_000))  # larger than the cache: not kept
    assert cache.get(("u", "", "c", "1")) is None


def test_blob_type_strings_are_shared() -> None:
    cache = _BlobCache(1 << 20)
    cache.put(("t", "", "a", "1"), (fresh("msgpack"), b"a"))
    cache.put(("t", "", "b", "1"), (fresh("msgpack"), b"b"))
    cache.put(("t", "", "c", "1"), (fresh("custom+aes"), b"c"))
    a, b, c = (cache.get(("t", "", ch, "1")) for ch in "abc")
    assert isinstance(a, tuple) and isinstance(b, tuple) and isinstance(c, tuple)
    assert a == ("msgpack", b"a") and a[0] is b[0]
    assert c == ("custom+aes", b"c")


def test_boto_connection_pool_covers_the_sink_threads() -> None:
    for concurrency in (1, 16, 32, 128):
        sink = DynamoDBSink(
            "pool", "table", "us-east-1", endpoint_url="http://127.0.0.1:9", concurrency=concurrency
        )
        try:
            # the worker threads, plus the applier's thread, which runs single requests itself
            assert sink.concurrency == concurrency
            assert sink._config.max_pool_connections >= concurrency + 1
        finally:
            sink.close()
