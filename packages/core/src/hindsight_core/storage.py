"""Background storage of conversation turns: off the LLM call's hot path, each turn stored once, nothing lost
silently.

Why a worker
    Retaining a turn takes the server 0.5-2 s and can fail. Doing it inline would add that to every LLM call,
    and doing it on fire-and-forget daemon threads (what hindsight-litellm 0.5.4 did) loses turns at exit
    and on every error. :class:`StorageWorker` takes a :class:`Turn` in O(1) without I/O (:meth:`submit`),
    and one background thread sends turns in order, retries what failed for transient reasons, reports what
    failed for good, and at exit either finishes, keeps the rest on disk (the *outbox*) or says what was lost.

Why append mode and operation ids
    Each turn is sent once, appended (``update_mode="append"``) to the document of its conversation: the
    worker never re-reads a document and never re-sends history, so stored text grows linearly and concurrent
    conversations cannot overwrite each other. Every request is an async retain carrying an ``operation_id``
    derived from the turn ids it carries; the batch never changes once formed, so a retry after a lost
    acknowledgement (or a re-send from the outbox by the next process) is recognised by the server and
    stores nothing twice.

Batching
    Turns for the same server and bank that are waiting together go in one request (at most ``max_batch``
    turns). The server refuses two items with the same ``document_id`` in one async request, so consecutive
    turns of one conversation inside a batch become one item whose content is their texts joined by a newline
    (the separator the server itself uses when appending), stamped with the first turn's timestamp. Turns
    whose context, tags or metadata differ are never merged; they go in the next request.

Threads
    The worker thread is a daemon thread plus an :mod:`atexit` handler. A non-daemon thread would be joined
    by the interpreter *before* atexit handlers run, so a server outage would hang the process at exit
    forever; instead, the exit handler flushes with a bounded wait (``exit_timeout``) and then accounts for
    every turn still unsent: kept in the outbox, or logged at ERROR and reported as failed.

See ``docs/storage.md`` for the guarantees in user terms.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from .client import HindsightClient
from .connection import Connection, sync_client
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    ConfigurationError,
    StorageError,
)
from .models import RetainItem

__all__ = [
    "OUTBOX_DIR_ENV",
    "StorageFailure",
    "StorageResult",
    "StorageStats",
    "StorageStatus",
    "StorageWorker",
    "Turn",
    "default_worker",
]

logger = logging.getLogger("hindsight_core.storage")

OUTBOX_DIR_ENV = "HINDSIGHT_OUTBOX_DIR"
"""Environment variable naming the outbox directory (read by :meth:`StorageWorker.from_env`)."""

StorageStatus = Literal["stored", "failed", "deferred"]
"""What became of a turn: acknowledged by the server, given up on, or kept in the outbox for a later run."""

_FILE_FORMAT = "hindsight-outbox/1"
_DEAD_LETTER = "dead-letter.jsonl"
_OPERATION_NAMESPACE = uuid.UUID("6f1d3c2a-8b4e-5a7f-9c0d-2e4b6a8c0f13")
_TRANSIENT_STATUS = frozenset({408, 409, 429})
_SPLITTABLE_STATUS = frozenset({400, 413, 422})
_STALE_TEMP_SECONDS = 3600.0
_file_names = itertools.count(1)
_live_workers: weakref.WeakSet[StorageWorker] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for worker in list(_live_workers):
        worker._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_turn_id() -> str:
    return str(uuid.uuid4())


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/")


def _key_id(connection: Connection) -> str | None:
    """A one-way fingerprint of the connection's API key (never the key), or None without a key.

    The outbox records it so that turns left on disk are only ever sent again with the key they were
    submitted with: a process serving several tenants of one server must not send one tenant's turns with
    another tenant's key.
    """
    if not connection.api_key:
        return None
    digest = hashlib.sha256(b"hindsight-outbox-key-id\0" + connection.api_key.encode("utf-8"))
    return digest.hexdigest()[:16]


def _scrub(text: str, connection: Connection | None) -> str:
    if connection is not None and connection.api_key and connection.api_key in text:
        text = text.replace(connection.api_key, "***")
    return text


# ------------------------------------------------------------------------------------------ public types


@dataclass(frozen=True)
class Turn:
    """One conversation exchange to store, with everything needed to store it (no per-user worker state).

    ``content`` is the transcript of the exchange, already built by the caller. ``document_id`` names the
    conversation: turns are appended to that document, in order. ``timestamp`` must be timezone-aware (it is
    kept in UTC). ``tags`` and ``metadata`` are copied, so the caller may reuse its own objects.

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
    timestamp: datetime = field(default_factory=_utcnow)
    turn_id: str = field(default_factory=_new_turn_id)

    def __post_init__(self) -> None:
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
            "base_url": _norm_url(self.connection.base_url),
            "bank_id": self.bank_id,
            "document_id": self.document_id,
            "content": self.content,
            "context": self.context,
            "tags": list(self.tags) if self.tags is not None else None,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "timestamp": self.timestamp.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], connection: Connection) -> Turn:
        """Rebuild a turn written by :meth:`to_dict` with ``connection`` (which must be for the same URL)."""
        try:
            base_url = data["base_url"]
            if _norm_url(str(base_url)) != _norm_url(connection.base_url):
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


# --------------------------------------------------------------------------------------- internal state


OnDone = Callable[[StorageResult], None]
_LaneKey = tuple[str, str]


