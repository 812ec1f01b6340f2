"""A fault-injecting HTTP proxy in front of moto's real DynamoDB and S3 server.

moto never throttles, fails or drops a connection; real AWS does all three. The proxy listens
on a free 127.0.0.1 port, forwards every request to moto with ``http.client``, and, per a
schedule, answers instead with what AWS sends when it is overloaded or broken:

- ``THROTTLE``: HTTP 400 ``ProvisionedThroughputExceededException`` (S3: 503 ``SlowDown``);
- ``HTTP500`` / ``HTTP503``: ``InternalServerError`` / ``ServiceUnavailable`` (S3: XML bodies);
- ``RESET``: the connection is reset (RST) before the request reaches moto;
- ``RESET_AFTER``: moto applies the request, then the connection is reset, so the client never
  learns that it succeeded and must retry something already done;
- ``UNPROCESSED``: a ``BatchWriteItem`` (or ``BatchGetItem``) of several items is forwarded with
  only part of them, and the rest is returned as ``UnprocessedItems`` (``UnprocessedKeys``).
  Items returned as unprocessed were never forwarded, so a client that drops them loses them.

``latency_s`` delays every forwarded request (a slow target). Counts of what was injected are
kept per action and per operation, so a test can assert that its faults really happened.
"""

from __future__ import annotations

import enum
import http.client
import json
import socket
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from replicator.embedded import HOST

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_DDB_ERROR = "com.amazonaws.dynamodb.v20120810#"


class Action(enum.StrEnum):
    FORWARD = "forward"
    THROTTLE = "throttle"
    HTTP500 = "http500"
    HTTP503 = "http503"
    RESET = "reset"
    RESET_AFTER = "reset_after"
    UNPROCESSED = "unprocessed"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def operation(self) -> str:
        """``BatchWriteItem`` etc. for DynamoDB (from X-Amz-Target), ``S3:<METHOD>`` otherwise."""
        target = self.headers.get("x-amz-target", "")
        if target:
            return target.rsplit(".", 1)[-1]
        return f"S3:{self.method}"

    @property
    def is_dynamodb(self) -> bool:
        return "x-amz-target" in self.headers


Schedule = Callable[[Request], Action]


class CycleSchedule:
    """Actions in a fixed repeating pattern, for requests of the given operations only.

    Deterministic and thread-safe: the n-th matching request gets ``pattern[n % len]``. A retry
    is a new request and takes the next slot, so a pattern that never puts two faults side by
    side lets every request through within a bounded number of attempts.
    """

    def __init__(self, pattern: Sequence[Action], operations: Collection[str] | None = None) -> None:
        if not pattern:
            raise ValueError("empty pattern")
        self.pattern = list(pattern)
        self.operations = set(operations) if operations is not None else None
        self._n = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Action:
        if self.operations is not None and request.operation not in self.operations:
            return Action.FORWARD
        with self._lock:
            action = self.pattern[self._n % len(self.pattern)]
            self._n += 1
        return action


