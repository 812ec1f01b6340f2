"""The alert rules and the dashboard reference only metrics the daemon really exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from replicator.metrics import METRIC_NAMES, PREFIX

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(rf"\b{PREFIX}_[a-z_]+\b")
_SUFFIXES = ("_bucket", "_count", "_sum")


def _exported(name: str) -> bool:
    return name in METRIC_NAMES or any(
        name.endswith(s) and name[: -len(s)] in METRIC_NAMES for s in _SUFFIXES
    )


def _referenced(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in _NAME.findall(expr)}


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) >= 8
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
    names = _referenced(exprs)
    assert names, "alert rules reference no replicator metric"
    unknown = sorted(n for n in names if not _exported(n))
    assert not unknown, f"alert rules use metrics the daemon does not export: {unknown}"
    # The alerts the issue asks for: lag, stall, dead letters, slot WAL retention.
    for needed in (
        "apply_lag_seconds",
        "applied_batches_total",
        "dead_letters_total",
        "slot_retained_wal_bytes",
    ):
        assert f"{PREFIX}_{needed}" in names


def test_dashboard_parses_and_uses_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    names = _referenced(exprs)
    unknown = sorted(n for n in names if not _exported(n))
    assert not unknown, f"dashboard uses metrics the daemon does not export: {unknown}"
    assert len(names) >= 15


def test_metric_names_follow_prometheus_conventions() -> None:
    for name in METRIC_NAMES:
        assert re.fullmatch(r"[a-z_]+", name), name
        assert not name.endswith("_total") or "_seconds" not in name
        assert not re.search(r"_(ms|milliseconds|kb|mb)\b", name), name


def test_example_config_is_valid() -> None:
    from replicator.config import load_config

    config = load_config(
        ROOT / "deploy/replicator.example.toml", env={"PG_PASSWORD": "p", "KAFKA_PASSWORD": "k"}
    )
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.http.listen == "0.0.0.0:9187"


def test_kubernetes_probes_use_the_daemon_endpoints() -> None:
    manifest = yaml.safe_load((ROOT / "deploy/kubernetes/capture.yaml").read_text())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert manifest["spec"]["replicas"] == 1 and manifest["spec"]["strategy"]["type"] == "Recreate"


# -- every deploy file against the code -------------------------------------------------------------
#
# No container engine runs here, so each manifest is checked against what the code really does:
# commands and options are parsed by the CLI's own click commands, configs are validated by
# replicator.config with the environment the container sets, probe paths are requested from a
# real StatusServer, ports are compared with the config's [http] listen, hosts with the services.

DEPLOY = ROOT / "deploy"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Read by boto3 (the DynamoDB target), never by the config: a container may set them.
_AWS_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"}


def _yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _env_refs(text: str) -> set[str]:
    """The ``${VAR}`` a TOML config reads: in its values, as replicator.config expands them
    (a comment that mentions one reads nothing)."""
    import tomllib

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield from _ENV_REF.findall(value)
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    return set(walk(tomllib.loads(text)))


def _config_text(text: str, env: dict[str, str], origin: str) -> Any:
    """The config in ``text`` as the daemon loads it with exactly ``env`` (a missing variable fails)."""
    import tomllib

    from replicator.config import parse_config

    return parse_config(tomllib.loads(text), origin, env)


def _served_routes(paths: set[str]) -> set[str]:
    """Which of ``paths`` a real StatusServer answers (anything but 404)."""
    import urllib.error
    import urllib.request

    from replicator.http import StatusServer

    server = StatusServer("127.0.0.1:0", status=lambda: {}, ready=lambda: (True, "test"), metrics=lambda: b"")
    server.start()
    served = set()
    try:
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5):
                    served.add(path)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    served.add(path)
    finally:
        server.stop()
    return served


def _cli_call(args: list[str]) -> dict[str, Any]:
    """Parse ``args`` (after the ``replicator`` entry point) with the CLI's own click command:
    the subcommand must exist, every option must be one it declares and every value valid
    (``--role`` is a click.Choice). Returns the parsed parameters, with the subcommand."""
    import click

    from replicator.cli import cli

    assert args, "no command"
    command = cli.commands.get(args[0])
    assert command is not None, f"replicator has no command {args[0]!r}"
    declared = {opt for param in command.params for opt in param.opts}
    used = {arg.split("=", 1)[0] for arg in args[1:] if arg.startswith("--")}
    assert used <= declared, f"replicator {args[0]} has no option {sorted(used - declared)}"
    try:
        ctx = command.make_context(args[0], list(args[1:]))
    except click.ClickException as exc:
        raise AssertionError(f"replicator {' '.join(args)}: {exc.format_message()}") from None
    if ctx.params.get("listen"):
        from replicator.http import parse_listen

        parse_listen(ctx.params["listen"])
    return {"command": args[0], **ctx.params}


def _entrypoint() -> list[str]:
    """The image's ENTRYPOINT (deploy/Dockerfile): container args are appended to it."""
    import json
    import tomllib

    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert found, "deploy/Dockerfile has no ENTRYPOINT in exec form"
    entrypoint: list[str] = json.loads(found.group(1))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(entrypoint[-1]).name in scripts, "the image's ENTRYPOINT is not the replicator CLI"
    assert scripts[Path(entrypoint[-1]).name] == "replicator.cli:main"
    return entrypoint


