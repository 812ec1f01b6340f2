"""Known-vulnerability audit of the lock files: pip-audit, and no silent pass when it cannot ask.

`make audit` runs this with the dev venv's Python (pip-audit comes from requirements/dev.lock):

    python requirements/audit.py [--strict] [--ignore-vuln ID ...] LOCK [LOCK ...]

pip-audit (PyPI service) asks PyPI's per-release JSON API (/pypi/NAME/VERSION/json) for the
known vulnerabilities of each pinned release. Where that endpoint is not served (a mirror or a
proxy that serves only /pypi/NAME/json, as on this project's build machines), pip-audit skips the
dependency and, without --strict, still prints "No known vulnerabilities found" and exits 0: an
audit of nothing. This script does not accept that. For every dependency pip-audit skipped it
reads /pypi/NAME/json, where PyPI lists the known vulnerabilities of the project's latest
release:

- the pin is the latest release: that list is the pin's own, so the pin is audited exactly;
- the pin is older than the latest release: nothing served here says what affects it, so it is
  reported as not audited (a failure with --strict, a warning without);
- the project is not on PyPI, or PyPI cannot be read: a failure (fail closed).

Exit status: 0 when no locked dependency has a known vulnerability (and, with --strict, every
one was audited); 1 otherwise, or when pip-audit itself fails; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# pip-audit's skip reason when PyPI answers 404 for /pypi/NAME/VERSION/json
_NOT_FOUND = "Dependency not found on PyPI"

Fetch = Callable[[str], "dict[str, Any] | None"]  # project name -> PyPI project JSON, None on 404


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(locks: Iterable[Path]) -> dict[str, str]:
    """`name==version` pins of pip-compile lock files, by canonical name."""
    pins: dict[str, str] = {}
    for lock in locks:
        for line in lock.read_text().splitlines():
            found = _PIN.match(line)
            if found:
                name, version = canonical(found.group(1)), found.group(2)
                if pins.setdefault(name, version) != version:
                    raise ValueError(f"{name} pinned at {pins[name]} and {version} in the locks")
    return pins


@dataclass(frozen=True)
class Vuln:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()
    summary: str = ""

    def line(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fixed = ", ".join(self.fixed_in) or "no fixed release"
        summary = f": {self.summary[:160]}" if self.summary else ""
        return f"{self.package}=={self.version} {self.id}{aliases}, fixed in {fixed}{summary}"


@dataclass
class Report:
    vulns: list[Vuln] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)  # by pip-audit or from PyPI's latest-release data
    stale: list[str] = field(default_factory=list)  # pinned below the latest release: not auditable
    errors: list[str] = field(default_factory=list)  # could not be audited at all

    def failed(self, strict: bool) -> bool:
        return bool(self.vulns or self.errors or (strict and self.stale))


def _ignored(ids: Iterable[str], ignore: set[str]) -> bool:
    return any(i in ignore for i in ids)


def from_pip_audit(
    output: dict[str, Any], pins: dict[str, str], ignore: set[str]
) -> tuple[Report, list[str]]:
    """pip-audit's JSON report: its findings, and the dependencies it skipped (for the fallback)."""
    report, skipped = Report(), []
    for dep in output["dependencies"]:
        name = canonical(dep["name"])
        if "skip_reason" in dep:
            if dep["skip_reason"].startswith(_NOT_FOUND) and name in pins:
                skipped.append(name)
            else:
                report.errors.append(f"{name}: {dep['skip_reason']}")
            continue
        report.audited.append(name)
        for v in dep.get("vulns", []):
            ids = [v["id"], *v.get("aliases", [])]
            if _ignored(ids, ignore):
                continue
            report.vulns.append(
                Vuln(
                    name,
                    dep["version"],
                    v["id"],
                    tuple(v.get("aliases", [])),
                    tuple(v.get("fix_versions", [])),
                    (v.get("description") or "").replace("\n", " "),
                )
            )
    return report, skipped


