"""Secrets never leave the process: every string bound for a log, status or error goes here.

Registered secrets (passwords, keys) are replaced wherever they appear, and passwords in
connection strings are masked even when nobody registered them.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|sasl_password|secret|token)\s*=\s*)(?P<pw>'[^']*'|\S+)", re.I
)


def register_secret(value: str | None) -> None:
    """Mask ``value`` in everything redacted from now on (ignored when too short to be a secret)."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def register_dsn(dsn: str) -> None:
    match = _URL_PASSWORD.search(dsn)
    if match:
        register_secret(match.group("pw"))
    for kv in _KV_PASSWORD.finditer(dsn):
        register_secret(kv.group("pw").strip("'"))


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group('key')}{MASK}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
