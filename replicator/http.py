"""Health, readiness, status and metrics over HTTP, for Kubernetes probes and Prometheus.

``/healthz`` answers while the process runs; ``/readyz`` only while the source is reachable
and every stage runs; ``/status`` is the object ``replicator status --json`` prints;
``/metrics`` is Prometheus text. Read-only: nothing here changes the pipeline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import redact


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ReplicatorError(ErrorKind.CONFIG, f"http.listen {listen!r} must look like 127.0.0.1:9187")
    return host.strip("[]"), int(port)


class StatusServer:
    def __init__(
        self,
        listen: str,
        *,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[], bytes],
    ) -> None:
        host, port = parse_listen(listen)
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/healthz": lambda: (200, "text/plain", b"ok\n"),
            "/readyz": lambda: _ready(ready),
            "/status": lambda: (
                200,
                "application/json",
                redact(json.dumps(status(), sort_keys=True)).encode(),
            ),
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", metrics()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    code, kind, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        code, kind, body = route()
                    except Exception as exc:
                        code, kind, body = 500, "text/plain", redact(f"error: {exc}\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ReplicatorError(
                ErrorKind.CONFIG, f"cannot listen on http.listen={listen}: {exc.strerror}"
            ) from None
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ready(ready: Callable[[], tuple[bool, str]]) -> tuple[int, str, bytes]:
    ok, reason = ready()
    return (200 if ok else 503), "text/plain", (f"{'ready' if ok else 'not ready'}: {reason}\n").encode()
