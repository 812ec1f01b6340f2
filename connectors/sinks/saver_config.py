"""Settings of the generic target (``[[targets]] kind = "saver"``): any LangGraph saver, reached
through its own API, built by a factory the user names."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from connectors.config import TargetConfigBase

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class SaverTargetConfig(TargetConfigBase):
    kind: Literal["saver"] = "saver"
    # "package.module:callable": imported from the Python path, called with no arguments, returns
    # a BaseCheckpointSaver (or a context manager yielding one, like PostgresSaver.from_conn_string).
    # Connection settings belong in the factory (read from the environment), not in this file.
    factory: str

    @field_validator("factory")
    @classmethod
    def _factory(cls, value: str) -> str:
        return check_factory_spec(value)


def check_factory_spec(value: str) -> str:
    if not _FACTORY.fullmatch(value):
        raise ValueError(
            "must be 'package.module:callable' (a module on the Python path, a colon, then the "
            "name of a function returning a LangGraph checkpoint saver)"
        )
    return value
