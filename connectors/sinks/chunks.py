"""Cutting a batch into the requests a store accepts: at most so many items and so many bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def chunked(
    items: Iterable[T], size_of: Callable[[T], int], max_items: int, max_bytes: int
) -> Iterator[list[T]]:
    """Consecutive chunks of ``items``, each within both limits (an item larger than
    ``max_bytes`` alone in its chunk: the store's own error then names it)."""
    chunk: list[T] = []
    size = 0
    for item in items:
        n = size_of(item)
        if chunk and (len(chunk) >= max_items or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk
