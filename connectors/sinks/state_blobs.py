"""Blobs kept in the replicator's state store, for a target with no place of its own for them
(the generic saver target, Cosmos DB): the ``BlobStore`` the batch planner reads, and the one
step that brings it up to date with a planned batch."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.langgraph.batch import DurableOps
from connectors.langgraph.forms import Blob, BlobRef
from replicator.errors import ErrorKind, ReplicatorError
from replicator.state.base import StateStore


class StateBlobs:
    def __init__(self, target: str, state: StateStore | None, what: str) -> None:
        self.target = target
        self._state = state
        self._what = what  # how errors name the target, e.g. "target 'redis' (saver)"

    def state(self) -> StateStore:
        if self._state is None:
            raise ReplicatorError(
                ErrorKind.INTERNAL, f"{self._what} was built without the state store, where its blobs live"
            )
        return self._state

    def get_many(self, refs: Sequence[BlobRef]) -> dict[BlobRef, Blob]:
        return self.state().blob_get_many(self.target, refs)

    def apply(self, ops: DurableOps) -> None:
        """The batch's blob puts and deletes and its deleted threads, in one transaction."""
        self.state().blob_apply(
            self.target,
            put=[(ref, blob) for ref, blob in ops.blobs.items() if blob is not None],
            delete=[ref for ref, blob in ops.blobs.items() if blob is None],
            delete_threads=ops.deleted_threads,
        )