def audit_from_latest(
    name: str, version: str, project: dict[str, Any] | None, ignore: set[str], report: Report
) -> None:
    """Audit one pin from PyPI's project JSON (vulnerabilities of the latest release only)."""
    if project is None:
        report.errors.append(f"{name}=={version}: not found on PyPI, could not be audited")
        return
    latest = project["info"]["version"]
    if latest != version:
        report.stale.append(f"{name}=={version} (latest {latest})")
        return
    report.audited.append(name)
    for v in project.get("vulnerabilities") or []:
        if v.get("withdrawn"):
            continue
        ids = [v["id"], *(v.get("aliases") or [])]
        if _ignored(ids, ignore):
            continue
        summary = (v.get("summary") or v.get("details") or "").replace("\n", " ")
        report.vulns.append(
            Vuln(
                name, version, v["id"], tuple(v.get("aliases") or []), tuple(v.get("fixed_in") or []), summary
            )
        )


def fetch_project(name: str, timeout: float = 30.0, attempts: int = 2) -> dict[str, Any] | None:
    url = PYPI_PROJECT_JSON.format(name=name)
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data: dict[str, Any] = json.load(response)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if attempt == attempts - 1:
                raise
        except (urllib.error.URLError, TimeoutError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def fallback(
    skipped: list[str], pins: dict[str, str], ignore: set[str], report: Report, fetch: Fetch
) -> None:
    def one(name: str) -> tuple[str, dict[str, Any] | Exception | None]:
        try:
            return name, fetch(name)
        except Exception as exc:  # reported per dependency: the audit fails closed
            return name, exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, project in pool.map(one, sorted(skipped)):
            if isinstance(project, Exception):
                report.errors.append(f"{name}=={pins[name]}: PyPI could not be read ({project})")
            else:
                audit_from_latest(name, pins[name], project, ignore, report)


def run_pip_audit(locks: list[Path], ignore: set[str]) -> dict[str, Any]:
    """pip-audit over the locks, JSON report. Raises RuntimeError when pip-audit itself fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pip-audit.json"
        cmd = [sys.executable, "-m", "pip_audit", "--vulnerability-service", "pypi", "--disable-pip"]
        cmd += ["--progress-spinner", "off", "--desc", "on", "--aliases", "on", "-f", "json", "-o", str(out)]
        for vuln_id in sorted(ignore):
            cmd += ["--ignore-vuln", vuln_id]
        for lock in locks:
            cmd += ["-r", str(lock)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        # exit 1 with a report = vulnerabilities found; without one = pip-audit failed
        if done.returncode not in (0, 1) or not out.exists():
            raise RuntimeError(f"pip-audit failed (exit {done.returncode}): {done.stderr.strip()}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main(argv: list[str] | None = None, fetch: Fetch = fetch_project) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="fail when a pin could not be audited")
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    args = parser.parse_args(argv)
    ignore = set(args.ignore_vuln)
    pins = read_pins(args.locks)
    try:
        output = run_pip_audit(args.locks, ignore)
    except RuntimeError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 1
    report, skipped = from_pip_audit(output, pins, ignore)
    by_pip_audit = len(report.audited)
    fallback(skipped, pins, ignore, report, fetch)
    for vuln in report.vulns:
        print(f"VULNERABLE {vuln.line()}")
    for error in report.errors:
        print(f"NOT AUDITED {error}")
    if report.stale:
        print(
            f"{'NOT AUDITED' if args.strict else 'warning: not audited'}: PyPI's per-release JSON API did "
            f"not answer and these pins are older than the latest release: {', '.join(report.stale)}"
        )
    if ignore:
        print(f"ignored: {', '.join(sorted(ignore))}")
    print(
        f"audit: {len(pins)} locked dependencies, {len(report.audited)} audited "
        f"({by_pip_audit} by pip-audit, {len(report.audited) - by_pip_audit} from PyPI's latest-release "
        f"data), {len(report.stale)} not auditable here, {len(report.errors)} errors, "
        f"{len(report.vulns)} known vulnerabilities"
    )
    return 1 if report.failed(args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
