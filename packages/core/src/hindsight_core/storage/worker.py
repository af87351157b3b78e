""":class:`StorageWorker`: the public face of storage, and the one thread that does the work.

``submit()`` takes a turn in O(1) without I/O; the worker thread forms batches (:mod:`.batching`), writes
them to the outbox before their first send and reads back spilled or recovered ones (:mod:`.spool`), and
sends the ready head of each lane (:mod:`.sender`). Results, failures and flush waiters are in the ledger
(:mod:`.ledger`).

Threads
    The worker thread is a daemon thread plus an :mod:`atexit` handler. A non-daemon thread would be joined
    by the interpreter *before* atexit handlers run, so a server outage would hang the process at exit
    forever; instead, the exit handler flushes with a bounded wait (``exit_timeout``) and then accounts for
    every turn still unsent: kept in the outbox, or logged at ERROR and reported as failed. A forked child
    starts with an empty worker (the parent keeps sending what it had queued).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..client import HindsightClient
from ..connection import Connection, sync_client
from .batching import Batch, Entry
from .ledger import notify
from .outbox import OUTBOX_DIR_ENV, Outbox
from .sender import Backoff, Sender
from .spool import Spool
from .state import WorkerState, check_options
from .turns import OnDone, StorageFailure, StorageResult, StorageStats, Turn

__all__ = ["DEFAULT_LINGER", "StorageWorker", "default_worker"]

DEFAULT_LINGER = 0.05
"""Seconds a new turn waits for others before it is batched: nobody waits for storage (a flush or
``sync_storage`` ends the wait), and under load it turns many retain requests into one per bank."""

logger = logging.getLogger("hindsight_core.storage")

_live_workers: weakref.WeakSet[StorageWorker] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for worker in list(_live_workers):
        worker._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


class StorageWorker:
    """Stores :class:`Turn` objects in the background: bounded, ordered, retried, never silently lost.

    The constructor only validates its arguments: no thread and no I/O until the first :meth:`submit`
    (or :meth:`start`). One thread sends every turn; it holds no per-user state, each turn carries its
    own connection and bank.

    ``max_queue`` bounds the turns held in memory. ``max_batch`` bounds the turns per request.
    ``linger`` is how long a turn waits for others to arrive before batches are formed (at most; a full
    batch, a flush or shutdown forms them at once): under load many turns go out in few requests, and the
    thread wakes once per linger rather than once per turn. With an outbox shared by several processes,
    every ``adopt_interval`` seconds the worker takes over the files of processes that stopped.
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
        linger: float = DEFAULT_LINGER,
        adopt_interval: float = 5.0,
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
        check_options(
            {
                "max_queue": max_queue,
                "max_batch": max_batch,
                "max_failures": max_failures,
                "retry_initial": retry_initial,
                "retry_max": retry_max,
                "warn_interval": warn_interval,
                "exit_timeout": exit_timeout,
                "linger": linger,
                "adopt_interval": adopt_interval,
                "retry_jitter": retry_jitter,
                "client_for": client_for,
            }
        )
        self._exit_timeout = float(exit_timeout)
        self._name = name
        outbox = Outbox(Path(outbox_dir).expanduser()) if outbox_dir is not None else None
        self._state = WorkerState(
            max_queue=max_queue, max_batch=max_batch, max_failures=max_failures, outbox=outbox
        )
        self._state.linger = float(linger)
        self._state.adopt_interval = float(adopt_interval)
        self._spool = Spool(self._state)
        self._sender = Sender(
            self._state,
            self._spool,
            client_for,
            Backoff(float(retry_initial), float(retry_max), float(retry_jitter)),
            float(warn_interval),
        )
        self._thread: threading.Thread | None = None
        self._atexit_registered = False
        for connection in connections:
            self._state.connections.register(connection)
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
        outbox = self.outbox_dir
        return f"StorageWorker({state}, outbox_dir={str(outbox) if outbox else None!r})"

    @property
    def outbox_dir(self) -> Path | None:
        """The outbox directory, or None (also if it turned out unusable)."""
        outbox = self._state.outbox
        return outbox.directory if outbox is not None else None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def register_connection(self, connection: Connection) -> None:
        """Make ``connection`` (with its key) available for outbox turns recorded for its URL and key."""
        with self._state.cv:
            self._state.connections.register(connection)
            self._state.cv.notify_all()

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
        state = self._state
        refused: str | None = None
        with state.cv:
            ref = state.ledger.new_ref(turn, on_done)
            if not state.connections.knows(turn.connection):
                state.connections.register(turn.connection)
            if len(state.inbox) + state.lanes.held < state.max_queue or (
                state.outbox is not None and len(state.inbox) < state.max_queue
            ):
                try:
                    self._ensure_started_locked()
                except RuntimeError as exc:  # "can't create new thread at interpreter shutdown"
                    refused = f"the storage thread cannot start ({exc}); turn not stored"
                else:
                    state.inbox.append(Entry(turn, ref))
                    state.ledger.open(ref)
                    if len(state.inbox) == 1:
                        state.inbox_since = time.monotonic()
                        state.cv.notify_all()  # the worker starts the linger
                    elif len(state.inbox) >= state.max_batch:
                        state.cv.notify_all()  # a full batch goes at once
            else:
                refused = f"storage queue full ({state.max_queue} turns waiting); turn not stored" + (
                    "" if state.outbox is not None else " (set HINDSIGHT_OUTBOX_DIR to keep overflow on disk)"
                )
            if refused is not None:
                state.ledger.refuse(turn, refused)
        if refused is not None:
            logger.error(
                "Hindsight storage: %s: bank %r, document %r, turn %s",
                refused,
                turn.bank_id,
                turn.document_id,
                turn.turn_id,
            )
            notify([(ref, StorageResult(turn.turn_id, "failed", refused))])

    def start(self) -> None:
        """Start the worker thread now (e.g. to send what an earlier run left in the outbox right away)."""
        with self._state.cv:
            self._ensure_started_locked()

    def _ensure_started_locked(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        generation = self._state.generation + 1
        thread = threading.Thread(target=self._main, args=(generation,), name=self._name, daemon=True)
        thread.start()  # raises RuntimeError at interpreter shutdown; nothing changed then
        self._state.generation = generation
        self._thread = thread
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def _after_fork_in_child(self) -> None:
        """A forked child starts empty: the parent still owns (and sends) what was queued at the fork."""
        self._thread = None
        self._state.reset_after_fork()

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
        with self._state.cv:
            future = self._state.ledger.flush_future()
            if not future.done():
                self._state.cv.notify_all()  # a waiter ends the linger
            return future

    def _drop_waiter(self, future: concurrent.futures.Future[bool]) -> None:
        with self._state.cv:
            self._state.ledger.drop_waiter(future)

    # ------------------------------------------------------------------------------------------ reporting

    def pending_errors(self) -> list[StorageFailure]:
        """Failures given up on (until :meth:`clear_errors`), then errors of turns still being retried."""
        with self._state.cv:
            return self._state.ledger.pending_errors()

    def clear_errors(self) -> None:
        """Forget the recorded failures (an error of a turn still retrying is recorded again if it recurs)."""
        with self._state.cv:
            self._state.ledger.clear_errors()

    def stats(self) -> StorageStats:
        """A snapshot of the counters."""
        with self._state.cv:
            return self._state.ledger.stats(self._state.waiting(), self._state.lanes.on_disk)

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
        state = self._state
        with state.cv:
            if self._thread is None and not state.inbox and not state.lanes:
                return
            if self._thread is None:
                # It crashed: give the flush a chance. Late in shutdown no thread can start; then the
                # turns are accounted for below without a flush.
                with contextlib.suppress(RuntimeError):
                    self._ensure_started_locked()
            state.lanes.hurry(time.monotonic())
            state.cv.notify_all()
        if self._thread is not None:
            self.flush(self._exit_timeout)
        self._shutdown("the process exited", 0.0)

    def _shutdown(self, reason: str, join_timeout: float) -> int:
        """Stop the thread; keep unsent turns in the outbox or report them. Returns how many were left."""
        state = self._state
        with state.cv:
            thread = self._thread
            self._thread = None
            state.generation += 1
            entries = list(state.inbox)
            state.inbox.clear()
            batches = list(state.lanes)
            batches.extend(
                state.lanes.form(entries, max_batch=state.max_batch, now=time.monotonic(), spill=False)
            )
            state.lanes.clear()
            state.ledger.transient.clear()
            for batch in batches:
                batch.resolved = True
            state.cv.notify_all()
        left = self._spool.set_aside(batches, reason) if batches else 0
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)
        if state.outbox is not None:
            state.outbox.release()  # what is left may be taken over by another process
        return left

    # -------------------------------------------------------------------------------------- worker thread

    def _main(self, generation: int) -> None:
        try:
            self._spool.recover(generation)
            while self._step(generation):
                pass
        except Exception:
            logger.critical(
                "Hindsight storage worker crashed; it restarts on the next submit and keeps what it held",
                exc_info=True,
            )
        finally:
            with self._state.cv:
                if self._state.generation == generation:
                    self._thread = None

    def _step(self, generation: int) -> bool:
        """Wait for work, then do one thing: queue adopted files, persist new batches, or send one."""
        state = self._state
        cv = state.cv
        adopt: list[Path] = []
        fresh: list[Batch] = []
        batch: Batch | None = None
        scan = False
        with cv:
            while True:
                if state.generation != generation:
                    return False
                if state.connections.adopt:
                    adopt = state.connections.take_adopted()
                    break
                now = time.monotonic()
                if state.outbox is not None and now >= state.next_adoption:
                    state.next_adoption = now + state.adopt_interval
                    scan = True
                    break
                linger = state.lingering(now)
                if state.inbox and linger is None:
                    entries = list(state.inbox)
                    state.inbox.clear()
                    spill = state.outbox is not None and state.lanes.held + len(entries) > state.max_queue
                    fresh = state.lanes.form(entries, max_batch=state.max_batch, now=now, spill=spill)
                    break
                batch, wait = state.lanes.pick(now)
                if batch is not None:
                    break
                waits = [w for w in (wait, linger) if w is not None]
                if state.outbox is not None:
                    waits.append(state.next_adoption - now)
                cv.wait(min(waits) if waits else None)
        if scan:
            self._spool.adopt(generation)
        elif adopt:
            self._spool.load_files(adopt, generation)
        elif fresh:
            self._spool.persist_fresh(fresh)
        elif batch is not None and self._spool.load(batch):
            self._sender.send(batch)
        return True


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
