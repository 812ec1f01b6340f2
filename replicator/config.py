"""Typed configuration, loaded from TOML, with ``${ENV_VAR}`` references for secrets.

Validation errors name the key and the reason, so a bad file fails before anything connects.
Secrets are kept in ``SecretStr`` so that printing a config, a status or a log never shows them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, SecretStr, Tag, ValidationError, field_validator, model_validator

from connectors.config import StrictModel
from connectors.sinks.cosmos_config import CosmosTargetConfig
from connectors.sinks.dynamodb_config import DynamoDBTargetConfig
from connectors.sinks.postgres_config import PostgresTargetConfig
from connectors.sinks.saver_config import SaverTargetConfig
from connectors.sinks.sqlite_config import SqliteTargetConfig
from connectors.sources.memory.config import MemorySourceConfig
from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.saver.config import SaverSourceConfig
from connectors.sources.sqlite.config import SqliteSourceConfig
from replicator.errors import ErrorKind, ReplicatorError
from replicator.kafka_config import KafkaConfig

__all__ = [
    "Config",
    "CosmosTargetConfig",
    "DynamoDBTargetConfig",
    "KafkaConfig",
    "MemorySourceConfig",
    "PostgresSourceConfig",
    "PostgresStateConfig",
    "PostgresTargetConfig",
    "SaverSourceConfig",
    "SaverTargetConfig",
    "SourceConfig",
    "SqliteSourceConfig",
    "SqliteStateConfig",
    "SqliteTargetConfig",
    "StateConfig",
    "TargetConfig",
    "load_config",
    "parse_config",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


_Strict = StrictModel


def _kind_of(default: str) -> Callable[[Any], str | None]:
    """The ``kind`` of a section, ``default`` when the section does not say."""

    def kind(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("kind", default))
        return getattr(value, "kind", None)

    return kind


# One member per connector kind; a new connector adds its model here and its class in
# connectors/registry.py.
SourceConfig = Annotated[
    Union[  # noqa: UP007
        Annotated[PostgresSourceConfig, Tag("postgres")],
        Annotated[MemorySourceConfig, Tag("memory")],
        Annotated[SaverSourceConfig, Tag("saver")],
        Annotated[SqliteSourceConfig, Tag("sqlite")],
    ],
    Discriminator(_kind_of("postgres")),
]
SOURCE_KINDS = ("postgres", "saver", "memory", "sqlite")


TargetConfig = Annotated[
    Union[  # noqa: UP007
        Annotated[DynamoDBTargetConfig, Tag("dynamodb")],
        Annotated[PostgresTargetConfig, Tag("postgres")],
        Annotated[SqliteTargetConfig, Tag("sqlite")],
        Annotated[SaverTargetConfig, Tag("saver")],
        Annotated[CosmosTargetConfig, Tag("cosmos")],
    ],
    Discriminator(_kind_of("dynamodb")),
]
TARGET_KINDS = ("dynamodb", "postgres", "sqlite", "saver", "cosmos")


class PostgresStateConfig(_Strict):
    """Positions in a schema of a Postgres database; by default the source's own database."""

    kind: Literal["postgres"] = "postgres"
    dsn: SecretStr | None = None


class SqliteStateConfig(_Strict):
    """Positions in a SQLite file: for sources that are not Postgres, or a copy without Kafka."""

    kind: Literal["sqlite"]
    path: str = Field(min_length=1)


StateConfig = Annotated[
    Union[Annotated[PostgresStateConfig, Tag("postgres")], Annotated[SqliteStateConfig, Tag("sqlite")]],  # noqa: UP007
    Discriminator(_kind_of("postgres")),
]
STATE_KINDS = ("postgres", "sqlite")

# Where a union sits in the config, and the word its errors use.
_UNIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "source": ("source", SOURCE_KINDS),
    "targets": ("target", TARGET_KINDS),
    "state": ("state store", STATE_KINDS),
}


class HttpConfig(_Strict):
    listen: str | None = None


class CutoverConfig(_Strict):
    """``[cutover]``: the daemon switches the app by itself (off by default).

    Only from ``replicating`` (never after an operator's rollback), once the gate (caught up
    within ``max_lag_s``, no dead letter) has held for ``hold_s`` inside ``window`` (UTC,
    ``"HH:MM-HH:MM"``, may wrap midnight; none: any time).
    """

    auto: bool = False
    target: str | None = None
    hold_s: float = Field(60.0, ge=0, le=86_400)
    window: str | None = None
    max_lag_s: float = Field(5.0, gt=0, le=3600)
    timeout_s: float = Field(30.0, gt=0, le=3600)
    percent: int = Field(100, ge=1, le=100)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_window(value)
        return value

    def in_window(self, minute_of_day: int) -> bool:
        if self.window is None:
            return True
        start, end = _parse_window(self.window)
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # wraps midnight


