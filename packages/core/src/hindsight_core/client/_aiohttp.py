"""An httpx transport over aiohttp's connection pool, for the asyncio client.

The async client's requests are built, retried and parsed by httpx and :mod:`._base` as always; only the
bytes travel through aiohttp. Measured on loopback, one recall costs about 1.0-1.6 ms of CPU through httpx's
own async stack (httpcore over anyio) and about 0.3 ms through aiohttp: on a busy LiteLLM proxy, which
recalls for every request, that difference is most of what memory costs the process (``bench/proxy.py``).

Used when the process has imported aiohttp already (LiteLLM imports it: importing it ourselves would cost a
few hundred ms, on an event loop at that) and no proxy is configured in the environment (httpx applies
``HTTP(S)_PROXY`` only to its own transports). ``HINDSIGHT_HTTP_TRANSPORT=httpx`` turns it off,
``HINDSIGHT_HTTP_TRANSPORT=aiohttp`` asks for it whenever aiohttp is installed. aiohttp's errors become the
httpx errors the retry policy already knows: a refused or unreachable server is :class:`httpx.ConnectError`,
a connect timeout :class:`httpx.ConnectTimeout`, a server that stops answering :class:`httpx.ReadTimeout`, a
dropped connection :class:`httpx.RemoteProtocolError`.

The session belongs to the event loop it was created on (the pooled async clients are per loop already); a
transport dropped without :meth:`aclose` (its loop ended) closes its connections when collected, so no
"unclosed session" is reported for loops that ``asyncio.run()`` made and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import ssl
import sys
import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

from ._stdlib import TRANSPORT_ENV, own_transports_allowed

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "aiohttp_usable"]

_SKIPPED_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


def aiohttp_usable() -> bool:
    """Whether new async clients use :class:`AiohttpTransport` (see the module's documentation)."""
    if not own_transports_allowed():
        return False
    module: ModuleType | None = sys.modules.get("aiohttp")
    if module is None and os.environ.get(TRANSPORT_ENV, "").strip().lower() == "aiohttp":
        module = importlib.import_module("aiohttp") if importlib.util.find_spec("aiohttp") else None
    # aiohttp >= 3.10 tells connect timeouts from read timeouts.
    return module is not None and hasattr(module, "ConnectionTimeoutError")


def _close_connector(connector: aiohttp.BaseConnector) -> None:
    """Close ``connector``'s connections without a running loop (the loop may be gone)."""
    if connector.closed:
        return
    with contextlib.suppress(Exception):
        connector._close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with aiohttp; ``limit`` bounds the open connections."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limit: int = 1000) -> None:
        self._ssl = ssl_context
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        import aiohttp

        session = self._session
        if session is not None and self._loop is loop and not session.closed:
            return session
        if session is not None and session.connector is not None:
            _close_connector(session.connector)  # a session of an earlier loop
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes, as it does for its own transports
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        self._loop = loop
        weakref.finalize(self, _close_connector, connector)
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        session = self._session_for(asyncio.get_running_loop())
        limits: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=limits.get("pool"),
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _SKIPPED_HEADERS
        ]
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                status, raw_headers = response.status, response.raw_headers
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting", request=request) from exc
        except asyncio.TimeoutError as exc:  # aiohttp's socket read timeout is one
            raise httpx.ReadTimeout(str(exc) or "timed out waiting for the server", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(
            status,
            headers=list(raw_headers),
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            if self._loop is asyncio.get_running_loop():
                await session.close()
            elif session.connector is not None:
                _close_connector(session.connector)
