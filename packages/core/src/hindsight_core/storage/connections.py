"""Which connection (hence which API key) sends which turns: the key is never written to disk.

An outbox file records the server's URL and a one-way fingerprint of the key (:func:`key_id`). To send a file
the worker needs a :class:`Connection` with the same URL and key: one it was given or saw on a submitted turn
(:class:`ConnectionBook`), else the environment's, else (for a file recorded without a key) a default
connection to the URL (:func:`fallback_connection`). A file whose key is unknown waits (an *orphan*) until a
matching connection is registered, so a process serving several tenants never sends one tenant's turns with
another's key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..connection import Connection
from .turns import norm_url

__all__ = ["ConnectionBook", "fallback_connection", "key_id", "scrub"]

_Slot = tuple[str, str | None]


def key_id(connection: Connection) -> str | None:
    """A one-way fingerprint of the connection's API key (never the key), or None without a key.

    The outbox records it so that turns left on disk are only ever sent again with the key they were
    submitted with: a process serving several tenants of one server must not send one tenant's turns with
    another tenant's key.
    """
    if not connection.api_key:
        return None
    digest = hashlib.sha256(b"hindsight-outbox-key-id\0" + connection.api_key.encode("utf-8"))
    return digest.hexdigest()[:16]


def scrub(text: str, connection: Connection | None) -> str:
    """``text`` without the connection's API key."""
    if connection is not None and connection.api_key and connection.api_key in text:
        text = text.replace(connection.api_key, "***")
    return text


def fallback_connection(base_url: str, key: str | None) -> Connection | None:
    """For a file no registered connection matches: the environment's connection if its URL and key match,
    else a default connection to the URL if the file was recorded without a key, else None."""
    env = Connection.from_env()
    if norm_url(env.base_url) == base_url and key_id(env) == key:
        return env
    if key is None:
        return Connection(base_url=base_url)
    return None


class ConnectionBook:
    """The connections the worker knows, by (URL, key fingerprint), and the outbox files waiting for one.

    Not thread-safe by itself: the worker calls it with its lock held.
    """

    def __init__(self) -> None:
        self._connections: dict[_Slot, Connection] = {}
        self._orphans: dict[_Slot, list[Path]] = {}
        self.adopt: list[Path] = []
        """Orphan files whose connection was registered since: to be queued by the worker thread."""

    def register(self, connection: Connection) -> None:
        slot = (norm_url(connection.base_url), key_id(connection))
        self._connections[slot] = connection
        orphans = self._orphans.pop(slot, None)
        if orphans:
            self.adopt.extend(orphans)

    def knows(self, connection: Connection) -> bool:
        """Whether ``connection`` is the one registered for its URL and key."""
        return self._connections.get((norm_url(connection.base_url), key_id(connection))) == connection

    def get(self, base_url: str, key: str | None) -> Connection | None:
        return self._connections.get((base_url, key))

    def orphan(self, base_url: str, key: str | None, path: Path) -> None:
        """Remember a file whose key is unknown, until :meth:`register` brings its connection."""
        self._orphans.setdefault((base_url, key), []).append(path)

    def take_adopted(self) -> list[Path]:
        adopt, self.adopt = self.adopt, []
        return adopt

    def forget_files(self) -> None:
        """Forget orphans and adopted files (in a forked child: the parent owns them)."""
        self.adopt.clear()
        self._orphans.clear()