@dataclass(eq=False)
class _Ref:
    """What the worker remembers of a turn even while its content is only on disk."""

    turn_id: str
    document_id: str
    seq: int
    on_done: OnDone | None = None


@dataclass(eq=False)
class _Entry:
    turn: Turn
    ref: _Ref


@dataclass(eq=False)
class _Batch:
    """One request's worth of turns. Its composition, hence its operation id, never changes once formed."""

    operation_id: str
    base_url: str
    bank_id: str
    key_id: str | None
    connection: Connection | None
    refs: list[_Ref]
    turns: list[Turn] | None
    name: str
    order: int
    ready_at: float
    persisted: bool = False
    spill: bool = False
    attempts: int = 0
    resolved: bool = False

    @property
    def lane(self) -> _LaneKey:
        return (self.base_url, self.bank_id)

    def to_json(self) -> bytes:
        assert self.turns is not None
        return json.dumps(
            {
                "format": _FILE_FORMAT,
                "operation_id": self.operation_id,
                "base_url": self.base_url,
                "bank_id": self.bank_id,
                "key_id": self.key_id,
                "turns": [t.to_dict() for t in self.turns],
            },
            ensure_ascii=False,
        ).encode("utf-8")


def _operation_id(base_url: str, bank_id: str, turn_ids: Iterable[str]) -> str:
    """Deterministic per batch composition: same turns, same id (a retry); other turns, another id."""
    return str(uuid.uuid5(_OPERATION_NAMESPACE, "\n".join([base_url, bank_id, *turn_ids])))


def _signature(turn: Turn) -> tuple[Any, ...]:
    metadata = tuple(sorted(turn.metadata.items())) if turn.metadata is not None else None
    return (turn.context, turn.tags, metadata)


def _retain_items(turns: list[Turn]) -> list[RetainItem]:
    """One append item per document, its turns' texts joined in order (the server's own append separator)."""
    by_document: dict[str, list[Turn]] = {}
    for turn in turns:
        by_document.setdefault(turn.document_id, []).append(turn)
    items = []
    for document_id, group in by_document.items():
        first = group[0]
        items.append(
            RetainItem(
                content="\n".join(t.content for t in group),
                context=first.context,
                timestamp=first.timestamp,
                document_id=document_id,
                metadata=dict(first.metadata) if first.metadata is not None else None,
                tags=list(first.tags) if first.tags is not None else None,
                update_mode="append",
            )
        )
    return items


class _Outcome:
    STORED = "stored"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


# ----------------------------------------------------------------------------------------------- worker