def _image_uid() -> int:
    found = re.search(r"--uid\s+(\d+)", (DEPLOY / "Dockerfile").read_text())
    assert found, "deploy/Dockerfile creates no user with a fixed uid"
    return int(found.group(1))


def _http_port(config: Any) -> int:
    from replicator.http import parse_listen

    assert config.http.listen, "the config serves no [http] endpoint: no probes, no metrics"
    return parse_listen(config.http.listen)[1]


def _check_env_against_config(text: str, env_names: set[str], where: str, config: Any) -> None:
    referenced = _env_refs(text)
    missing = referenced - env_names
    assert not missing, f"{where}: the config reads {sorted(missing)}, which the container does not set"
    library = _AWS_ENV if any(t.kind == "dynamodb" for t in config.targets) else set()
    unused = env_names - referenced - library
    assert not unused, f"{where}: sets {sorted(unused)}, which the config it mounts never reads"


def _kubernetes() -> list[dict[str, Any]]:
    docs = [doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for doc in _yaml_documents(path)]
    assert docs and all({"apiVersion", "kind", "metadata"} <= set(doc) for doc in docs)
    return docs


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_deploy_file_parses_and_every_config_validates() -> None:
    yamls = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert {p.relative_to(DEPLOY).as_posix() for p in yamls} >= {
        "compose.yaml",
        "kubernetes/capture.yaml",
        "kubernetes/applier.yaml",
        "kubernetes/configmap.yaml",
    }
    assert not (DEPLOY / "kubernetes/deployment.yaml").exists()
    for path in yamls:
        assert _yaml_documents(path), f"{path} is empty"
    tomls = sorted(DEPLOY.rglob("*.toml"))
    assert len(tomls) >= 2
    for path in tomls:
        text = path.read_text()
        config = _config_text(text, {name: "x" for name in _env_refs(text)}, str(path))
        assert config.targets
    for doc in _yaml_documents(DEPLOY / "kubernetes/configmap.yaml"):
        for key, text in doc["data"].items():
            if key.endswith(".toml"):
                _config_text(text, {name: "x" for name in _env_refs(text)}, f"ConfigMap {key}")
    for path in DEPLOY.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_kubernetes_workloads_match_the_code() -> None:
    docs = _kubernetes()
    entrypoint = _entrypoint()
    assert entrypoint, "args are appended to the ENTRYPOINT"
    configmaps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ConfigMap"}
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    accounts = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ServiceAccount"}
    roles: dict[str, list[dict[str, Any]]] = {}
    paths: set[str] = set()
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert _matches(spec["selector"]["matchLabels"], labels), f"{name}: selector misses its pods"
        (container,) = pod["containers"]
        call = _cli_call(list(container["args"]))
        assert call["command"] == "run", f"{name}: the container does not run the daemon"
        roles.setdefault(call["role"], []).append(deployment)
        if pod.get("serviceAccountName"):
            assert pod["serviceAccountName"] in accounts, (
                f"{name}: no ServiceAccount {pod['serviceAccountName']}"
            )

        # The config file: the ConfigMap's key, mounted where --config points.
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        config_path = Path(call["config_path"])
        (mount,) = [m for m in mounts.values() if Path(m["mountPath"]) == config_path.parent]
        configmap = configmaps[volumes[mount["name"]]["configMap"]["name"]]
        assert config_path.name in configmap["data"], f"{name}: --config names no key of the ConfigMap"
        text = configmap["data"][config_path.name]

        # Secrets: from Secret references only, and exactly those the config reads.
        env = container.get("env") or []
        for var in env:
            assert "value" not in var and var["valueFrom"]["secretKeyRef"]["name"], var
        env_names = {var["name"] for var in env}
        config = _config_text(text, {n: "x" for n in env_names}, f"{name}: ConfigMap")
        _check_env_against_config(text, env_names, name, config)

        # Probes and metrics: routes the daemon serves, on the port [http] listens on.
        port = _http_port(config)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            paths.add(get["path"])
            assert ports.get(get["port"], get["port"]) == port, f"{name}: {probe} on another port"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        notes = spec["template"]["metadata"].get("annotations") or {}
        if notes.get("prometheus.io/scrape") == "true":
            assert int(notes["prometheus.io/port"]) == port, f"{name}: Prometheus scrapes another port"
            paths.add(notes["prometheus.io/path"])

        # Not root, read-only root filesystem, bounded.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == _image_uid()
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"requests", "limits"} <= set(container["resources"])
        assert container["resources"]["limits"]["memory"]
        assert pod["terminationGracePeriodSeconds"] >= 30  # SIGTERM: flush, commit, confirm

        if call["role"] == "apply":
            assert 2 <= spec["replicas"] <= config.kafka.partitions, f"{name}: replicas vs partitions"
            assert spec["strategy"]["type"] == "RollingUpdate"
            covering = [b for b in budgets if _matches(b["spec"]["selector"]["matchLabels"], labels)]
            assert len(covering) == 1, f"{name}: no PodDisruptionBudget selects its pods"
            budget = covering[0]["spec"]
            assert budget.get("maxUnavailable") == 1 or 1 <= budget.get("minAvailable", 0) < spec["replicas"]
        else:
            assert not [b for b in budgets if _matches(b["spec"]["selector"]["matchLabels"], labels)]

    assert sorted(roles) == ["apply", "capture"], f"roles deployed: {sorted(roles)}"
    (capture,) = roles["capture"]  # one slot, one owner
    assert capture["spec"]["replicas"] == 1 and capture["spec"]["strategy"]["type"] == "Recreate"
    missing = paths - _served_routes(paths)
    assert not missing, f"the daemon serves no {sorted(missing)}"


