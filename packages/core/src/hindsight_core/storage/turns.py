"""The turn and what became of it: :class:`Turn` (what to store), :class:`StorageResult` (one turn's outcome),
:class:`StorageFailure` (an error, for ``pending_errors()``) and :class:`StorageStats` (the counters).

These are the storage package's public data types; nothing here does I/O or holds worker state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal

from ..connection import Connection
from ..errors import ConfigurationError, StorageError

__all__ = [
    "OnDone",
    "StorageFailure",
    "StorageResult",
    "StorageStats",
    "StorageStatus",
    "Turn",
    "norm_url",
    "utcnow",
]

StorageStatus = Literal["stored", "failed", "deferred"]
"""What became of a turn: acknowledged by the server, given up on, or kept in the outbox for a later run."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_turn_id() -> str:
    return str(uuid.uuid4())


def norm_url(url: str) -> str:
    """A server URL as turns, batches and outbox files record it (no surrounding space, no trailing slash)."""
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Turn:
    """One conversation exchange to store, with everything needed to store it (no per-user worker state).

    ``content`` is the transcript of the exchange, already built by the caller. ``document_id`` names the
    conversation: turns are appended to that document, in order. With ``update_mode="replace"`` the turn
    replaces the document's content instead (a direct ``retain`` of a document, as the server does by
    default); such a turn is never merged with another. ``timestamp`` must be timezone-aware (it is kept in
    UTC). ``tags`` and ``metadata`` are copied, so the caller may reuse its own objects.

    :meth:`to_dict` / :meth:`from_dict` are the outbox format. The dict holds the server's ``base_url`` but
    never the API key: :meth:`from_dict` takes the :class:`Connection` to re-attach.
    """

    connection: Connection
    bank_id: str
    document_id: str
    content: str
    context: str | None = None
    tags: tuple[str, ...] | None = None
    metadata: Mapping[str, str] | None = None
    timestamp: datetime = field(default_factory=utcnow)
    turn_id: str = field(default_factory=_new_turn_id)
    update_mode: Literal["append", "replace"] = "append"

    def __post_init__(self) -> None:
        if self.update_mode not in ("append", "replace"):
            raise ConfigurationError(
                f"Turn.update_mode must be 'append' or 'replace', got {self.update_mode!r}"
            )
        if not isinstance(self.connection, Connection):
            raise ConfigurationError(
                f"Turn.connection must be a Connection, got {type(self.connection).__name__}"
            )
        for name in ("bank_id", "document_id", "turn_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"Turn.{name} must be a non-empty string, got {value!r:.60}")
        if not isinstance(self.content, str) or not self.content.strip():
            raise ConfigurationError(f"Turn.content must be a non-empty string, got {self.content!r:.60}")
        if self.context is not None and not isinstance(self.context, str):
            raise ConfigurationError(f"Turn.context must be a string or None, got {self.context!r:.60}")
        if self.tags is not None:
            raw: object = self.tags
            tags = tuple(raw) if isinstance(raw, Iterable) and not isinstance(raw, (str, bytes)) else None
            if tags is None or not all(isinstance(t, str) for t in tags):
                raise ConfigurationError(f"Turn.tags must be a sequence of strings, got {raw!r:.80}")
            object.__setattr__(self, "tags", tags)
        if self.metadata is not None:
            if not isinstance(self.metadata, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
            ):
                raise ConfigurationError(
                    f"Turn.metadata must map strings to strings, got {self.metadata!r:.80}"
                )
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if not isinstance(self.timestamp, datetime) or self.timestamp.utcoffset() is None:
            raise ConfigurationError(
                f"Turn.timestamp must be a timezone-aware datetime, got {self.timestamp!r:.60}"
            )
        object.__setattr__(self, "timestamp", self.timestamp.astimezone(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of this turn: ``base_url`` instead of the connection, no API key."""
        return {
            "turn_id": self.turn_id,
            "base_url": norm_url(self.connection.base_url),
            "bank_id": self.bank_id,
            "document_id": self.document_id,
            "content": self.content,
            "context": self.context,
            "tags": list(self.tags) if self.tags is not None else None,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "timestamp": self.timestamp.isoformat(),
            "update_mode": self.update_mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], connection: Connection) -> Turn:
        """Rebuild a turn written by :meth:`to_dict` with ``connection`` (which must be for the same URL)."""
        try:
            base_url = data["base_url"]
            if norm_url(str(base_url)) != norm_url(connection.base_url):
                raise ConfigurationError(
                    f"the turn was stored for {base_url!r}, not for the connection's {connection.base_url!r}"
                )
            tags = data.get("tags")
            return cls(
                connection=connection,
                bank_id=data["bank_id"],
                document_id=data["document_id"],
                content=data["content"],
                context=data.get("context"),
                tags=tuple(tags) if tags is not None else None,
                metadata=data.get("metadata"),
                timestamp=datetime.fromisoformat(data["timestamp"]),
                turn_id=data["turn_id"],
                update_mode=data.get("update_mode", "append"),  # files written before it was recorded
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"not a stored turn: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class StorageResult:
    """What became of one submitted turn, given to the ``on_done`` callback of :meth:`StorageWorker.submit`.

    ``status`` is ``"stored"`` (the server acknowledged it), ``"failed"`` (given up on; ``error`` says why)
    or ``"deferred"`` (the worker was closed or the process exited before the server acknowledged it; it is
    kept in the outbox and sent by the next worker that starts on that directory).
    """

    turn_id: str
    status: StorageStatus
    error: str | None = None


@dataclass(frozen=True)
class StorageFailure:
    """A storage error for the turns of one document of one request.

    ``permanent=False``: the worker is still retrying these turns (the entry disappears when they are
    stored). ``permanent=True``: the worker has given up on them (rejected by the server, queue full,
    or unsent at exit without an outbox); with an outbox they are in its dead-letter file.
    The message never contains the API key.
    """

    turn_ids: tuple[str, ...]
    bank_id: str
    document_id: str
    error: str
    permanent: bool
    when: datetime
    base_url: str
    status_code: int | None = None
    attempts: int = 1

    def as_error(self) -> StorageError:
        """This failure as an exception (what ``get_pending_storage_errors()`` of hindsight-litellm lists)."""
        state = "gave up on" if self.permanent else "still retrying"
        return StorageError(
            f"Hindsight storage {state} {len(self.turn_ids)} turn(s) of bank {self.bank_id!r}, document "
            f"{self.document_id!r} after {self.attempts} attempt(s): {self.error}",
            failure=self,
            permanent=self.permanent,
        )


@dataclass(frozen=True)
class StorageStats:
    """Counters of a :class:`StorageWorker` (turns, except ``requests`` and ``retries``).

    ``pending`` turns are accepted and not yet resolved, ``on_disk`` of them are only in the outbox right
    now (not in memory). ``recovered`` counts turns found in the outbox at start (left by an earlier run).
    """

    submitted: int
    stored: int
    failed: int
    deferred: int
    pending: int
    on_disk: int
    recovered: int
    requests: int
    retries: int


OnDone = Callable[[StorageResult], None]
"""The ``on_done`` callback of ``StorageWorker.submit()``."""
