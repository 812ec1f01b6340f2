"""dynalite: a second, independent DynamoDB implementation (Node, on LevelDB) for the tests.

moto is lenient in places; dynalite was written to match DynamoDB's own validation and error
messages, so running a sink on both catches what one of them lets through. It is installed from
this directory's ``package.json`` (pinned, with its lock file) by ``npm ci --prefix tests/services``
(``make install`` and ``.ci/run`` do it). It serves DynamoDB only: S3 still comes from moto.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from replicator.embedded.services import _ProcessService
from replicator.errors import ErrorKind, ReplicatorError

__all__ = ["DYNALITE_BIN_ENV", "EmbeddedDynalite", "dynalite_bin"]

HOST = "127.0.0.1"
SERVICES_DIR = Path(__file__).resolve().parent
DYNALITE_BIN_ENV = "DYNALITE_BIN"
_INSTALL = f"npm ci --prefix {SERVICES_DIR}"


def dynalite_bin() -> Path:
    """The dynalite executable: ``$DYNALITE_BIN`` if set, else the one ``npm ci`` installed here."""
    configured = os.environ.get(DYNALITE_BIN_ENV)
    path = Path(configured) if configured else SERVICES_DIR / "node_modules" / ".bin" / "dynalite"
    if not path.is_file() or not os.access(path, os.X_OK):
        source = f"${DYNALITE_BIN_ENV}={configured}" if configured else str(path)
        raise ReplicatorError(
            ErrorKind.CONFIG,
            f"dynalite is not installed ({source} is not an executable file). Install it with "
            f"`{_INSTALL}` (needs node and npm; `make install` and .ci/run do this), or point "
            f"${DYNALITE_BIN_ENV} at a dynalite executable.",
        )
    return path


class EmbeddedDynalite(_ProcessService):
    """dynalite's HTTP server, in memory, as a child process on a free 127.0.0.1 port.

    Tables become ACTIVE at once (``--createTableMs 0``) so a test's table is ready when
    ``create_table`` returns; everything else keeps dynalite's DynamoDB-like defaults (400 KB items).
    """

    _name = "dynalite"
    _prefix = "replicator-dynalite-"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        dynalite_bin()  # say what to install before making a temp dir or choosing a port
        super().start()

    def _command(self) -> list[str]:
        return [
            str(dynalite_bin()),
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--createTableMs",
            "0",
            "--deleteTableMs",
            "0",
            "--updateTableMs",
            "0",
        ]

    def _ready(self) -> bool:
        """It answers a DynamoDB ListTables call (any HTTP answer means it serves)."""
        request = urllib.request.Request(
            self.endpoint_url,
            data=json.dumps({}).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "X-Amz-Date": "20200101T000000Z",
                "Authorization": (
                    "AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/dynamodb/aws4_request, "
                    "SignedHeaders=host, Signature=0"
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return bool(resp.status)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
