"""A state store in memory: the same contract, no durability (unit tests, verify, dry runs)."""

from __future__ import annotations

import json
import threading
from typing import Any

from replicator.state.base import check_forward


class MemoryStateStore:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}
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

    def all(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in list(self._data.items())}

    def close(self) -> None:
        pass
