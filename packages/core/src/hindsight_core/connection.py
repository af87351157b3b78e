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
from collections import OrderedDict
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


MAX_CLIENTS = 32
"""Clients kept per process (and per event loop): the least recently used beyond this is closed."""

_LoopClients = OrderedDict[Connection, AsyncHindsightClient]


class _Pools:
    """The shared clients: sync ones per connection, async ones per (event loop, connection)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sync: OrderedDict[Connection, HindsightClient] = OrderedDict()
        self.by_loop: dict[int, tuple[asyncio.AbstractEventLoop, _LoopClients]] = {}
        self.closing: set[asyncio.Task[None]] = set()


_pools = _Pools()


def sync_client(connection: Connection) -> HindsightClient:
    """The shared blocking client for ``connection`` (thread-safe; httpx clients are)."""
    evicted: list[HindsightClient] = []
    with _pools.lock:
        client = _pools.sync.get(connection)
        if client is None:
            client = connection.new_sync_client()
            _pools.sync[connection] = client
            while len(_pools.sync) > MAX_CLIENTS:
                evicted.append(_pools.sync.popitem(last=False)[1])
        else:
            _pools.sync.move_to_end(connection)
    for old in evicted:
        old.close()
    return client


def async_client(connection: Connection) -> AsyncHindsightClient:
    """The shared async client for ``connection`` on the running event loop.

    Clients of event loops that have closed (each ``asyncio.run()`` makes one) are dropped here, so their
    sockets and loops do not pile up."""
    loop = asyncio.get_running_loop()
    with _pools.lock:
        for key in [k for k, (other, _) in _pools.by_loop.items() if other.is_closed()]:
            del _pools.by_loop[key]
        entry = _pools.by_loop.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, OrderedDict())
            _pools.by_loop[id(loop)] = entry
        per_loop = entry[1]
        client = per_loop.get(connection)
        if client is None:
            client = connection.new_async_client()
            per_loop[connection] = client
            while len(per_loop) > MAX_CLIENTS:
                task = loop.create_task(per_loop.popitem(last=False)[1].aclose())
                _pools.closing.add(task)
                task.add_done_callback(_pools.closing.discard)
        else:
            per_loop.move_to_end(connection)
    return client


async def aclose_loop_clients() -> None:
    """Close the async clients of the running loop (call before the loop ends to release sockets early)."""
    loop = asyncio.get_running_loop()
    with _pools.lock:
        entry = _pools.by_loop.pop(id(loop), None)
    for client in entry[1].values() if entry is not None and entry[0] is loop else ():
        await client.aclose()


def close_clients() -> None:
    """Close every shared sync client. Async clients are dropped with their event loop."""
    with _pools.lock:
        clients = list(_pools.sync.values())
        _pools.sync.clear()
    for client in clients:
        client.close()


def _after_fork_in_child() -> None:
    # Pooled sockets opened before a fork are shared with the parent: a child must never use them (it could
    # read another process's response). Forget them without closing (closing would cut the parent's).
    _pools.__init__()  # type: ignore[misc]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_clients)
