"""An httpx transport over the standard library's ``http.client``, for the blocking client.

The blocking client's requests are built, retried and parsed by httpx and :mod:`._base`; only the bytes go
through ``http.client``. On this project's 2-core test machine a small POST on loopback costs about 1.1 ms of
CPU through httpx's own transport (httpcore, h11) and 0.25 ms through ``http.client``: the storage worker
sends a retain for nearly every turn a busy proxy serves, and the sync ``completion()`` recalls for each call.

Used unless a proxy is configured in the environment (httpx applies ``HTTP(S)_PROXY`` only to its own
transports) or ``HINDSIGHT_HTTP_TRANSPORT=httpx``. Connections are kept alive per (scheme, host, port) and
taken by one request at a time (thread-safe); an idle connection the server has closed is noticed before it
is reused. Errors become the httpx errors the retry policy knows: a refused or unreachable server is
:class:`httpx.ConnectError`, a connect timeout :class:`httpx.ConnectTimeout`, a server that stops answering
:class:`httpx.ReadTimeout`, a connection dropped mid-request :class:`httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import urllib.request
from collections import defaultdict

import httpx

__all__ = ["TRANSPORT_ENV", "StdlibTransport", "own_transports_allowed"]

TRANSPORT_ENV = "HINDSIGHT_HTTP_TRANSPORT"

_SKIPPED = frozenset({b"connection", b"transfer-encoding"})
_Key = tuple[str, str, int]


def own_transports_allowed() -> bool:
    """Whether new clients may use this module's and :mod:`._aiohttp`'s transports instead of httpx's own:
    not when ``HINDSIGHT_HTTP_TRANSPORT=httpx``, nor when the environment configures an HTTP proxy."""
    if os.environ.get(TRANSPORT_ENV, "").strip().lower() == "httpx":
        return False
    return not urllib.request.getproxies()


def _dead(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection that can no longer be used (the server closed it, or sent junk)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class StdlibTransport(httpx.BaseTransport):
    """Sends httpx requests with ``http.client``; keeps up to ``max_idle`` idle connections per host."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_idle: int = 20) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: defaultdict[_Key, list[http.client.HTTPConnection]] = defaultdict(list)
        self._pid = os.getpid()

    def _take(self, key: _Key) -> http.client.HTTPConnection | None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours to use
                self._idle.clear()
                self._pid = os.getpid()
            idle = self._idle[key]
            while idle:
                connection = idle.pop()
                if not _dead(connection):
                    return connection
                connection.close()
        return None

    def _give_back(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[key]
            if len(idle) < self._max_idle and self._pid == os.getpid():
                idle.append(connection)
                return
        connection.close()

    def _connect(
        self, key: _Key, timeout: float | None, request: httpx.Request
    ) -> http.client.HTTPConnection:
        scheme, host, port = key
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from exc
        except OSError as exc:  # refused, unreachable, name not resolved, TLS handshake failed
            connection.close()
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from exc
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        key: _Key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        limits: dict[str, float | None] = request.extensions.get("timeout", {})
        connection = self._take(key) or self._connect(key, limits.get("connect"), request)
        if connection.sock is not None:
            connection.sock.settimeout(limits.get("read"))
        body = request.read()
        try:
            connection.putrequest(
                request.method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True
            )
            for name, value in request.headers.raw:
                connection.putheader(name.decode("latin-1"), value.decode("latin-1"))
            connection.endheaders(body or None)
            response = connection.getresponse()
            content = response.read()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout("timed out waiting for the server", request=request) from exc
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise httpx.RemoteProtocolError(
                f"the connection to {url.host}:{key[2]} failed: {exc!r}", request=request
            ) from exc
        if response.will_close:
            connection.close()
        else:
            self._give_back(key, connection)
        headers = [(k, v) for k, v in response.getheaders() if k.lower().encode("latin-1") not in _SKIPPED]
        return httpx.Response(
            response.status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode("latin-1")},
        )

    def close(self) -> None:
        with self._lock:
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()
