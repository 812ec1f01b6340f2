"""Blobs a target keeps in the replicator's state store instead of in the target itself.

A whole-form target that is reached only through its saver's API (``kind = "saver"``) has no
place of its own for PostgresSaver's versioned blobs, which later checkpoints of a split-form
source refer to by version. The state store keeps them, per target, beside the positions they
belong with: one table, insert-only per key, emptied per thread when the thread is deleted and
wholly by ``replicator reset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

BlobRef = tuple[str, str, str, str]  # (thread_id, checkpoint_ns, channel, version text)
Blob = tuple[str, bytes | None]  # serde (type, data)


class BlobTable(Protocol):
    def blob_get_many(self, target: str, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        """The blobs of ``refs`` the table holds for ``target`` (absent ones left out)."""
        ...

    def blob_apply(
        self,
        target: str,
        put: Sequence[tuple[BlobRef, Blob]] = (),
        delete: Sequence[BlobRef] = (),
        delete_threads: Sequence[str] = (),
    ) -> None:
        """In one transaction: forget ``delete_threads`` and ``delete``, then insert ``put``
        (a key already held keeps its value: a blob never changes at its version)."""
        ...