def _forward_all(_: Request) -> Action:
    return Action.FORWARD


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class FaultProxy:
    """``with FaultProxy(moto_url, schedule) as proxy:`` then point clients at ``proxy.url``."""

    def __init__(self, upstream: str, schedule: Schedule | None = None, *, latency_s: float = 0.0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.schedule: Schedule = schedule or _forward_all
        self.latency_s = latency_s
        self.counts: Counter[str] = Counter()  # action -> times applied
        self.by_operation: Counter[tuple[str, str]] = Counter()  # (operation, action) -> times
        self.unprocessed_items = 0  # items handed back as unprocessed, never forwarded
        self.requests = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> None:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server((HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def injected(self) -> int:
        """Requests answered with a fault (everything but FORWARD)."""
        with self._lock:
            return sum(n for action, n in self.counts.items() if action != Action.FORWARD)

    # -- per request --------------------------------------------------------------------------

    def _count(self, request: Request, action: Action) -> None:
        with self._lock:
            self.requests += 1
            self.counts[action] += 1
            self.by_operation[(request.operation, action)] += 1

    def handle(self, request: Request) -> _Response | None:
        """The response to send, or None to reset the connection."""
        action = self.schedule(request)
        if action is Action.UNPROCESSED and not self._can_split(request):
            action = Action.FORWARD
        self._count(request, action)
        if action is Action.RESET:
            return None
        if action in (Action.THROTTLE, Action.HTTP500, Action.HTTP503):
            return _error(request, action)
        if self.latency_s:
            time.sleep(self.latency_s)  # the injected slowness itself, not a synchronisation
        if action is Action.UNPROCESSED:
            return self._unprocessed(request)
        response = self._forward(request, request.body)
        if action is Action.RESET_AFTER:
            return None
        return response

    def _forward(self, request: Request, body: bytes) -> _Response:
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        headers["content-length"] = str(len(body))
        for attempt in range(2):  # a pooled upstream connection may have been closed by moto
            conn = self._upstream(fresh=attempt > 0)
            try:
                conn.request(request.method, request.path, body=body, headers=headers)
                upstream = conn.getresponse()
                data = upstream.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt:
                    raise
                continue
            kept = [(k, v) for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP]
            return _Response(upstream.status, kept, data)
        raise AssertionError("unreachable")

    def _upstream(self, fresh: bool) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    # -- partial batches ----------------------------------------------------------------------

    @staticmethod
    def _can_split(request: Request) -> bool:
        if request.operation not in ("BatchWriteItem", "BatchGetItem"):
            return False
        items = json.loads(request.body).get("RequestItems") or {}
        sizes = [len(v) if isinstance(v, list) else len(v.get("Keys") or []) for v in items.values()]
        return sum(sizes) >= 2

    def _unprocessed(self, request: Request) -> _Response:
        """Forward the first half of the batch; hand back the rest, which moto never saw."""
        payload = json.loads(request.body)
        forwarded: dict[str, Any] = {}
        held: dict[str, Any] = {}
        held_count = 0
        for table, spec in payload["RequestItems"].items():
            items = spec if isinstance(spec, list) else spec["Keys"]
            keep = items[: max(1, len(items) // 2)]
            rest = items[len(keep) :]
            if isinstance(spec, list):
                forwarded[table] = keep
                if rest:
                    held[table] = rest
            else:
                forwarded[table] = {**spec, "Keys": keep}
                if rest:
                    held[table] = {**spec, "Keys": rest}
            held_count += len(rest)
        body = json.dumps({**payload, "RequestItems": forwarded}).encode()
        response = self._forward(request, body)
        if response.status != 200:
            return response
        result = json.loads(response.body)
        key = "UnprocessedItems" if request.operation == "BatchWriteItem" else "UnprocessedKeys"
        already = result.get(key) or {}
        if already:  # moto never does this; if it did, keep it exact rather than merge
            raise AssertionError(f"moto returned {key} itself: {already}")
        result[key] = held
        with self._lock:
            self.unprocessed_items += held_count
        data = json.dumps(result).encode()
        headers = [(k, v) for k, v in response.headers if k.lower() != "x-amz-crc32"]
        headers.append(("x-amz-crc32", str(zlib.crc32(data) & 0xFFFFFFFF)))
        return _Response(200, headers, data)


def _error(request: Request, action: Action) -> _Response:
    if request.is_dynamodb:
        status, code, message = {
            Action.THROTTLE: (
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. "
                "Consider increasing your provisioning level with the UpdateTable API.",
            ),
            Action.HTTP500: (500, "InternalServerError", "Internal server error"),
            Action.HTTP503: (503, "ServiceUnavailable", "Service unavailable"),
        }[action]
        body = json.dumps({"__type": _DDB_ERROR + code, "message": message}).encode()
        return _Response(status, [("Content-Type", "application/x-amz-json-1.0")], body)
    status, code = {
        Action.THROTTLE: (503, "SlowDown"),
        Action.HTTP500: (500, "InternalError"),
        Action.HTTP503: (503, "ServiceUnavailable"),
    }[action]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by faultproxy</Message><RequestId>0</RequestId></Error>"
    ).encode()
    return _Response(status, [("Content-Type", "application/xml")], body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a daemon killed by its test) is not an error of the proxy."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        request = Request(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self._read_body(),
        )
        response = self.owner.handle(request)
        if response is None:
            self._reset()
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        # Headers and body in one write: two small writes meet Nagle and delayed ACK (40 ms each).
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(head + (response.body if self.command != "HEAD" else b""))

    def _reset(self) -> None:
        """Close with RST (linger 0): the client sees a reset, not a clean end of response."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
