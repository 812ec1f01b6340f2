"""Settings of the saver source (``[source] kind = "saver"``): any LangGraph saver, read through
its own API by ``replicator copy``. It has no change log, so ``replicator run`` refuses it."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from connectors.config import StrictModel
from connectors.sinks.saver_config import check_factory_spec


class SaverSourceConfig(StrictModel):
    kind: Literal["saver"] = "saver"
    # "package.module:callable" returning a BaseCheckpointSaver (or a context manager yielding
    # one); connection settings belong in the factory (read from the environment).
    factory: str

    @field_validator("factory")
    @classmethod
    def _factory(cls, value: str) -> str:
        return check_factory_spec(value)
