"""The supply chain: hash-pinned locks that cover what pyproject.toml declares, a CI that installs
from them and audits them, and a pinned, non-root container image (requirements/README.md).

Offline: these read the repository's files; the audit's decisions are checked on made-up PyPI
answers.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements/dev.lock"
RUNTIME_LOCK = ROOT / "requirements/runtime.lock"
DOCKERFILE = ROOT / "deploy/Dockerfile"
PROJECT = "langgraph-replicator"

# One lock entry once its continuation lines are joined: `name==version`, an optional environment
# marker, then at least one sha256. Nothing else is allowed (no -e, no URL, no index options).
_ENTRY = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
    r"(?:\s*;[^-]+?)?(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)"
)
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_TARGET = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux"}
_TARGET |= {"platform_system": "Linux", "os_name": "posix", "platform_python_implementation": "CPython"}
_TARGET |= {"implementation_name": "cpython"}


def lock_entries(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes); raises AssertionError on any line that is not a hashed pin."""
    joined = re.sub(r"\\\n\s*", " ", text)
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _ENTRY.fullmatch(line)
        assert found, f"not an exact, hashed pin: {line[:120]}"
        name = canonicalize_name(found.group("name"))
        assert name not in entries, f"{name} pinned twice"
        entries[name] = (found.group("version"), frozenset(_HASH.findall(found.group("hashes"))))
    return entries


def _pyproject() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == PROJECT
    return project


def declared(extras: list[str]) -> list[Requirement]:
    """The runtime dependencies plus these extras, the project's references to its own extras
    (the dev extra names langgraph-replicator[embedded,cosmos]) followed."""
    project = _pyproject()
    optional: dict[str, list[str]] = project["optional-dependencies"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                out.append(req)
    return [r for r in out if r.marker is None or r.marker.evaluate(_TARGET)]


def missing_from(lock: dict[str, tuple[str, frozenset[str]]], reqs: list[Requirement]) -> list[str]:
    """Declared requirements the lock lacks or pins at a version the declaration excludes."""
    problems = []
    for req in reqs:
        pinned = lock.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pinned[0], prereleases=True):
            problems.append(f"{req}: locked at {pinned[0]}")
    return problems


# --- the locks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", [DEV_LOCK, RUNTIME_LOCK], ids=["dev", "runtime"])
def test_every_lock_line_is_an_exact_hashed_pin(lock: Path) -> None:
    text = lock.read_text()
    entries = lock_entries(text)
    assert len(entries) >= 50, "suspiciously small lock"
    assert "pip-compile with Python 3.11" in text, "the locks are compiled for CPython 3.11"
    # nothing machine-local, and not the project itself (it installs with --no-deps from the tree)
    assert "file://" not in text
    assert not re.search(r"^\s*(-e|--index-url|--extra-index-url|--find-links|-f)\b", text, re.M)
    assert PROJECT not in entries


def test_the_lock_checker_rejects_what_is_not_a_hashed_pin() -> None:
    sha = "0" * 64
    assert lock_entries(f"a==1.0 \\\n    --hash=sha256:{sha}\n    # via b\n") == {
        "a": ("1.0", frozenset({sha}))
    }
    for bad in (
        "a>=1.0 --hash=sha256:" + sha,
        "a==1.0",
        "-e file:///x",
        f"a @ file:///x --hash=sha256:{sha}",
    ):
        with pytest.raises(AssertionError):
            lock_entries(bad + "\n")


def test_dev_lock_covers_runtime_and_dev_dependencies() -> None:
    lock = lock_entries(DEV_LOCK.read_text())
    reqs = declared(["dev"])
    names = {canonicalize_name(r.name) for r in reqs}
    # the dev extra reaches the embedded services and the Cosmos SDK that tests/ import
    assert {"pytest", "moto", "azure-cosmos", "langgraph", "pip-audit", "pip-tools"} <= names
    assert missing_from(lock, reqs) == []
    # the build backend is locked too: make install builds the project without build isolation
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert missing_from(lock, [Requirement(r) for r in build_requires]) == []
    assert "pip" in lock


def test_runtime_lock_covers_runtime_and_cosmos_and_agrees_with_dev_lock() -> None:
    runtime = lock_entries(RUNTIME_LOCK.read_text())
    dev = lock_entries(DEV_LOCK.read_text())
    assert missing_from(runtime, declared(["cosmos"])) == []
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert missing_from(runtime, [Requirement(r) for r in build_requires]) == []
    # the image carries no test or lint tooling
    assert not {"pytest", "moto", "ruff", "mypy", "pip-audit", "pip-tools"} & set(runtime)
    # one version, and the same files, of every package in both locks
    differ = {
        n: (v, dev.get(n, ("-", frozenset()))[0]) for n, (v, h) in runtime.items() if dev.get(n) != (v, h)
    }
    assert differ == {}, f"runtime lock differs from dev lock (runtime, dev): {differ}"