def _compose() -> dict[str, Any]:
    (compose,) = _yaml_documents(DEPLOY / "compose.yaml")
    return compose


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _container_port(service: dict[str, Any], port: int) -> bool:
    """Whether ``service`` publishes (or at least maps) container port ``port``, when it lists any."""
    published = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in service.get("ports") or []]
    return not published or str(port) in published


def test_compose_matches_the_code() -> None:
    from urllib.parse import urlsplit

    compose = _compose()
    services = compose["services"]
    entrypoint = _entrypoint()
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert "wal_level=logical" in postgres["command"]
    kafka_env = _compose_env(services["kafka"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not any("zookeeper" in name for name in services)
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local:")

    replicators = {
        n: s for n, s in services.items() if str(s.get("image", "")).startswith("langgraph-replicator")
    }
    roles: dict[str, list[str]] = {}
    served: set[str] = set()
    for name, service in replicators.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
        volumes = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in service["volumes"]}
        env = _compose_env(service)
        if "entrypoint" in service:  # a one-shot helper script, not the daemon
            assert service["entrypoint"][0] == "python"
            script = Path(service["entrypoint"][1])
            host_script = volumes[str(script.parent)] / script.name
            assert host_script.exists(), f"{name}: {script} is not in the mounted directory"
            config_path = Path(service["command"][0])
        else:
            call = _cli_call(list(service["command"]))
            assert entrypoint[-1] == "replicator"
            roles.setdefault(call.get("role", "-"), []).append(name)
            config_path = Path(call["config_path"])
        host_config = volumes[str(config_path.parent)] / config_path.name
        assert host_config.exists(), f"{name}: --config {config_path} is not in the mounted directory"
        text = host_config.read_text()
        config = _config_text(text, env, f"{name}: {host_config}")
        _check_env_against_config(text, set(env), name, config)
        port = _http_port(config)
        for published in service.get("ports") or []:
            assert int(str(published).rsplit(":", 1)[-1]) == port, f"{name}: publishes another port"
        if "healthcheck" in service:
            found = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", " ".join(service["healthcheck"]["test"]))
            assert found and int(found.group(1)) == port, f"{name}: health check on another port"
            served.add(found.group(2))

        # The hosts the config names are the compose services, on the ports they listen on.
        dsn = urlsplit(config.source.dsn.get_secret_value())
        assert dsn.hostname in services and services[dsn.hostname] is postgres
        pg_env = _compose_env(postgres)
        assert (dsn.port or 5432) == 5432 and _container_port(postgres, 5432)
        assert dsn.username == pg_env["POSTGRES_USER"] and dsn.path.lstrip("/") == pg_env["POSTGRES_DB"]
        assert dsn.password == pg_env["POSTGRES_PASSWORD"], f"{name}: PG_PASSWORD is not the database's"
        for server in config.kafka.bootstrap_servers.split(","):
            host, _, kafka_port = server.strip().rpartition(":")
            assert services.get(host) is services["kafka"], f"{name}: no Kafka service {host!r}"
            advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
            assert any(a.endswith(f"//{host}:{kafka_port}") for a in advertised), (
                f"Kafka does not advertise {server}"
            )
            assert any(item.endswith(f":{kafka_port}") for item in kafka_env["KAFKA_LISTENERS"].split(","))
        for target in config.targets:
            if target.kind == "dynamodb":
                endpoint = urlsplit(target.endpoint_url or "")
                assert services.get(endpoint.hostname or "") is services["dynamodb"]
                command = services["dynamodb"].get("command") or []
                listens = int(command[command.index("-port") + 1]) if "-port" in command else 8000
                assert endpoint.port == listens and _container_port(services["dynamodb"], listens)

    assert sorted(roles) == ["apply", "capture"], f"roles in compose: {sorted(roles)}"
    (capture,) = roles["capture"]
    assert (services[capture].get("deploy") or {}).get("replicas", 1) == 1
    missing = served - _served_routes(served)
    assert not missing, f"the daemon serves no {sorted(missing)}"
    for name in replicators:
        assert "init" in (services[name].get("depends_on") or {}) or name == "init"


def test_systemd_units_match_the_code() -> None:
    import configparser
    import shlex

    units = sorted((DEPLOY / "systemd").glob("*.service"))
    roles = {}
    config_paths = set()
    for unit in units:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        argv = shlex.split(parser["Service"]["ExecStart"].replace("%i", "9188"))
        assert Path(argv[0]).name == "replicator", f"{unit.name}: runs {argv[0]}"
        call = _cli_call(argv[1:])
        assert call["command"] == "run"
        roles[unit.name] = call["role"]
        config_paths.add(call["config_path"])
        if unit.name.endswith("@.service"):
            assert call["listen"] == "0.0.0.0:9188", f"{unit.name}: several instances need their own port"
    assert len(config_paths) == 1, f"the units read different configs: {config_paths}"
    assert sorted(roles.values()) == ["all", "apply", "capture"]
