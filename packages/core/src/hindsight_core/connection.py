"""Where the Hindsight server is and how to talk to it, and the shared clients for each such place.

A :class:`Connection` is a hashable value (URL, key, time budgets, retry policy). :func:`sync_client` and
:func:`async_client` hand out one pooled client per connection (and, for asyncio, per event loop, since an
``httpx.AsyncClient`` belongs to the loop it was first used on), so every call reuses warm connections
instead of opening a new one. :func:`close_clients` closes them all (it runs at interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from dataclasses import dataclass, field

from .client import DEFAULT_BASE_URL, AsyncHindsightClient, HindsightClient, RetryPolicy, Timeouts

__all__ = ["Connection", "aclose_loop_clients", "async_client", "close_clients", "sync_client"]


@dataclass(frozen=True)
class Connection:
    """A Hindsight server and the policy for talking to it. The API key is kept out of ``repr``."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls) -> Connection:
        """``HINDSIGHT_API_URL`` and ``HINDSIGHT_API_KEY``, with the defaults for the rest."""
        return cls(
            base_url=os.environ.get("HINDSIGHT_API_URL") or DEFAULT_BASE_URL,
            api_key=os.environ.get("HINDSIGHT_API_KEY") or None,
        )

    def new_sync_client(self) -> HindsightClient:
        return HindsightClient(self.base_url, self.api_key or "", timeouts=self.timeouts, retry=self.retry)

    def new_async_client(self) -> AsyncHindsightClient:
        return AsyncHindsightClient(
            self.base_url, self.api_key or "", timeouts=self.timeouts, retry=self.retry
        )


_lock = threading.Lock()
_sync_clients: dict[Connection, HindsightClient] = {}
_async_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Connection, AsyncHindsightClient]
] = weakref.WeakKeyDictionary()


def sync_client(connection: Connection) -> HindsightClient:
    """The shared blocking client for ``connection`` (thread-safe; httpx clients are)."""
    client = _sync_clients.get(connection)
    if client is None:
        with _lock:
            client = _sync_clients.get(connection)
            if client is None:
                client = connection.new_sync_client()
                _sync_clients[connection] = client
    return client


def async_client(connection: Connection) -> AsyncHindsightClient:
    """The shared async client for ``connection`` on the running event loop."""
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async_clients.get(loop)
        if per_loop is None:
            per_loop = {}
            _async_clients[loop] = per_loop
        client = per_loop.get(connection)
        if client is None:
            client = connection.new_async_client()
            per_loop[connection] = client
    return client


async def aclose_loop_clients() -> None:
    """Close the async clients of the running loop (call before the loop ends to release sockets early)."""
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async_clients.pop(loop, {})
    for client in per_loop.values():
        await client.aclose()


def close_clients() -> None:
    """Close every shared sync client. Async clients are dropped with their event loop."""
    with _lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()


atexit.register(close_clients)