def test_the_coverage_check_catches_a_missing_or_excluded_pin() -> None:
    lock: dict[str, tuple[str, frozenset[str]]] = {"click": ("8.0.0", frozenset())}
    assert missing_from(lock, [Requirement("click>=8.1")]) == ["click>=8.1: locked at 8.0.0"]
    assert missing_from(lock, [Requirement("rich>=13")]) == ["rich>=13: not in the lock"]


# --- the Dockerfile ----------------------------------------------------------------------------


def docker_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), " ".join(rest.split())))
    return out


def pinned_base(from_args: str) -> bool:
    """FROM python:3.11.17-slim-bookworm[@sha256:...] [AS x]: an exact release and Debian suite."""
    image = from_args.split()[0]
    return bool(
        re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-[a-z]+)*-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image)
    )


def non_root_numeric(user_args: str) -> bool:
    found = re.fullmatch(r"(\d+)(?::(\d+))?", user_args)
    if found is None:
        return False
    return int(found.group(1)) != 0 and int(found.group(2) or 1) != 0


def test_image_base_is_pinned_to_an_exact_version() -> None:
    froms = [args for op, args in docker_instructions(DOCKERFILE.read_text()) if op == "FROM"]
    assert froms and all(pinned_base(f) for f in froms), froms
    # the image's Python is the one the locks were compiled for
    assert all(f.startswith("python:3.11.") for f in froms)
    assert not pinned_base("python:3.11-slim") and not pinned_base("python:3.11.17-slim")
    assert not pinned_base("python:latest")


def test_image_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in docker_instructions(DOCKERFILE.read_text()) if op == "USER"]
    assert users and non_root_numeric(users[-1]), users
    assert not non_root_numeric("replicator") and not non_root_numeric("0:0")
    assert not non_root_numeric("10001:0")
    # the user it names exists in the image, with that uid and gid (the Kubernetes manifests' too)
    uid, gid = users[-1].split(":")
    text = DOCKERFILE.read_text()
    assert re.search(rf"useradd\b[^\n]*--uid {uid}\b[^\n]*--gid {gid}\b", text)
    assert re.search(rf"groupadd\b[^\n]*--gid {gid}\b", text)


def test_image_installs_only_from_the_runtime_lock() -> None:
    steps = docker_instructions(DOCKERFILE.read_text())
    runs = [args for op, args in steps if op == "RUN"]
    installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    locked = [c for c in installs if "--require-hashes" in c and "-r requirements/runtime.lock" in c]
    assert len(locked) == 1, installs
    # everything else pip installs is the project alone, without resolving dependencies
    for cmd in installs:
        assert cmd in locked or ("--no-deps" in cmd and "--no-build-isolation" in cmd), cmd
        assert "--no-cache-dir" in cmd, cmd
    copies = [args for op, args in steps if op == "COPY"]
    assert any(c.split()[0] == "requirements/runtime.lock" for c in copies)
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


# --- CI and the Makefile -----------------------------------------------------------------------


def _commands(path: Path) -> list[str]:
    return [
        s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")
    ]


def _recipe(makefile: str, target: str) -> tuple[str, list[str]]:
    """A target's prerequisites and recipe lines."""
    found = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", makefile, re.M)
    assert found, f"no {target} target"
    lines = re.sub(r"\\\n\t*", " ", found.group(2)).splitlines()
    return found.group(1), [line.strip() for line in lines]


def test_ci_audits_the_locks_and_a_failing_audit_fails_ci() -> None:
    commands = _commands(ROOT / ".ci/run")
    assert "set -euo pipefail" in commands
    assert "make audit" in commands and "make test" in commands
    assert commands.index("make audit") < commands.index("make test")
    makefile = (ROOT / "Makefile").read_text()
    prereqs, recipe = _recipe(makefile, "audit")
    assert "install" in prereqs.split()
    assert any("requirements/audit.py" in line for line in recipe), recipe
    assert re.search(r"^LOCKS := requirements/dev.lock requirements/runtime.lock$", makefile, re.M)
    assert any("$(LOCKS)" in line for line in recipe)


