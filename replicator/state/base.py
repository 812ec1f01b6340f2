"""The contract every state store keeps, and the rules it enforces.

A store holds one JSON document per stage (``source``, ``publisher``, ``applier:<target>:<p>``,
``deadletters:<target>``). A document's source position, when it has one, is under
``position`` and only moves forward: a write that would move it back is a bug upstream (a
stale writer, a lost update) and is refused loudly rather than rewinding the pipeline. A Kafka
offset in the same document may go back (an applier starts a partition over after the broker
lost its log); the source position may not. ``clear`` (``replicator reset``) is the one way
back to nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from replicator.errors import ErrorKind, ReplicatorError
from replicator.state.blobs import BlobTable

# Version of the stored layout. 1: no version row, positions under "lsn"/"confirmed_lsn".
# 2: a version row; every stage's source position under "position".
SCHEMA_VERSION = 2
POSITION = "position"

SOURCE_STATE = "source"
PUBLISHER_STATE = "publisher"


class StateStore(BlobTable, Protocol):
    def get(self, name: str) -> dict[str, Any] | None: ...

    def put(self, name: str, value: dict[str, Any]) -> None:
        """Write one document; ReplicatorError(INTERNAL) if its position would move back."""
        ...

    def put_many(self, values: dict[str, dict[str, Any]]) -> None:
        """Write several documents at once: all of them or, if one would move back, none."""
        ...

    def delete(self, name: str) -> None: ...

    def clear(self) -> None:
        """Forget every document and blob (the schema version stays): the pipeline starts from
        nothing."""
        ...

    def all(self) -> dict[str, dict[str, Any]]: ...

    def prefixed(self, prefix: str) -> dict[str, dict[str, Any]]:
        """The documents whose names start with ``prefix``: what a caller polling a few names
        reads, however many other documents (one per copied thread) the store holds."""
        ...

    def close(self) -> None: ...


def position_of(value: dict[str, Any] | None) -> int | None:
    if value is None or value.get(POSITION) is None:
        return None
    return int(value[POSITION])


def check_forward(name: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Refuse a write that would move the source position of ``name`` back."""
    before, after = position_of(old), position_of(new)
    if before is not None and after is not None and after < before:
        raise ReplicatorError(
            ErrorKind.INTERNAL,
            f"state {name!r}: the source position would move back from {before} to {after}; "
            "positions only move forward (is a second replicator writing the same state store?)",
        )


def check_version(found: int | None, where: str) -> None:
    """A layout newer than this code knows: stop before misreading it."""
    if found is not None and found > SCHEMA_VERSION:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"the state store {where} has schema version {found}, newer than this replicator's "
            f"{SCHEMA_VERSION}: it was written by a newer release. Upgrade this replicator, or point "
            "[state] at another store.",
        )


def migrate_v1(name: str, value: dict[str, Any]) -> dict[str, Any] | None:
    """A version-1 document in the version-2 layout (None: unchanged)."""
    old_key = "lsn" if name.startswith("applier:") else "confirmed_lsn" if name == PUBLISHER_STATE else None
    if old_key is None or old_key not in value:
        return None
    moved = {k: v for k, v in value.items() if k != old_key}
    moved[POSITION] = value[old_key]
    return moved


def applier_partition_state_name(target: str, partition: int) -> str:
    return f"applier:{target}:{partition}"


def deadletter_state_name(target: str) -> str:
    return f"deadletters:{target}"


def applier_positions(state: StateStore, target: str) -> dict[int, dict[str, Any]]:
    """Every partition's applied position of one target, whoever of its appliers saved it."""
    prefix = f"applier:{target}:"
    return {
        int(name[len(prefix) :]): value
        for name, value in state.prefixed(prefix).items()
        if name[len(prefix) :].isdigit()
    }