def _parse_window(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise ValueError(f"window must look like 02:00-04:00 (UTC), got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"window has an hour above 23 or a minute above 59: {text!r}")
    return h1 * 60 + m1, h2 * 60 + m2


class LogConfig(_Strict):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    source: SourceConfig
    kafka: KafkaConfig
    targets: list[TargetConfig] = Field(min_length=1)
    # None: the default home of the positions, the source database when the source is Postgres.
    state: StateConfig | None = None
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    cutover: CutoverConfig = Field(default_factory=lambda: CutoverConfig.model_validate({}))

    @model_validator(mode="after")
    def _state_has_a_home(self) -> Config:
        state = self.state
        needs_dsn = state is None or (isinstance(state, PostgresStateConfig) and state.dsn is None)
        if needs_dsn and not isinstance(self.source, PostgresSourceConfig):
            raise ValueError(
                "state: the source is not Postgres, so the positions need their own home: "
                'set [state] kind = "postgres" with a dsn, or kind = "sqlite" with a path'
            )
        return self

    def state_store(self) -> PostgresStateConfig | SqliteStateConfig:
        """The state store setting with its defaults filled in (the source's dsn for Postgres)."""
        state = self.state or PostgresStateConfig()
        if isinstance(state, PostgresStateConfig) and state.dsn is None:
            assert isinstance(self.source, PostgresSourceConfig)  # checked in _state_has_a_home
            return state.model_copy(update={"dsn": self.source.dsn})
        return state

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        names = [t.name for t in targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"target names must be unique; repeated: {', '.join(duplicates)}")
        return targets

    @model_validator(mode="after")
    def _cutover_target_exists(self) -> Config:
        name = self.cutover.target
        if name is not None and name not in {t.name for t in self.targets}:
            raise ValueError(f"cutover.target {name!r} is not one of the targets")
        if self.cutover.auto and name is None and len(self.targets) > 1:
            raise ValueError("cutover.auto with several targets: name one in cutover.target")
        return self

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise ReplicatorError(ErrorKind.CONFIG, f"no target named {name!r} in the config")


def _expand(value: Any, path: str, env: dict[str, str]) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is an error naming key and variable."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ReplicatorError(
                    ErrorKind.CONFIG,
                    f"config key {path}: environment variable {name} is not set",
                )
            return env[name]

        return _ENV_REF.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _location(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The key path as the user wrote it: without the union member pydantic inserts (its kind)."""
    if loc and loc[0] in _UNIONS:
        at = 2 if loc[0] == "targets" else 1
        if len(loc) > at and loc[at] in _UNIONS[str(loc[0])][1]:
            return loc[:at] + loc[at + 1 :]
    return loc


def _target_named(data: Any, loc: tuple[int | str, ...]) -> str:
    """`` (in target 'name')`` when ``loc`` is inside a ``[[targets]]`` entry that has a name."""
    if len(loc) < 2 or loc[0] != "targets" or not isinstance(loc[1], int) or not isinstance(data, dict):
        return ""
    targets = data.get("targets")
    if not isinstance(targets, list) or loc[1] >= len(targets) or not isinstance(targets[loc[1]], dict):
        return ""
    name = targets[loc[1]].get("name")
    return f" (in target {name!r})" if isinstance(name, str) else ""


def _describe(error: ValidationError, data: Any = None) -> str:
    lines = []
    for item in error.errors():
        loc = _location(tuple(item["loc"]))
        location = ".".join(str(part) for part in loc) or "(top level)"
        message = item["msg"]
        if item["type"] == "union_tag_invalid" and loc and loc[0] in _UNIONS:
            word, kinds = _UNIONS[str(loc[0])]
            tag = (item.get("ctx") or {}).get("tag")
            location += ".kind"
            message = f"{tag!r} is not a {word} kind; one of: {', '.join(kinds)}"
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {location}: {message}{_target_named(data, loc)}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], origin: str = "config", env: dict[str, str] | None = None) -> Config:
    expanded = _expand(data, "", dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ReplicatorError(
            ErrorKind.CONFIG, f"invalid config {origin}:\n{_describe(exc, expanded)}"
        ) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReplicatorError(ErrorKind.CONFIG, f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReplicatorError(ErrorKind.CONFIG, f"config {path} is not valid TOML: {exc}") from None
    return parse_config(data, str(path), env)