def test_makefile_installs_from_the_dev_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    prereqs, recipe = _recipe(makefile, "$(BIN)/replicator")
    assert {"pyproject.toml", "$(LOCKS)"} <= set(prereqs.split())
    installs = [line for line in recipe if "pip install" in line]
    assert installs[0].endswith("pip install --quiet --require-hashes -r requirements/dev.lock"), installs
    assert installs[1:] == ["$(BIN)/pip install --quiet --no-deps --no-build-isolation -e ."]
    _, lock_recipe = _recipe(makefile, "lock")
    assert sum("pip-compile $(LOCK_FLAGS)" in line for line in lock_recipe) == 2
    assert "--generate-hashes" in makefile


# --- the audit's decisions ---------------------------------------------------------------------


def _audit_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("requirements_audit", ROOT / "requirements/audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit = _audit_module()
SHA = "--hash=sha256:" + "a" * 64


def _project(version: str, vulns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"info": {"version": version}, "vulnerabilities": vulns}


def _vuln(vid: str, **more: Any) -> dict[str, Any]:
    return {"id": vid, "aliases": [f"CVE-{vid}"], "fixed_in": ["9.9"], "summary": "bad", **more}


def _skipped(name: str, version: str) -> dict[str, Any]:
    reason = f"Dependency not found on PyPI and could not be audited: {name} ({version})"
    return {"name": name, "skip_reason": reason}


def _run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pip_audit: dict[str, Any] | Exception,
    projects: dict[str, Any],
    *args: str,
) -> int:
    lock = tmp_path / "x.lock"
    lock.write_text(f"alpha==1.0 \\\n    {SHA}\nbeta==2.0 \\\n    {SHA}\n")

    def fake_pip_audit(locks: list[Path], ignore: set[str]) -> dict[str, Any]:
        assert locks == [lock]
        if isinstance(pip_audit, Exception):
            raise pip_audit
        return pip_audit

    def fetch(name: str) -> dict[str, Any] | None:
        answer: dict[str, Any] | Exception | None = projects[name]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(audit, "run_pip_audit", fake_pip_audit)
    code: int = audit.main([*args, str(lock)], fetch=fetch)
    return code


CLEAN = {"alpha": _project("1.0", []), "beta": _project("2.0", [])}
ALL_SKIPPED = {"dependencies": [_skipped("alpha", "1.0"), _skipped("beta", "2.0")], "fixes": []}


def test_audit_fails_on_a_vulnerability_pip_audit_reports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = {
        "dependencies": [
            {"name": "alpha", "version": "1.0", "vulns": [{"id": "GHSA-1", "fix_versions": ["1.1"]}]},
            {"name": "beta", "version": "2.0", "vulns": []},
        ]
    }
    assert _run(monkeypatch, tmp_path, found, {}) == 1
    assert _run(monkeypatch, tmp_path, found, {}, "--ignore-vuln", "GHSA-1") == 0
    clean = {
        "dependencies": [
            {"name": n, "version": v, "vulns": []} for n, v in (("alpha", "1.0"), ("beta", "2.0"))
        ]
    }
    assert _run(monkeypatch, tmp_path, clean, {}) == 0


def test_audit_does_not_pass_what_pip_audit_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the per-release API not served: the latest release's list is used for a pin that is latest
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, CLEAN) == 0
    vulnerable = {**CLEAN, "beta": _project("2.0", [_vuln("GHSA-2")])}
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, vulnerable) == 1
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, vulnerable, "--ignore-vuln", "CVE-GHSA-2") == 0
    withdrawn = {**CLEAN, "beta": _project("2.0", [_vuln("GHSA-2", withdrawn="2026-01-01")])}
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, withdrawn) == 0
    # an older pin cannot be audited from the latest release's list: a warning, a failure if strict
    stale = {**CLEAN, "alpha": _project("1.5", [])}
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, stale) == 0
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, stale, "--strict") == 1
    # not on PyPI, or PyPI unreadable: fail closed
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, {**CLEAN, "alpha": None}) == 1
    assert _run(monkeypatch, tmp_path, ALL_SKIPPED, {**CLEAN, "alpha": OSError("unreachable")}) == 1
    other_skip = {
        "dependencies": [{"name": "alpha", "skip_reason": "something else"}, _skipped("beta", "2.0")]
    }
    assert _run(monkeypatch, tmp_path, other_skip, CLEAN) == 1


def test_audit_fails_when_pip_audit_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _run(monkeypatch, tmp_path, RuntimeError("pip-audit failed (exit 2)"), CLEAN) == 1


def test_audit_reads_the_real_locks_consistently() -> None:
    pins = audit.read_pins([DEV_LOCK, RUNTIME_LOCK])
    dev = lock_entries(DEV_LOCK.read_text())
    assert pins == {name: version for name, (version, _) in dev.items()}
