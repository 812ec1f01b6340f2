"""A LangGraph saver built by a factory the user names (``package.module:callable``).

Both the generic target (``[[targets]] kind = "saver"``) and the saver source of ``replicator
copy`` (``[source] kind = "saver"``) reach a store only through such a saver. ``where`` is the
config key errors name (``targets[redis]``, ``source``).
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from replicator.errors import ErrorKind, ReplicatorError


def load_factory(spec: str, where: str) -> Any:
    """The callable ``package.module:callable`` names, or a CONFIG error naming ``where``.

    The working directory is searched too (as ``python -m`` and uvicorn's ``module:app`` do), so
    a factory in the app's own code is found when ``replicator`` runs from its checkout.
    """
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"{where}.factory {spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc} (is it installed, or on PYTHONPATH?)",
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ReplicatorError(
                ErrorKind.CONFIG, f"{where}.factory {spec!r}: module {module_name!r} has no {attr!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ReplicatorError(ErrorKind.CONFIG, f"{where}.factory {spec!r} is not callable")
    return obj


def open_saver(spec: str, where: str, stack: ExitStack) -> BaseCheckpointSaver[Any]:
    """Call the factory; a context manager it returns (``PostgresSaver.from_conn_string``) is
    entered on ``stack``. Errors the factory raises are the caller's to translate."""
    made = load_factory(spec, where)()
    if not isinstance(made, BaseCheckpointSaver) and isinstance(made, AbstractContextManager):
        made = stack.enter_context(made)
    if not isinstance(made, BaseCheckpointSaver):
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"{where}.factory {spec!r} returned {type(made).__name__}, not a LangGraph BaseCheckpointSaver",
        )
    return made


__all__ = ["load_factory", "open_saver"]
