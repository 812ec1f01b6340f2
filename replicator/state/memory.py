"""A state store in memory: the same contract, no durability (unit tests, verify, dry runs)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from replicator.state.base import check_forward
from replicator.state.blobs import Blob, BlobRef


class MemoryStateStore:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._blobs: dict[tuple[str, BlobRef], Blob] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> dict[str, Any] | None:
        raw = self._data.get(name)
        return json.loads(raw) if raw is not None else None

    def put(self, name: str, value: dict[str, Any]) -> None:
        self.put_many({name: value})

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            for name, value in values.items():
                check_forward(name, self.get(name), value)
            self._data.update({name: json.dumps(value) for name, value in values.items()})

    def delete(self, name: str) -> None:
        self._data.pop(name, None)

    def clear(self) -> None:
        self._data.clear()
        self._blobs.clear()

    def blob_get_many(self, target: str, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        return {ref: self._blobs[(target, ref)] for ref in refs if (target, ref) in self._blobs}

    def blob_apply(
        self,
        target: str,
        put: Sequence[tuple[BlobRef, Blob]] = (),
        delete: Sequence[BlobRef] = (),
        delete_threads: Sequence[str] = (),
    ) -> None:
        with self._lock:
            gone = set(delete_threads)
            if gone:
                self._blobs = {k: v for k, v in self._blobs.items() if k[0] != target or k[1][0] not in gone}
            for ref in delete:
                self._blobs.pop((target, ref), None)
            for ref, blob in put:
                self._blobs.setdefault((target, ref), blob)

    def all(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in list(self._data.items())}

    def prefixed(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in list(self._data.items()) if k.startswith(prefix)}

    def close(self) -> None:
        pass