class StorageWorker:
    """Stores :class:`Turn` objects in the background: bounded, ordered, retried, never silently lost.

    The constructor only validates its arguments: no thread and no I/O until the first :meth:`submit`
    (or :meth:`start`). One thread sends every turn; it holds no per-user state, each turn carries its
    own connection and bank.

    ``max_queue`` bounds the turns held in memory. ``max_batch`` bounds the turns per request.
    ``outbox_dir`` enables the on-disk outbox (see ``docs/storage.md``); :meth:`from_env` reads it from
    ``HINDSIGHT_OUTBOX_DIR``. ``connections`` are the connections (with their API keys) to use for turns
    the outbox holds from an earlier run; connections of submitted turns are remembered as well.
    ``client_for`` returns the client for a connection (default: the shared pooled client). Retries of
    transient failures wait ``retry_initial`` seconds, doubling up to ``retry_max``, less up to
    ``retry_jitter`` of it. At most one WARNING per ``warn_interval`` seconds while retrying.
    ``exit_timeout`` bounds the flush at interpreter exit. ``max_failures`` bounds the failure list.
    """

    def __init__(
        self,
        *,
        max_queue: int = 10_000,
        max_batch: int = 100,
        outbox_dir: str | os.PathLike[str] | None = None,
        connections: Iterable[Connection] = (),
        client_for: Callable[[Connection], HindsightClient] = sync_client,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        retry_jitter: float = 0.25,
        warn_interval: float = 30.0,
        exit_timeout: float = 10.0,
        max_failures: int = 1000,
        name: str = "hindsight-storage",
    ) -> None:
        for option, value in (
            ("max_queue", max_queue),
            ("max_batch", max_batch),
            ("max_failures", max_failures),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{option} must be an integer >= 1, got {value!r}")
        for option, number in (
            ("retry_initial", retry_initial),
            ("retry_max", retry_max),
            ("warn_interval", warn_interval),
            ("exit_timeout", exit_timeout),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise ConfigurationError(f"{option} must be a number of seconds >= 0, got {number!r}")
        if not 0.0 <= retry_jitter <= 1.0:
            raise ConfigurationError(f"retry_jitter must be between 0 and 1, got {retry_jitter!r}")
        if not callable(client_for):
            raise ConfigurationError("client_for must be a callable returning a HindsightClient")
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._outbox: Path | None = Path(outbox_dir).expanduser() if outbox_dir is not None else None
        self._client_for = client_for
        self._retry_initial = float(retry_initial)
        self._retry_max = float(retry_max)
        self._retry_jitter = float(retry_jitter)
        self._warn_interval = float(warn_interval)
        self._exit_timeout = float(exit_timeout)
        self._name = name

        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._atexit_registered = False
        self._connections: dict[tuple[str, str | None], Connection] = {}
        self._orphans: dict[tuple[str, str | None], list[Path]] = {}
        self._adopt: list[Path] = []
        for connection in connections:
            self._register_locked(connection)

        self._inbox: deque[_Entry] = deque()
        self._lanes: dict[_LaneKey, deque[_Batch]] = {}
        self._ready: list[tuple[float, int, int, _Batch]] = []
        self._ticks = itertools.count()
        self._held = 0  # turns of batches whose content is in memory
        self._unloaded_turns = 0  # turns of batches whose content is only on disk
        self._order = 0

        self._seq = 0
        self._open: set[int] = set()
        self._open_order: deque[int] = deque()
        self._waiters: deque[tuple[int, concurrent.futures.Future[bool]]] = deque()

        self._failures: deque[StorageFailure] = deque(maxlen=max_failures)
        self._transient: dict[str, list[StorageFailure]] = {}
        self._submitted = 0
        self._stored = 0
        self._failed = 0
        self._deferred = 0
        self._recovered = 0
        self._requests = 0
        self._retries = 0
        self._last_warning = -float("inf")
        self._failing_since: float | None = None
        _live_workers.add(self)

    # --------------------------------------------------------------------------------------- construction

    @classmethod
    def from_env(cls, **options: Any) -> StorageWorker:
        """A worker whose outbox is ``HINDSIGHT_OUTBOX_DIR`` (if set and ``outbox_dir`` is not given)."""
        if "outbox_dir" not in options:
            options["outbox_dir"] = os.environ.get(OUTBOX_DIR_ENV) or None
        return cls(**options)

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"StorageWorker({state}, outbox_dir={str(self._outbox) if self._outbox else None!r})"

    @property
    def outbox_dir(self) -> Path | None:
        """The outbox directory, or None (also if it turned out unusable)."""
        return self._outbox

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def register_connection(self, connection: Connection) -> None:
        """Make ``connection`` (with its key) available for outbox turns recorded for its URL and key."""
        with self._cv:
            self._register_locked(connection)
            self._cv.notify_all()

    def _register_locked(self, connection: Connection) -> None:
        slot = (_norm_url(connection.base_url), _key_id(connection))
        self._connections[slot] = connection
        orphans = self._orphans.pop(slot, None)
        if orphans:
            self._adopt.extend(orphans)

    # ---------------------------------------------------------------------------------------- hot path

    def submit(self, turn: Turn, on_done: OnDone | None = None) -> None:
        """Hand ``turn`` to the worker. O(1), no I/O, never blocks, never raises for operational reasons.

        If the memory queue is full, the turn is written to the outbox by the worker thread (if there is
        one), otherwise it is recorded as a failure (ERROR log, :meth:`pending_errors`). ``on_done`` is
        called once with the turn's :class:`StorageResult`: from the worker thread, or at once from this
        thread when the turn is refused here. Exceptions in it are logged and ignored. After :meth:`close`,
        submitting starts the worker again.
        """
        if not isinstance(turn, Turn):
            raise TypeError(f"submit() takes a Turn, got {type(turn).__name__}")
        refused: str | None = None
        with self._cv:
            self._submitted += 1
            self._seq += 1
            ref = _Ref(turn.turn_id, turn.document_id, self._seq, on_done)
            slot = (_norm_url(turn.connection.base_url), _key_id(turn.connection))
            if self._connections.get(slot) != turn.connection:
                self._register_locked(turn.connection)
            if len(self._inbox) + self._held < self._max_queue or (
                self._outbox is not None and len(self._inbox) < self._max_queue
            ):
                try:
                    self._ensure_started_locked()
                except RuntimeError as exc:  # "can't create new thread at interpreter shutdown"
                    refused = f"the storage thread cannot start ({exc}); turn not stored"
                else:
                    self._inbox.append(_Entry(turn, ref))
                    self._open.add(ref.seq)
                    self._open_order.append(ref.seq)
                    self._cv.notify_all()
            else:
                refused = f"storage queue full ({self._max_queue} turns waiting); turn not stored" + (
                    "" if self._outbox is not None else " (set HINDSIGHT_OUTBOX_DIR to keep overflow on disk)"
                )
            if refused is not None:
                self._failed += 1
                self._failures.append(
                    StorageFailure(
                        (turn.turn_id,),
                        turn.bank_id,
                        turn.document_id,
                        refused,
                        True,
                        _utcnow(),
                        _norm_url(turn.connection.base_url),
                        attempts=0,
                    )
                )
        if refused is not None:
            logger.error(
                "Hindsight storage: %s: bank %r, document %r, turn %s",
                refused,
                turn.bank_id,
                turn.document_id,
                turn.turn_id,
            )
            self._notify([(ref, StorageResult(turn.turn_id, "failed", refused))])

    def start(self) -> None:
        """Start the worker thread now (e.g. to send what an earlier run left in the outbox right away)."""
        with self._cv:
            self._ensure_started_locked()

    def _ensure_started_locked(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        generation = self._generation + 1
        thread = threading.Thread(target=self._main, args=(generation,), name=self._name, daemon=True)
        thread.start()  # raises RuntimeError at interpreter shutdown; nothing changed then
        self._generation = generation
        self._thread = thread
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def _after_fork_in_child(self) -> None:
        """A forked child starts empty: the parent still owns (and sends) what was queued at the fork."""
        self._cv = threading.Condition(threading.Lock())
        self._thread = None
        self._generation += 1
        self._inbox.clear()
        self._lanes.clear()
        self._ready.clear()
        self._held = self._unloaded_turns = 0
        self._open.clear()
        self._open_order.clear()
        self._waiters.clear()
        self._transient.clear()
        self._adopt.clear()
        self._orphans.clear()

    # ------------------------------------------------------------------------------------------- waiting

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every turn submitted before this call is stored or given up on.

        Returns True when that is so, False if ``timeout`` seconds passed first (the turns are still being
        retried). A turn kept in the outbox by :meth:`close` counts as done. Must not be called from the
        worker thread (an ``on_done`` callback): it would wait for itself.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush() cannot be called from the storage worker thread (e.g. in on_done)")
        future = self._flush_future()
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._drop_waiter(future)
            return False

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio: waits without blocking the event loop (the worker sets a future)."""
        future = self._flush_future()
        if future.done():
            return True
        waiting = asyncio.wrap_future(future)
        try:
            if timeout is None:
                await waiting
            else:
                await asyncio.wait_for(waiting, timeout)
        except asyncio.TimeoutError:
            self._drop_waiter(future)
            return False
        return True

    def _flush_future(self) -> concurrent.futures.Future[bool]:
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        with self._cv:
            target = self._seq
            if self._low_watermark_locked() > target:
                future.set_result(True)
            else:
                self._waiters.append((target, future))
        return future

    def _drop_waiter(self, future: concurrent.futures.Future[bool]) -> None:
        with self._cv:
            self._waiters = deque(w for w in self._waiters if w[1] is not future)

    def _low_watermark_locked(self) -> float:
        while self._open_order and self._open_order[0] not in self._open:
            self._open_order.popleft()
        return self._open_order[0] if self._open_order else float("inf")

    def _close_seqs_locked(self, refs: Iterable[_Ref]) -> None:
        for ref in refs:
            self._open.discard(ref.seq)
        low = self._low_watermark_locked()
        while self._waiters and self._waiters[0][0] < low:
            _, future = self._waiters.popleft()
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_result(True)

    # ------------------------------------------------------------------------------------------ reporting

    def pending_errors(self) -> list[StorageFailure]:
        """Failures given up on (until :meth:`clear_errors`), then errors of turns still being retried."""
        with self._cv:
            retrying = [f for group in self._transient.values() for f in group]
            return [*self._failures, *retrying]

    def clear_errors(self) -> None:
        """Forget the recorded failures (an error of a turn still retrying is recorded again if it recurs)."""
        with self._cv:
            self._failures.clear()
            self._transient.clear()

    def stats(self) -> StorageStats:
        """A snapshot of the counters."""
        with self._cv:
            pending = len(self._inbox) + self._held + self._unloaded_turns
            return StorageStats(
                submitted=self._submitted,
                stored=self._stored,
                failed=self._failed,
                deferred=self._deferred,
                pending=pending,
                on_disk=self._unloaded_turns,
                recovered=self._recovered,
                requests=self._requests,
                retries=self._retries,
            )

    # -------------------------------------------------------------------------------------------- stopping

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds (default ``exit_timeout``), then stop the worker thread.

        Turns still unsent are kept in the outbox (status ``deferred``) or, without one, reported as failed
        (ERROR log). Returns True if nothing was left over. A later :meth:`submit` starts the worker again.
        """
        budget = self._exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        done = True
        if self._thread is not None:
            done = self.flush(budget)
        leftovers = self._shutdown("the storage worker was closed", max(0.0, deadline - time.monotonic()))
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        return done and not leftovers

    def _at_exit(self) -> None:
        """The interpreter-exit handler: retry now, flush for ``exit_timeout``, then account for the rest."""
        with self._cv:
            if self._thread is None and not self._inbox and not self._lanes:
                return
            if self._thread is None:
                # It crashed: give the flush a chance. Late in shutdown no thread can start; then the
                # turns are accounted for below without a flush.
                with contextlib.suppress(RuntimeError):
                    self._ensure_started_locked()
            now = time.monotonic()
            for lane in self._lanes.values():
                head = lane[0]
                if head.ready_at > now:
                    head.ready_at = now
                    self._push_locked(head)
            self._cv.notify_all()
        if self._thread is not None:
            self.flush(self._exit_timeout)
        self._shutdown("the process exited", 0.0)

    def _shutdown(self, reason: str, join_timeout: float) -> int:
        """Stop the thread; keep unsent turns in the outbox or report them. Returns how many were left."""
        with self._cv:
            thread = self._thread
            self._thread = None
            self._generation += 1
            entries = list(self._inbox)
            self._inbox.clear()
            batches = [b for lane in self._lanes.values() for b in lane]
            batches.extend(self._form_batches_locked(entries, spill=False))
            self._lanes.clear()
            self._ready.clear()
            self._held = 0
            self._unloaded_turns = 0
            self._transient.clear()
            for batch in batches:
                batch.resolved = True
            self._cv.notify_all()
        if not batches:
            if thread is not None and thread is not threading.current_thread():
                thread.join(join_timeout)
            return 0
        if any(not b.persisted for b in batches):
            self._ensure_outbox()
        kept: list[_Batch] = []
        lost: list[_Batch] = []
        for batch in batches:
            if self._outbox is not None and (batch.persisted or self._write_batch(batch)):
                kept.append(batch)
            else:
                lost.append(batch)
        notices: list[tuple[_Ref, StorageResult]] = []
        with self._cv:
            for batch in kept:
                self._deferred += len(batch.refs)
                notices.extend((r, StorageResult(r.turn_id, "deferred")) for r in batch.refs)
            message = f"not stored: {reason} before the server acknowledged it"
            for batch in lost:
                self._failed += len(batch.refs)
                self._record_failure_locked(batch, message, permanent=True, status_code=None)
                notices.extend((r, StorageResult(r.turn_id, "failed", message)) for r in batch.refs)
        if kept:
            logger.warning(
                "Hindsight storage: %s with %d turns unsent; they are kept in the outbox %s and will be sent "
                "by the next worker started on it",
                reason,
                sum(len(b.refs) for b in kept),
                self._outbox,
            )
        if lost:
            logger.error(
                "Hindsight storage: %s with %d turns unsent and no outbox; they are lost: %s "
                "(set HINDSIGHT_OUTBOX_DIR to keep them on disk)",
                reason,
                sum(len(b.refs) for b in lost),
                _describe(lost),
            )
        self._complete(notices)
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)
        return len(kept) + len(lost)

    # -------------------------------------------------------------------------------------- worker thread

    def _main(self, generation: int) -> None:
        try:
            self._recover(generation)
            while self._step(generation):
                pass
        except Exception:
            logger.critical(
                "Hindsight storage worker crashed; it restarts on the next submit and keeps what it held",
                exc_info=True,
            )
        finally:
            with self._cv:
                if self._generation == generation:
                    self._thread = None

    def _step(self, generation: int) -> bool:
        adopt: list[Path] = []
        fresh: list[_Batch] = []
        batch: _Batch | None = None
        with self._cv:
            while True:
                if self._generation != generation:
                    return False
                if self._adopt:
                    adopt, self._adopt = self._adopt, []
                    break
                if self._inbox:
                    entries = list(self._inbox)
                    self._inbox.clear()
                    spill = self._outbox is not None and self._held + len(entries) > self._max_queue
                    fresh = self._form_batches_locked(entries, spill=spill)
                    break
                batch, wait = self._pick_locked(time.monotonic())
                if batch is not None:
                    break
                self._cv.wait(wait)
        if adopt:
            self._load_files(adopt, generation)
        elif fresh:
            self._persist_fresh(fresh)
        elif batch is not None:
            self._send(batch)
        return True

    # -- queues

    def _form_batches_locked(self, entries: list[_Entry], *, spill: bool) -> list[_Batch]:
        """Group entries by (connection, bank) in order, at most ``max_batch`` each, merge-compatible."""
        open_batches: dict[tuple[Connection, str], tuple[list[_Entry], dict[str, tuple[Any, ...]]]] = {}
        groups: list[list[_Entry]] = []
        for entry in entries:
            turn = entry.turn
            key = (turn.connection, turn.bank_id)
            current = open_batches.get(key)
            signature = _signature(turn)
            if current is not None:
                members, documents = current
                known = documents.get(turn.document_id)
                if len(members) >= self._max_batch or (known is not None and known != signature):
                    current = None
            if current is None:
                current = ([], {})
                open_batches[key] = current
                groups.append(current[0])
            current[0].append(entry)
            current[1].setdefault(turn.document_id, signature)
        now = time.monotonic()
        batches = []
        for group in groups:
            first = group[0].turn
            base_url = _norm_url(first.connection.base_url)
            turns = [e.turn for e in group]
            batch = _Batch(
                operation_id=_operation_id(base_url, first.bank_id, (t.turn_id for t in turns)),
                base_url=base_url,
                bank_id=first.bank_id,
                key_id=_key_id(first.connection),
                connection=first.connection,
                refs=[e.ref for e in group],
                turns=turns,
                name=self._new_name_locked(),
                order=self._next_order_locked(),
                ready_at=now,
                spill=spill,
            )
            self._held += len(turns)
            self._enqueue_locked(batch)
            batches.append(batch)
        return batches

    @staticmethod
    def _new_name_locked() -> str:
        # Sorts by creation time across runs; the process-wide counter keeps names unique within one.
        return f"{time.time_ns():020d}-{os.getpid():07d}-{next(_file_names):08d}"

    def _next_order_locked(self) -> int:
        self._order += 1
        return self._order

    def _enqueue_locked(self, batch: _Batch) -> None:
        lane = self._lanes.get(batch.lane)
        if lane is None:
            lane = self._lanes[batch.lane] = deque()
        lane.append(batch)
        if len(lane) == 1:
            self._push_locked(batch)

    def _push_locked(self, batch: _Batch) -> None:
        heapq.heappush(self._ready, (batch.ready_at, batch.order, next(self._ticks), batch))

    def _pick_locked(self, now: float) -> tuple[_Batch | None, float | None]:
        """The oldest ready head of a lane (a lane = one server and bank, sent strictly in order)."""
        while self._ready:
            ready_at, _, _, batch = self._ready[0]
            lane = self._lanes.get(batch.lane)
            if batch.resolved or lane is None or lane[0] is not batch or ready_at != batch.ready_at:
                heapq.heappop(self._ready)  # stale entry
                continue
            if ready_at <= now:
                heapq.heappop(self._ready)
                return batch, None
            return None, ready_at - now
        return None, None

    def _finish_locked(self, batch: _Batch) -> None:
        """Take the resolved head ``batch`` out of its lane and schedule the next one."""
        batch.resolved = True
        lane = self._lanes.get(batch.lane)
        if lane is not None and lane and lane[0] is batch:
            lane.popleft()
            if lane:
                lane[0].ready_at = min(lane[0].ready_at, time.monotonic())
                self._push_locked(lane[0])
            else:
                del self._lanes[batch.lane]
        if batch.turns is not None:
            self._held -= len(batch.refs)
        else:
            self._unloaded_turns -= len(batch.refs)
        self._transient.pop(batch.operation_id, None)

    # -- outbox files

    def _path(self, batch: _Batch) -> Path:
        assert self._outbox is not None
        return self._outbox / f"{batch.name}.json"

    def _ensure_outbox(self) -> bool:
        outbox = self._outbox
        if outbox is None:
            return False
        try:
            outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            logger.error(
                "Hindsight storage: the outbox directory %s cannot be used (%s); turns stay in memory only",
                outbox,
                exc,
            )
            self._outbox = None
            return False
        return True

    def _write_batch(self, batch: _Batch) -> bool:
        """Write the batch file atomically (temp file + rename). False (and an ERROR) if it cannot be."""
        if self._outbox is None or batch.turns is None:
            return batch.persisted
        path = self._path(batch)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(batch.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            logger.error(
                "Hindsight storage: could not write %d turns to the outbox (%s: %s); they stay in memory",
                len(batch.refs),
                path,
                exc,
            )
            return False
        batch.persisted = True
        return True

    def _remove_file(self, batch: _Batch) -> None:
        if self._outbox is None or not batch.persisted:
            return
        try:
            self._path(batch).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error(
                "Hindsight storage: could not remove %s (%s); the next run will send it again, "
                "which the server recognises by its operation id",
                self._path(batch),
                exc,
            )

    def _persist_fresh(self, batches: list[_Batch]) -> None:
        """Write newly formed batches before their first send; spilled ones then leave memory."""
        if not self._ensure_outbox():
            return
        for batch in batches:
            if batch.resolved or not self._write_batch(batch):
                continue
            with self._cv:
                if batch.spill and not batch.resolved and batch.turns is not None:
                    batch.turns = None
                    self._held -= len(batch.refs)
                    self._unloaded_turns += len(batch.refs)

    def _recover(self, generation: int) -> None:
        """At start: queue the batches an earlier run left in the outbox, oldest first."""
        if not self._ensure_outbox():
            return
        assert self._outbox is not None
        now = time.time()
        paths = []
        try:
            for path in self._outbox.iterdir():
                if path.suffix == ".tmp" and path.name.startswith("."):
                    with contextlib.suppress(OSError):
                        if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                            path.unlink()
                elif path.suffix == ".json" and not path.name.startswith("."):
                    paths.append(path)
        except OSError as exc:
            logger.error("Hindsight storage: cannot read the outbox %s: %s", self._outbox, exc)
            return
        self._load_files(sorted(paths), generation, recovering=True)

    def _load_files(self, paths: list[Path], generation: int, *, recovering: bool = False) -> None:
        loaded: list[_Batch] = []
        for path in paths:
            batch = self._read_batch_file(path)
            if batch is None:
                continue
            if batch.connection is None:
                with self._cv:
                    self._orphans.setdefault((batch.base_url, batch.key_id), []).append(path)
                logger.error(
                    "Hindsight storage: outbox file %s holds %d turns for %s (bank %r) submitted with an "
                    "API key this process does not know; it is left in place until a Connection with that "
                    "URL and key is registered (StorageWorker(connections=...) or register_connection())",
                    path,
                    len(batch.refs),
                    batch.base_url,
                    batch.bank_id,
                )
                continue
            batch.turns = None  # loaded again when it is sent, so recovery does not fill memory
            loaded.append(batch)
        with self._cv:
            if self._generation != generation:
                return
            known = {b.name for lane in self._lanes.values() for b in lane}
            for batch in loaded:
                if batch.name in known:
                    continue
                batch.order = self._next_order_locked()
                batch.ready_at = 0.0 if recovering else time.monotonic()
                for ref in batch.refs:
                    self._seq += 1
                    ref.seq = self._seq
                    self._open.add(ref.seq)
                    self._open_order.append(ref.seq)
                self._unloaded_turns += len(batch.refs)
                self._recovered += len(batch.refs)
                self._enqueue_locked(batch)
            self._cv.notify_all()
        if loaded:
            logger.info(
                "Hindsight storage: %d turns left in the outbox %s by an earlier run are being sent",
                sum(len(b.refs) for b in loaded),
                self._outbox,
            )

    def _read_batch_file(self, path: Path, connection: Connection | None = None) -> _Batch | None:
        """Parse an outbox file; a file that cannot be read is moved aside (``.corrupt``) and reported."""
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != _FILE_FORMAT:
                raise ValueError(f"not a {_FILE_FORMAT} file")
            base_url = _norm_url(str(data["base_url"]))
            key_id = data.get("key_id")
            if key_id is not None and not isinstance(key_id, str):
                raise ValueError("bad key_id")
            if connection is None:
                connection = self._resolve_connection(base_url, key_id)
            raw_turns = data["turns"]
            if not isinstance(raw_turns, list) or not raw_turns:
                raise ValueError("no turns")
            probe = connection or Connection(base_url=base_url)
            turns = [Turn.from_dict(t, probe) for t in raw_turns]
            return _Batch(
                operation_id=str(data["operation_id"]),
                base_url=base_url,
                bank_id=str(data["bank_id"]),
                key_id=key_id,
                connection=connection,
                refs=[_Ref(t.turn_id, t.document_id, 0) for t in turns],
                turns=turns if connection is not None else None,
                name=path.stem,
                order=0,
                ready_at=0.0,
                persisted=True,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            quarantine = path.with_name(path.name + ".corrupt")
            with contextlib.suppress(OSError):
                path.rename(quarantine)
            logger.error(
                "Hindsight storage: outbox file %s cannot be read (%s: %s); moved to %s",
                path,
                type(exc).__name__,
                exc,
                quarantine.name,
            )
            return None

    def _resolve_connection(self, base_url: str, key_id: str | None) -> Connection | None:
        with self._cv:
            known = self._connections.get((base_url, key_id))
        if known is not None:
            return known
        env = Connection.from_env()
        if _norm_url(env.base_url) == base_url and _key_id(env) == key_id:
            return env
        if key_id is None:
            return Connection(base_url=base_url)
        return None

    def _load(self, batch: _Batch) -> bool:
        """Bring an on-disk batch's turns back into memory before it is sent."""
        if batch.turns is not None:
            return True
        fresh = None
        if self._outbox is not None:
            fresh = self._read_batch_file(self._path(batch), batch.connection)
        with self._cv:
            if fresh is None or fresh.turns is None:
                if not batch.resolved:
                    self._finish_locked(batch)
                    self._failed += len(batch.refs)
                    self._record_failure_locked(
                        batch, "the outbox file could not be read back", permanent=True, status_code=None
                    )
                    notices = [
                        (r, StorageResult(r.turn_id, "failed", "the outbox file could not be read back"))
                        for r in batch.refs
                    ]
                else:
                    notices = []
            else:
                if not batch.resolved:
                    batch.turns = fresh.turns
                    self._unloaded_turns -= len(batch.refs)
                    self._held += len(batch.refs)
                notices = []
        self._complete(notices)
        return fresh is not None and batch.turns is not None

    def _dead_letter(self, batch: _Batch, error: str) -> None:
        if self._outbox is None or batch.turns is None:
            return
        when = _utcnow().isoformat()
        lines = "".join(
            json.dumps(
                {"failed_at": when, "error": error, "operation_id": batch.operation_id, "turn": t.to_dict()},
                ensure_ascii=False,
            )
            + "\n"
            for t in batch.turns
        )
        path = self._outbox / _DEAD_LETTER
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(lines.encode("utf-8"))
        except OSError as exc:
            logger.error("Hindsight storage: could not write the dead-letter file %s: %s", path, exc)

    # -- sending

    def _send(self, batch: _Batch) -> None:
        if not self._load(batch):
            return
        assert batch.turns is not None
        assert batch.connection is not None
        connection = batch.connection
        if self._outbox is not None and not batch.persisted:
            self._write_batch(batch)  # normally done at intake; retried if that write failed
        status_code: int | None = None
        try:
            client = self._client_for(connection)
            client.retain_batch(
                batch.bank_id, _retain_items(batch.turns), async_=True, operation_id=batch.operation_id
            )
            outcome, error = _Outcome.STORED, ""
        except APIResponseValidationError as exc:
            # A 2xx answer we cannot read: the server accepted the request.
            logger.warning(
                "Hindsight storage: %s; treating the turns as stored", _scrub(str(exc), connection)
            )
            outcome, error = _Outcome.STORED, ""
        except APIConnectionError as exc:
            outcome, error = _Outcome.TRANSIENT, str(exc)
        except APIStatusError as exc:
            status_code = exc.status_code
            transient = status_code in _TRANSIENT_STATUS or status_code >= 500
            outcome, error = (_Outcome.TRANSIENT if transient else _Outcome.PERMANENT), str(exc)
        except Exception as exc:
            outcome, error = _Outcome.PERMANENT, f"{type(exc).__name__}: {exc}"
        error = _scrub(error, connection) or "unknown error"

        if outcome == _Outcome.STORED:
            self._on_stored(batch)
        elif outcome == _Outcome.TRANSIENT:
            self._on_transient(batch, error, status_code)
        elif len(batch.refs) > 1 and status_code in _SPLITTABLE_STATUS:
            self._split(batch, error)
        else:
            self._on_permanent(batch, error, status_code)

    def _on_stored(self, batch: _Batch) -> None:
        self._remove_file(batch)
        with self._cv:
            self._requests += 1
            if batch.resolved:  # closed meanwhile; it was reported as deferred or failed
                logger.info(
                    "Hindsight storage: %d turns were acknowledged after the worker was closed",
                    len(batch.refs),
                )
                return
            self._finish_locked(batch)
            self._stored += len(batch.refs)
            recovered = self._failing_since is not None and not self._transient
            if recovered:
                self._failing_since = None
        if recovered:
            logger.info("Hindsight storage: the server answers again; waiting turns are being stored")
        self._complete([(r, StorageResult(r.turn_id, "stored")) for r in batch.refs])

    def _on_transient(self, batch: _Batch, error: str, status_code: int | None) -> None:
        with self._cv:
            self._requests += 1
            if batch.resolved:
                return
            batch.attempts += 1
            self._retries += 1
            delay = self._backoff(batch.attempts)
            batch.ready_at = time.monotonic() + delay
            self._push_locked(batch)
            self._transient[batch.operation_id] = self._failures_for(
                batch, error, permanent=False, status_code=status_code
            )
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            warn = now - self._last_warning >= self._warn_interval
            if warn:
                self._last_warning = now
            waiting = len(self._inbox) + self._held + self._unloaded_turns
        if warn:
            logger.warning(
                "Hindsight storage is retrying (%s); %d turns are waiting and will be sent in order when the "
                "server answers (next attempt in %.1f s, %s)",
                error,
                waiting,
                delay,
                f"kept in the outbox {self._outbox}" if self._outbox is not None else "kept in memory only",
            )

    def _on_permanent(self, batch: _Batch, error: str, status_code: int | None) -> None:
        with self._cv:
            self._requests += 1
            if batch.resolved:  # closed meanwhile and kept in the outbox (or reported): leave it so
                return
            self._finish_locked(batch)
            self._failed += len(batch.refs)
            self._record_failure_locked(batch, error, permanent=True, status_code=status_code)
        # Dead-letter first, then remove: a crash in between re-sends the file, never loses it.
        self._dead_letter(batch, error)
        self._remove_file(batch)
        logger.error(
            "Hindsight storage: the server rejected %d turns, which will not be retried (%s): %s%s",
            len(batch.refs),
            error,
            _describe([batch]),
            f"; kept in {self._outbox / _DEAD_LETTER}" if self._outbox is not None else "",
        )
        self._complete([(r, StorageResult(r.turn_id, "failed", error)) for r in batch.refs])

    def _split(self, batch: _Batch, error: str) -> None:
        """A multi-turn request was rejected as a whole: retry turn by turn to isolate the bad one(s)."""
        assert batch.turns is not None
        assert batch.connection is not None
        with self._cv:
            if batch.resolved:
                self._requests += 1
                return
        logger.warning(
            "Hindsight storage: a request of %d turns was rejected (%s); sending them one by one",
            len(batch.refs),
            error,
        )
        now = time.monotonic()
        children = [
            _Batch(
                operation_id=_operation_id(batch.base_url, batch.bank_id, [turn.turn_id]),
                base_url=batch.base_url,
                bank_id=batch.bank_id,
                key_id=batch.key_id,
                connection=batch.connection,
                refs=[ref],
                turns=[turn],
                name=f"{batch.name}.{index:04d}",
                order=batch.order,
                ready_at=now,
            )
            for index, (ref, turn) in enumerate(zip(batch.refs, batch.turns, strict=True))
        ]
        for child in children:
            with self._cv:
                child.order = self._next_order_locked()
        if self._outbox is not None:
            for child in children:
                self._write_batch(child)
        self._remove_file(batch)
        with self._cv:
            self._requests += 1
            lane = self._lanes.get(batch.lane)
            # Closed meanwhile (``resolved``): the children's files hold the turns for the next run.
            if batch.resolved or lane is None or not lane or lane[0] is not batch:
                return
            lane.popleft()
            lane.extendleft(reversed(children))
            self._transient.pop(batch.operation_id, None)
            self._push_locked(children[0])

    def _backoff(self, attempt: int) -> float:
        delay = min(self._retry_max, self._retry_initial * 2.0 ** (attempt - 1))
        return delay * (1.0 - self._retry_jitter * random.random())

    # -- bookkeeping

    def _failures_for(
        self, batch: _Batch, error: str, *, permanent: bool, status_code: int | None
    ) -> list[StorageFailure]:
        by_document: dict[str, list[str]] = {}
        for ref in batch.refs:
            by_document.setdefault(ref.document_id, []).append(ref.turn_id)
        when = _utcnow()
        return [
            StorageFailure(
                tuple(turn_ids),
                batch.bank_id,
                document_id,
                error,
                permanent,
                when,
                batch.base_url,
                status_code,
                max(1, batch.attempts + (1 if permanent else 0)),
            )
            for document_id, turn_ids in by_document.items()
        ]

    def _record_failure_locked(
        self, batch: _Batch, error: str, *, permanent: bool, status_code: int | None
    ) -> None:
        self._transient.pop(batch.operation_id, None)
        self._failures.extend(self._failures_for(batch, error, permanent=permanent, status_code=status_code))

    def _complete(self, notices: list[tuple[_Ref, StorageResult]]) -> None:
        """Run the callbacks, then release flush waiters: a flush returns after its turns' callbacks ran."""
        if not notices:
            return
        self._notify(notices)
        with self._cv:
            self._close_seqs_locked(ref for ref, _ in notices)

    @staticmethod
    def _notify(notices: list[tuple[_Ref, StorageResult]]) -> None:
        for ref, result in notices:
            if ref.on_done is None:
                continue
            try:
                ref.on_done(result)
            except Exception:
                logger.exception("Hindsight storage: an on_done callback raised (ignored)")


def _describe(batches: list[_Batch]) -> str:
    """``bank 'b' documents ['d1', 'd2']; ...``: what a lost or rejected set of turns belonged to."""
    documents: dict[str, dict[str, None]] = {}
    for batch in batches:
        slot = documents.setdefault(batch.bank_id, {})
        for ref in batch.refs:
            slot.setdefault(ref.document_id, None)
    return "; ".join(f"bank {bank!r} documents {list(docs)}" for bank, docs in documents.items())


# -------------------------------------------------------------------------------------- process default


_default: StorageWorker | None = None
_default_lock = threading.Lock()


def default_worker() -> StorageWorker:
    """The process-wide worker (created on first use, thread-safe; outbox from ``HINDSIGHT_OUTBOX_DIR``)."""
    global _default  # noqa: PLW0603 - the process-wide instance, created once under a lock
    worker = _default
    if worker is None:
        with _default_lock:
            if _default is None:
                _default = StorageWorker.from_env()
            worker = _default
    return worker
