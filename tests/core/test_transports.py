"""The clients' own transports (``http.client`` for the blocking client, aiohttp for the asyncio one), against
a real loopback HTTP server: the same answers as httpx's transports, the same errors for the retry policy,
kept-alive connections reused and stale ones noticed, and httpx's transports whenever a proxy is configured.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from hindsight_core.client import AsyncHindsightClient, HindsightClient, RetryPolicy, Timeouts
from hindsight_core.client._aiohttp import AiohttpTransport
from hindsight_core.client._stdlib import TRANSPORT_ENV, StdlibTransport
from hindsight_core.errors import APIConnectionError, APITimeoutError, NotFoundError

RECALL = {"results": [{"id": "m1", "text": "The user keeps bees.", "type": "world"}]}
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.02)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.requests.append((self.path, self.client_address[1], self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(json.loads(self.rfile.read(length)) if length else None)
        mode = self.server.mode
        if mode == "hang":
            self.server.release.wait(10)
            return
        if mode == "flaky" and len(self.server.requests) == 1:
            self._send(503, b'{"detail": "busy"}')
            return
        if mode == "missing":
            self._send(404, b'{"detail": "Bank not found"}')
            return
        body = json.dumps(RECALL).encode()
        if mode == "gzip":
            self._send(200, gzip.compress(body), [("Content-Encoding", "gzip")])
        elif mode == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:10], body[10:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(200, body)
        if mode == "close-after":
            self.close_connection = (
                True  # closes the kept-alive connection after answering, without saying so
            )

    def _send(self, status: int, body: bytes, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"
        self.requests: list[tuple[str, int, str | None]] = []
        self.bodies: list[Any] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _sync(url: str, **kwargs: Any) -> HindsightClient:
    client = HindsightClient(url, api_key="sk-transport-test", retry=FAST, **kwargs)
    assert isinstance(client._http._transport, StdlibTransport)
    return client


def _async(url: str, **kwargs: Any) -> AsyncHindsightClient:
    client = AsyncHindsightClient(url, api_key="sk-transport-test", retry=FAST, **kwargs)
    assert isinstance(client._http._transport, AiohttpTransport)
    return client


@pytest.fixture(autouse=True)
def _own_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(TRANSPORT_ENV, "aiohttp")  # the async client's transport even if nothing imported it


@pytest.mark.parametrize("mode", ["ok", "gzip", "chunked"])
def test_both_transports_read_the_answer(server: _Server, mode: str) -> None:
    server.mode = mode
    with _sync(server.url) as client:
        sync_texts = [m.text for m in client.recall("bees", "what do I keep?").results]

    async def run() -> list[str]:
        async with _async(server.url) as client:
            return [m.text for m in (await client.recall("bees", "what do I keep?")).results]

    assert sync_texts == asyncio.run(run()) == ["The user keeps bees."]
    assert server.bodies[0]["query"] == "what do I keep?"
    assert all(auth == "Bearer sk-transport-test" for _, _, auth in server.requests)


def test_own_transports_are_called_directly_and_not_after_close(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request we built goes straight to our transport (httpx's client machinery has nothing to add to
    it: no auth, cookies, redirects or hooks), each bank's URL is parsed once, and a closed client refuses
    to send instead of opening new connections."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("httpx.Client.send was called")

    monkeypatch.setattr(httpx.Client, "send", refuse)
    monkeypatch.setattr(httpx.AsyncClient, "send", refuse)
    client = _sync(server.url)
    for bank in ("bees", "bees", "wasps"):
        client.recall(bank, "what do I keep?")
    assert [path for path, _, _ in server.requests] == [
        "/v1/default/banks/bees/memories/recall",
        "/v1/default/banks/bees/memories/recall",
        "/v1/default/banks/wasps/memories/recall",
    ]
    assert len(client._urls) == 2
    client.close()
    with pytest.raises(AssertionError, match="send was called"):  # the closed client goes through httpx
        client.recall("bees", "q")

    async def run() -> None:
        aclient = _async(server.url)
        assert (await aclient.recall("bees", "q")).results[0].text == "The user keeps bees."
        await aclient.aclose()
        with pytest.raises(AssertionError, match="send was called"):
            await aclient.recall("bees", "q")

    asyncio.run(run())
    monkeypatch.undo()
    closed = HindsightClient(server.url)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):  # httpx's own answer for a closed client
        closed.recall("bees", "q")


def test_connections_are_kept_alive_and_stale_ones_noticed(server: _Server) -> None:
    with _sync(server.url) as client:
        for _ in range(3):
            client.recall("bees", "q")
        assert len({port for _, port, _ in server.requests}) == 1  # one connection for three requests
        server.mode = "close-after"
        client.recall("bees", "q")  # the server closes this connection after answering
        time.sleep(0.05)
        server.mode = "ok"
        client.recall("bees", "q")  # a new connection, no error
    ports = [port for _, port, _ in server.requests]
    assert ports[4] != ports[3]
    assert len(server.requests) == 5

    async def run() -> None:
        async with _async(server.url) as client:
            for _ in range(3):
                await client.recall("bees", "q")

    server.requests.clear()
    asyncio.run(run())
    assert len({port for _, port, _ in server.requests}) == 1


def test_errors_mean_what_the_retry_policy_expects(server: _Server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
    timeouts = Timeouts(connect=1.0, recall=0.3)
    server.mode = "flaky"  # a 503 first: retried, then answered
    with _sync(server.url) as client:
        assert len(client.recall("bees", "q").results) == 1
        server.mode = "missing"
        with pytest.raises(NotFoundError):
            client.recall("bees", "q")
    with _sync(closed) as client, pytest.raises(APIConnectionError):
        client.recall("bees", "q")
    server.mode = "hang"
    started = time.monotonic()
    with _sync(server.url, timeouts=timeouts) as client, pytest.raises(APITimeoutError):
        client.recall("bees", "q")
    assert time.monotonic() - started < 5

    async def run() -> None:
        async with _async(closed) as client:
            with pytest.raises(APIConnectionError):
                await client.recall("bees", "q")
        async with _async(server.url, timeouts=timeouts) as client:
            with pytest.raises(APITimeoutError):
                await client.recall("bees", "q")
        server.mode = "flaky"
        server.requests.clear()
        async with _async(server.url) as client:
            assert len((await client.recall("bees", "q")).results) == 1
        assert len(server.requests) == 2

    asyncio.run(run())


def test_an_async_client_dropped_with_its_loop_reports_nothing(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Each ``asyncio.run()`` makes a loop; a client left behind on it closes its connections when
    collected, with no "Unclosed client session" error logged."""

    async def use() -> None:
        await _async(server.url).recall("bees", "q")  # never closed

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        for _ in range(3):
            asyncio.run(use())
        gc.collect()
    assert not [r for r in caplog.records if "nclosed" in r.getMessage()]


def test_httpx_transports_when_a_proxy_is_configured_or_asked_for(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not isinstance(HindsightClient(server.url)._http._transport, StdlibTransport)
    assert not isinstance(AsyncHindsightClient(server.url)._http._transport, AiohttpTransport)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv(TRANSPORT_ENV, "httpx")
    client = HindsightClient(server.url)
    assert isinstance(client._http._transport, httpx.HTTPTransport)
    assert len(client.recall("bees", "q").results) == 1
