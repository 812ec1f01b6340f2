"""The ``[kafka]`` section: connection, security (TLS, SASL, OAUTHBEARER) and topic settings.

Every option is passed to kafka-python under its own name (``client_options``); combinations
kafka-python would ignore or fail on only when it connects are refused when the config loads,
naming the key. docs/kafka.md has the production settings and an example per managed Kafka.
"""

from __future__ import annotations

import importlib
import os
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.config import StrictModel as _Strict
from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import register_secret

# Topic settings every topic the pipeline creates gets unless [kafka] topic_config overrides them:
# records are deleted by age, never compacted, and kept 7 days (longer than the outage you
# tolerate: an applier that is down longer than retention.ms loses events).
TOPIC_CONFIG_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
}
_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# One OAUTHBEARER token provider per import path and process: kafka-python asks it for a token
# on every connection and re-authentication, and a provider is expected to reuse its token.
_token_providers: dict[str, Any] = {}
_token_providers_lock = threading.RLock()


def _import_callable(path: str) -> Callable[[], Any]:
    """``package.module:callable`` (the attribute may be dotted), imported from the Python path;
    LookupError saying why not."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise LookupError(f"must look like 'package.module:callable', got {path!r}")
    try:
        target: Any = importlib.import_module(module_name.strip())
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        raise LookupError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attribute.strip().split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise LookupError(f"{path!r} is not callable")
    return cast("Callable[[], Any]", target)


def _token_provider_base() -> type:
    """kafka-python's ``AbstractTokenProvider``: in ``kafka.net.sasl.oauth`` from 3.0,
    ``kafka.sasl.oauth`` before."""
    for module in ("kafka.net.sasl.oauth", "kafka.sasl.oauth"):
        try:
            return cast(type, importlib.import_module(module).AbstractTokenProvider)
        except (ImportError, AttributeError):
            continue
    raise ReplicatorError(
        ErrorKind.CONFIG, "the installed kafka-python has no OAUTHBEARER AbstractTokenProvider"
    )


def _holds_private_key(path: str) -> bool:
    try:
        return b"PRIVATE KEY-----" in Path(path).read_bytes()
    except OSError:
        return False


def _encrypted_key(path: str) -> bool:
    """A PEM key under a passphrase (PKCS#8 ``ENCRYPTED PRIVATE KEY`` or ``Proc-Type: 4,ENCRYPTED``)."""
    try:
        return b"ENCRYPTED" in Path(path).read_bytes()
    except OSError:
        return False


def _no_passphrase() -> str:
    """Given to ``load_cert_chain`` instead of None: OpenSSL would otherwise ask on the terminal."""
    return ""


class KafkaConfig(_Strict):
    """Connection, security and topic settings of the Kafka cluster the pipeline goes through.

    Building one registers its secrets (``sasl_password``, ``ssl_password``) with
    ``replicator.redact``, so no log, status or error shows them; ``repr`` and ``model_dump``
    show them masked.
    """

    bootstrap_servers: str
    topic: str = "langgraph.checkpoints"
    partitions: int = Field(8, ge=1, le=10_000)
    # Production: 3, with topic_config min.insync.replicas = "2" (the producer writes with acks=all).
    replication_factor: int = Field(1, ge=1, le=16)
    # Real Kafka refuses records over message.max.bytes (1 MiB by default): larger events are
    # split below this and reassembled by the applier.
    max_message_bytes: int = Field(1_000_000, ge=16_384, le=100 * 1024 * 1024)
    client_id: str = "langgraph-replicator"
    group_prefix: str = "langgraph-replicator"
    # SSL and SASL_SSL encrypt (TLS); SASL_PLAINTEXT and SASL_SSL authenticate with sasl_mechanism.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # PLAIN and SCRAM-* take sasl_username and sasl_password; OAUTHBEARER takes
    # sasl_oauth_token_provider (MSK IAM: docs/kafka.md).
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # "package.module:callable", called once with no arguments; it returns a kafka-python
    # AbstractTokenProvider (kafka.net.sasl.oauth) whose token() gives the bearer token.
    sasl_oauth_token_provider: str | None = None
    # PEM file of the CA certificates that signed the brokers' certificates (default: the system's).
    ssl_cafile: str | None = None
    # PEM file of the client certificate (mutual TLS); its key in ssl_keyfile, unless in this file.
    ssl_certfile: str | None = None
    # PEM file of the client certificate's private key.
    ssl_keyfile: str | None = None
    # Passphrase of an encrypted ssl_keyfile.
    ssl_password: SecretStr | None = None
    # Check that a broker's certificate names the host connected to; turn off only for brokers
    # reached through addresses their certificates do not name.
    ssl_check_hostname: bool = True
    # PEM file of a certificate revocation list, checked for the brokers' certificates.
    ssl_crlfile: str | None = None
    # Topic configs (Kafka's names and string values) for the topics the replicator creates;
    # merged over {"cleanup.policy" = "delete", "retention.ms" = "604800000"}. Never compact.
    topic_config: dict[str, str] = Field(default_factory=lambda: dict(TOPIC_CONFIG_DEFAULTS))
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    request_timeout_ms: int = Field(30_000, ge=1000, le=600_000)
    bootstrap_timeout_ms: int = Field(15_000, ge=1000, le=600_000)
    max_poll_records: int = Field(2000, ge=1, le=100_000)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not (Path(value).is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"no readable file at {value!r}")
        return value

    @field_validator("sasl_oauth_token_provider")
    @classmethod
    def _importable_provider(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _import_callable(value)
            except LookupError as exc:
                raise ValueError(
                    f"must name an importable callable, 'package.module:callable': {exc}"
                ) from None
        return value

    @field_validator("topic_config", mode="before")
    @classmethod
    def _flatten_topic_config(cls, value: Any) -> Any:
        """TOML reads an unquoted ``retention.ms = 1`` as a nested table, and numbers as numbers:
        flatten back to Kafka's dotted names and string values."""
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}

        def walk(prefix: str, table: dict[Any, Any]) -> None:
            for key, item in table.items():
                name = f"{prefix}{key}"
                if isinstance(item, dict):
                    walk(f"{name}.", item)
                elif isinstance(item, bool):
                    flat[name] = "true" if item else "false"
                elif isinstance(item, int):
                    flat[name] = str(item)
                else:
                    flat[name] = item

        walk("", value)
        return flat

    @field_validator("topic_config")
    @classmethod
    def _topic_config(cls, value: dict[str, str]) -> dict[str, str]:
        merged = {**TOPIC_CONFIG_DEFAULTS, **value}
        if "compact" in merged["cleanup.policy"].lower():
            raise ValueError(
                "cleanup.policy must not include compact: a compacted topic keeps only the latest "
                "record of a key and drops a thread's earlier changes, and the appliers need every event"
            )
        for key in ("retention.ms", "retention.bytes", "min.insync.replicas"):
            if key in merged and not re.fullmatch(r"-?\d+", merged[key].strip()):
                raise ValueError(f"{key} must be an integer, got {merged[key]!r}")
        return merged

    @model_validator(mode="after")
    def _security(self) -> KafkaConfig:
        """Refuse combinations kafka-python would ignore or fail on only when it connects."""
        problems: list[str] = []
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        if protocol not in _TLS_PROTOCOLS:
            # Refused, not warned: whoever set these expects TLS, and kafka-python would ignore
            # them and send everything (passwords included) unencrypted.
            ssl_keys = [
                key
                for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_crlfile")
                if getattr(self, key) is not None
            ]
            if "ssl_check_hostname" in self.model_fields_set:
                ssl_keys.append("ssl_check_hostname")
            if ssl_keys:
                problems.append(
                    f"{', '.join(ssl_keys)} set, but security_protocol = {protocol!r} does not use TLS "
                    "(they would be ignored and the traffic sent unencrypted): use 'SSL' or 'SASL_SSL', "
                    "or remove them"
                )
        if mechanism is not None and protocol not in _SASL_PROTOCOLS:
            problems.append(
                f"sasl_mechanism = {mechanism!r} needs security_protocol = 'SASL_SSL' (or "
                f"'SASL_PLAINTEXT'); with {protocol!r} the client would never authenticate"
            )
        if mechanism is None and protocol in _SASL_PROTOCOLS:
            problems.append(
                f"security_protocol = {protocol!r} needs sasl_mechanism: one of PLAIN, SCRAM-SHA-256, "
                "SCRAM-SHA-512, OAUTHBEARER"
            )
        if mechanism in _PASSWORD_MECHANISMS:
            missing = [key for key in ("sasl_username", "sasl_password") if not self._plain(key)]
            if missing:
                problems.append(f"sasl_mechanism = {mechanism!r} needs {' and '.join(missing)}")
        if mechanism == "OAUTHBEARER":
            if self.sasl_oauth_token_provider is None:
                problems.append(
                    "sasl_mechanism = 'OAUTHBEARER' needs sasl_oauth_token_provider = "
                    "'package.module:callable' (MSK IAM: see docs/kafka.md)"
                )
            unused = [key for key in ("sasl_username", "sasl_password") if getattr(self, key) is not None]
            if unused:
                problems.append(
                    f"{' and '.join(unused)} not used with sasl_mechanism = 'OAUTHBEARER' "
                    "(the token provider authenticates): remove them"
                )
        elif self.sasl_oauth_token_provider is not None:
            problems.append("sasl_oauth_token_provider is only used with sasl_mechanism = 'OAUTHBEARER'")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            problems.append("ssl_keyfile needs ssl_certfile (the client certificate the key belongs to)")
        if self.ssl_password is not None and self.ssl_certfile is None:
            problems.append(
                "ssl_password (the passphrase of the client key) needs ssl_certfile and ssl_keyfile"
            )
        if (
            self.ssl_certfile is not None
            and self.ssl_keyfile is None
            and not _holds_private_key(self.ssl_certfile)
        ):
            problems.append(
                f"ssl_certfile {self.ssl_certfile!r} holds no private key: set ssl_keyfile to the client "
                "certificate's key"
            )
        key_file = self.ssl_keyfile or self.ssl_certfile
        if key_file is not None and self.ssl_password is None and _encrypted_key(key_file):
            problems.append(f"the client key in {key_file!r} is encrypted: set ssl_password (its passphrase)")
        if (
            protocol in _TLS_PROTOCOLS
            and not problems
            and (self.ssl_cafile or self.ssl_certfile or self.ssl_crlfile)
        ):
            try:  # what kafka-python does on every connect: a wrong passphrase fails here, not there
                self.ssl_context()
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(
                    "cannot load the TLS files (ssl_cafile, ssl_certfile, ssl_keyfile, ssl_password, "
                    f"ssl_crlfile): {type(exc).__name__}: {exc} (a wrong ssl_password, a key that is not "
                    "the certificate's, or a file that is not PEM)"
                )
        min_isr = self.topic_config.get("min.insync.replicas")
        if min_isr is not None and int(min_isr) > self.replication_factor:
            problems.append(
                f"topic_config min.insync.replicas = {min_isr} is above replication_factor = "
                f"{self.replication_factor}: every write (acks=all) would fail with NOT_ENOUGH_REPLICAS"
            )
        if problems:
            raise ValueError("; ".join(problems))
        for secret in (self.sasl_password, self.ssl_password):
            if secret is not None:
                register_secret(secret.get_secret_value())
        return self

    def _plain(self, key: str) -> str | None:
        value = getattr(self, key)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def token_provider(self) -> Any:
        """The OAUTHBEARER token provider: ``sasl_oauth_token_provider`` called once per process."""
        path = self.sasl_oauth_token_provider
        if path is None:
            raise ReplicatorError(ErrorKind.CONFIG, "kafka.sasl_oauth_token_provider is not set")
        with _token_providers_lock:
            provider = _token_providers.get(path)
            if provider is not None:
                return provider
            try:
                provider = _import_callable(path)()
            except Exception as exc:
                raise ReplicatorError(
                    ErrorKind.CONFIG,
                    f"kafka.sasl_oauth_token_provider: {path} failed: {type(exc).__name__}: {exc}",
                ) from None
            base = _token_provider_base()
            if not isinstance(provider, base):
                raise ReplicatorError(
                    ErrorKind.CONFIG,
                    f"kafka.sasl_oauth_token_provider: {path}() returned {type(provider).__name__}, not an "
                    f"instance of {base.__module__}.{base.__name__} (kafka-python calls its token())",
                )
            _token_providers[path] = provider
            return provider

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context kafka-python would build from the ``ssl_*`` settings.

        Used as ``ssl_context`` when ``ssl_crlfile`` is set: kafka-python 3.0 loads the CRL with
        ``load_verify_locations(crl=...)``, a keyword the ``ssl`` module does not have, so every
        connection would fail with a TypeError. Here the CRL is loaded as a PEM file (OpenSSL
        reads CRLs from one, as kafka-python 2.x did) and leaf certificates are checked against it.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_cafile:
            context.load_verify_locations(self.ssl_cafile)
        else:
            context.load_default_certs()
        if self.ssl_certfile:
            context.load_cert_chain(
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self._plain("ssl_password") or _no_passphrase,
            )
        if self.ssl_crlfile:
            context.load_verify_locations(self.ssl_crlfile)
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return context

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by producer, consumer and admin clients, named as kafka-python
        names them (every key is in KafkaProducer's, KafkaConsumer's and KafkaAdminClient's
        DEFAULT_CONFIG). With ``ssl_crlfile`` they also carry ``ssl_context`` (see ssl_context())."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        if self.security_protocol in _TLS_PROTOCOLS:
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
                if getattr(self, key) is not None:
                    options[key] = getattr(self, key)
            if self.ssl_password is not None:
                options["ssl_password"] = self.ssl_password.get_secret_value()
            if self.ssl_crlfile is not None:  # see ssl_context(): kafka-python's own CRL loading fails
                options["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism == "OAUTHBEARER":
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_oauth_token_provider"] = self.token_provider()
        elif self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self._plain("sasl_password")
        return options
