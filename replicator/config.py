"""Typed configuration, loaded from TOML, with ``${ENV_VAR}`` references for secrets.

Validation errors name the key and the reason, so a bad file fails before anything connects.
Secrets are kept in ``SecretStr`` so that printing a config, a status or a log never shows them.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from replicator.errors import ErrorKind, ReplicatorError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostgresSourceConfig(_Strict):
    kind: Literal["postgres"] = "postgres"
    dsn: SecretStr
    schema_name: str = Field("public", alias="schema")
    slot: str = "langgraph_replicator"
    publication: str = "langgraph_replicator"
    snapshot_chunk_rows: int = Field(2000, ge=1, le=1_000_000)
    heartbeat_interval_s: float = Field(1.0, gt=0, le=300)
    # Confirm to the slot at most this often; also bounds how long acks are awaited.
    flush_interval_s: float = Field(0.05, gt=0, le=60)
    max_slot_lag_bytes: int = Field(1 << 30, ge=0)

    @field_validator("slot", "publication")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lower-case Postgres identifier (a-z, 0-9, _; at most 63)")
        return value


class KafkaConfig(_Strict):
    bootstrap_servers: str
    topic: str = "langgraph.checkpoints"
    partitions: int = Field(8, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=16)
    # Real Kafka refuses records over message.max.bytes (1 MiB by default): larger events are
    # split below this and reassembled by the applier.
    max_message_bytes: int = Field(1_000_000, ge=16_384, le=100 * 1024 * 1024)
    client_id: str = "langgraph-replicator"
    group_prefix: str = "langgraph-replicator"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    request_timeout_ms: int = Field(30_000, ge=1000, le=600_000)
    bootstrap_timeout_ms: int = Field(15_000, ge=1000, le=600_000)
    max_poll_records: int = Field(2000, ge=1, le=100_000)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by producer, consumer and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options


class DynamoDBTargetConfig(_Strict):
    name: str
    kind: Literal["dynamodb"] = "dynamodb"
    table: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_key_prefix: str | None = None
    s3_endpoint_url: str | None = None
    batch_events: int = Field(2000, ge=1, le=100_000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.' or '-'")
        return value


TargetConfig = DynamoDBTargetConfig


class HttpConfig(_Strict):
    listen: str | None = None


class LogConfig(_Strict):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    source: PostgresSourceConfig
    kafka: KafkaConfig
    targets: list[TargetConfig] = Field(min_length=1)
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        names = [t.name for t in targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"target names must be unique; repeated: {', '.join(duplicates)}")
        return targets

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


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], origin: str = "config", env: dict[str, str] | None = None) -> Config:
    expanded = _expand(data, "", dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ReplicatorError(ErrorKind.CONFIG, f"invalid config {origin}:\n{_describe(exc)}") from None


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
