"""Settings of the in-memory source (``[source] kind = "memory"``).

The app's ``replicator.memory.WriteThroughSaver`` reads them; the daemon only applies. Positions
live in the state store, which must then be SQLite or Postgres (``Config._state_has_a_home``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.config import StrictModel


class MemorySourceConfig(StrictModel):
    kind: Literal["memory"]
    # How long an app's put, put_writes or delete_thread waits for Kafka's acknowledgement
    # before it fails (and leaves its in-memory saver unchanged).
    ack_timeout_s: float = Field(10.0, gt=0, le=300)
