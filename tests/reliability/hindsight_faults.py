"""A programmable fault server for the Hindsight API: a loopback HTTP server put between the integrations
and the real Hindsight server.

It answers recall, reflect and retain requests with a chosen fault (an HTTP status and body, a response
that never comes, a body that is not JSON) and proxies every other request, and every request of an
operation without a fault, to the real server unchanged. :meth:`HindsightFaults.refuse` closes its listening
socket (and the open keep-alive connections), so new connections are refused as by a stopped server;
:meth:`HindsightFaults.accept` listens on the same port again.

::

    faults = HindsightFaults(hindsight_server)
    faults.fail("recall", KINDS["5xx"].fault)   # recall answers 503 until cleared
    faults.clear()                              # everything goes to the real server again
    faults.hits["recall"]                       # recall requests received so far
    faults.close()
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx

__all__ = ["KINDS", "Fault", "FaultKind", "HindsightFaults", "Operation", "Seen"]

Operation = Literal["recall", "reflect", "retain", "health"]

_OPERATIONS: tuple[tuple[Operation, str, re.Pattern[str]], ...] = (
    ("recall", "POST", re.compile(r"^/v1/default/banks/[^/]+/memories/recall$")),
    ("reflect", "POST", re.compile(r"^/v1/default/banks/[^/]+/reflect$")),
    ("retain", "POST", re.compile(r"^/v1/default/banks/[^/]+/memories$")),
    ("health", "GET", re.compile(r"^/health$")),  # what the circuit breaker's probe asks
)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
)


@dataclass(frozen=True)
class Seen:
    """A request the fault server received: its operation (None: proxied as is) and headers."""

    operation: Operation | None
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Fault:
    """How to answer: ``status`` with ``body`` (bytes, or a function of the request) and ``headers``; or,
    with ``hang``, never (the request is held until the fault is cleared or the server closed, then the
    connection is dropped); or, with ``proxy``, as the real server does, after ``delay``."""

    status: int = 200
    body: bytes | Callable[[Seen], bytes] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0
    """Seconds to wait before answering (with ``proxy``: before passing the request on)."""
    proxy: bool = False
    """Pass the request on to the real server (after ``delay``): a slow server that answers."""


@dataclass(frozen=True)
class FaultKind:
    """A way Hindsight misbehaves, and the error the integrations must report for it."""

    name: str
    fault: Fault | None  # None: connection refused (HindsightFaults.refuse)
    error: str  # the error type named in the debug record
    transient: bool  # storage keeps retrying (True) or counts the turn as stored (False)
    pauses: bool = False  # a connection failure: the server's circuit breaker opens, lookups skip at once


_JSON = {"content-type": "application/json"}

KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind("refused", None, "APIConnectionError", transient=True, pauses=True),
        FaultKind("hung", Fault(hang=True), "APITimeoutError", transient=True, pauses=True),
        FaultKind(
            "5xx",
            Fault(503, b'{"detail": "overloaded, try later"}', {**_JSON, "retry-after-ms": "20"}),
            "ServerError",
            transient=True,
        ),
        FaultKind(
            "429",
            Fault(429, b'{"detail": "slow down"}', {**_JSON, "retry-after-ms": "20"}),
            "RateLimitError",
            transient=True,
        ),
        FaultKind(
            "malformed",
            Fault(200, b'{"results": [{"text": "half a mem', _JSON),
            "APIResponseValidationError",
            transient=False,
        ),
    )
}
"""The failure kinds of the reliability tests. A retain answered with an unreadable 2xx counts as stored:
the server said it accepted the request (see docs/reliability.md)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # refuse() must not wait for held (hung) or idle keep-alive requests
    allow_reuse_address = True  # listen again on the same port after refuse()
    request_queue_size = 256  # a hundred clients connecting at once must not overflow the accept queue

    def __init__(self, owner: HindsightFaults, port: int) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is None or isinstance(error, (OSError, httpx.HTTPError)):
            return  # a client that went away, or the connection dropped on purpose
        self.owner.errors.append(error)

    def drop_connections(self) -> None:
        with self._lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HindsightFaults/1.0"
    sys_version = ""
    timeout = 60

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        operation = next(
            (name for name, method, pattern in _OPERATIONS if self.command == method and pattern.match(path)),
            None,
        )
        seen = Seen(operation, self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
        owner = self.server.owner
        fault = owner._take(seen)
        try:
            if fault is not None and fault.delay:
                owner._released.wait(fault.delay)
            if fault is None or fault.proxy:
                self._proxy(seen)
            elif fault.hang:
                owner._released.wait()
                self.close_connection = True  # the client gave up long ago: hang up without answering
            else:
                payload = fault.body(seen) if callable(fault.body) else fault.body
                self._answer(fault.status, payload, fault.headers)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _proxy(self, seen: Seen) -> None:
        headers = {k: v for k, v in seen.headers.items() if k not in _HOP_BY_HOP}
        response = self.server.owner._upstream.request(
            seen.method, self.path, headers=headers, content=seen.body or None
        )
        kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        self._answer(response.status_code, response.content, kept)

    def _answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HindsightFaults:
    """A loopback HTTP server in front of the Hindsight server at ``upstream`` that injects faults.

    ``url`` is what the integrations are pointed at. ``hits`` counts the requests received per operation
    (faulted or proxied), ``seen`` keeps every request (headers included: tests check what was sent).
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = httpx.Client(base_url=upstream, timeout=60)
        self._lock = threading.Lock()
        self._faults: dict[Operation, tuple[Fault, int | None]] = {}
        self._released = threading.Event()
        self.hits: Counter[str] = Counter()
        self.seen: list[Seen] = []
        self.errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}"

    # -- control

    def fail(self, operation: Operation, fault: Fault, times: int | None = None) -> None:
        """Answer the next ``times`` (default: every) ``operation`` requests with ``fault``."""
        with self._lock:
            self._faults[operation] = (fault, times)
            if fault.hang:
                self._released.clear()

    def apply(self, kind: FaultKind, *operations: Operation) -> None:
        """Make ``operations`` misbehave as ``kind`` says: by default recall, reflect and retain, and for a
        hung server its health check too (a server that answers errors is up: its health check answers)."""
        if kind.fault is None:
            self.refuse()
            return
        default: tuple[Operation, ...] = ("recall", "reflect", "retain")
        for operation in operations or ((*default, "health") if kind.fault.hang else default):
            self.fail(operation, kind.fault)

    def clear(self) -> None:
        """No faults any more: release hung requests, listen again if refusing, proxy everything."""
        with self._lock:
            self._faults.clear()
        self._released.set()
        self.accept()

    def refuse(self) -> None:
        """Stop listening and drop open connections: new connections are refused."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(5)

    def accept(self) -> None:
        """Listen again (on the same port) after :meth:`refuse`."""
        with self._lock:
            listening = self._server is not None
        if not listening:
            self._listen()

    def close(self) -> None:
        self._released.set()
        self.refuse()
        self._upstream.close()

    def authorizations(self) -> set[str]:
        """The ``Authorization`` headers received so far."""
        with self._lock:
            return {s.headers["authorization"] for s in self.seen if "authorization" in s.headers}

    # -- machinery

    def _listen(self) -> None:
        server = _Server(self, self.port)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        with self._lock:
            self._server, self._thread = server, thread

    def _take(self, seen: Seen) -> Fault | None:
        with self._lock:
            self.seen.append(seen)
            if seen.operation is None:
                return None
            self.hits[seen.operation] += 1
            entry = self._faults.get(seen.operation)
            if entry is None:
                return None
            fault, times = entry
            if times is not None:
                if times <= 1:
                    del self._faults[seen.operation]
                else:
                    self._faults[seen.operation] = (fault, times - 1)
            return fault
