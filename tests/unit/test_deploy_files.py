"""The alert rules and the dashboard reference only metrics the daemon really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
    manifest = yaml.safe_load((ROOT / "deploy/kubernetes/deployment.yaml").read_text())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert manifest["spec"]["replicas"] == 1 and manifest["spec"]["strategy"]["type"] == "Recreate"
