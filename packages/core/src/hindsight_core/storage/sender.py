"""Sending one batch, and what its outcome does: stored, retried with backoff, split, or given up on.

Outcomes (:func:`attempt`)
    A 2xx answer is *stored* (also one whose body cannot be read: the server accepted the request).
    Connection errors, timeouts and HTTP 408, 409, 429 and 5xx are *transient*: the batch stays at the head
    of its lane and is sent again after an exponential backoff with jitter (:class:`Backoff`), for as long
    as the process lives, so a bank's turns are never reordered. Anything else is *permanent*: the turns are
    given up on (ERROR log, ``pending_errors()``, dead-letter file), except that a multi-turn request
    rejected as a whole (400, 413, 422) is first sent again turn by turn, so that one bad turn does not take
    the others with it.

While retrying, at most one WARNING per ``warn_interval`` says how many turns wait; an INFO line says when
the server answers again. Every message is scrubbed of the API key.

Storage and memory lookups share one view of each server, its circuit breaker
(:mod:`hindsight_core.breaker`): a request that cannot reach the server opens it (memory lookups then skip
at once instead of each waiting for their time budget), one that gets an answer closes it, and when the
breaker's probe finds the server answering again, every waiting lane head of that server is sent at once,
not at the end of its own backoff. Storage keeps its own retries meanwhile (they run on the worker's
thread, never on a caller's).
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable

from ..breaker import ServerBreaker, breaker_for
from ..client import HindsightClient
from ..connection import Connection
from ..errors import APIConnectionError, APIResponseValidationError, APIStatusError
from .batching import Batch, describe, operation_id, retain_items
from .connections import scrub
from .outbox import DEAD_LETTER
from .spool import Spool
from .state import WorkerState
from .turns import StorageResult

__all__ = ["Backoff", "Outcome", "Sender", "attempt"]

logger = logging.getLogger("hindsight_core.storage")

_TRANSIENT_STATUS = frozenset({408, 409, 429})
_SPLITTABLE_STATUS = frozenset({400, 413, 422})


class Outcome(enum.Enum):
    STORED = "stored"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class Backoff:
    """Delays between retries of one request: ``initial`` seconds doubling up to ``maximum``, less up to
    ``jitter`` of it at random."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter

    def delay(self, attempt: int) -> float:
        delay = min(self.maximum, self.initial * 2.0 ** (attempt - 1))
        return delay * (1.0 - self.jitter * random.random())


def attempt(
    batch: Batch, client_for: Callable[[Connection], HindsightClient]
) -> tuple[Outcome, str, int | None]:
    """Send ``batch`` once (an async retain with its operation id): the outcome, the error (scrubbed of the
    key, empty when stored) and the HTTP status of a rejection."""
    assert batch.turns is not None
    assert batch.connection is not None
    connection = batch.connection
    status_code: int | None = None
    try:
        client = client_for(connection)
        client.retain_batch(
            batch.bank_id, retain_items(batch.turns), async_=True, operation_id=batch.operation_id
        )
        outcome, error = Outcome.STORED, ""
    except APIResponseValidationError as exc:
        # A 2xx answer we cannot read: the server accepted the request.
        logger.warning("Hindsight storage: %s; treating the turns as stored", scrub(str(exc), connection))
        outcome, error = Outcome.STORED, ""
    except APIConnectionError as exc:
        outcome, error = Outcome.TRANSIENT, str(exc)
    except APIStatusError as exc:
        status_code = exc.status_code
        transient = status_code in _TRANSIENT_STATUS or status_code >= 500
        outcome, error = (Outcome.TRANSIENT if transient else Outcome.PERMANENT), str(exc)
    except Exception as exc:
        outcome, error = Outcome.PERMANENT, f"{type(exc).__name__}: {exc}"
    return outcome, scrub(error, connection) or "unknown error", status_code


class Sender:
    """Sends lane heads and applies their outcomes to the lanes, the ledger and the outbox."""

    def __init__(
        self,
        state: WorkerState,
        spool: Spool,
        client_for: Callable[[Connection], HindsightClient],
        backoff: Backoff,
        warn_interval: float,
    ) -> None:
        self._state = state
        self._spool = spool
        self._client_for = client_for
        self._backoff = backoff
        self._warn_interval = warn_interval
        self._last_warning = -float("inf")
        self._failing_since: float | None = None

    def send(self, batch: Batch) -> None:
        """Send ``batch`` (its turns in memory) and act on the outcome."""
        assert batch.turns is not None
        assert batch.connection is not None
        if self._state.outbox is not None and not batch.persisted:
            self._spool.write(batch)  # normally done at intake; retried if that write failed
        breaker = breaker_for(batch.connection.base_url, batch.connection.api_key)
        breaker.listen(self._server_available)
        outcome, error, status_code = attempt(batch, self._client_for)
        if outcome == Outcome.TRANSIENT and status_code is None:
            breaker.unreachable("storage could not reach it")
        else:
            breaker.reached()

        if outcome == Outcome.STORED:
            self._on_stored(batch)
        elif outcome == Outcome.TRANSIENT:
            self._on_transient(batch, error, status_code)
        elif len(batch.refs) > 1 and status_code in _SPLITTABLE_STATUS:
            self._split(batch, error)
        else:
            self._on_permanent(batch, error, status_code)

    def _server_available(self, breaker: ServerBreaker) -> None:
        """The server can be tried again: its held lane heads go now, whatever their backoff said."""
        state = self._state
        with state.cv:
            state.lanes.hurry(time.monotonic(), base_url=breaker.url)
            state.cv.notify_all()

    def _on_stored(self, batch: Batch) -> None:
        state = self._state
        self._spool.remove(batch)
        with state.cv:
            state.ledger.requests += 1
            if batch.resolved:  # closed meanwhile; it was reported as deferred or failed
                logger.info(
                    "Hindsight storage: %d turns were acknowledged after the worker was closed",
                    len(batch.refs),
                )
                return
            state.finish(batch)
            state.ledger.stored += len(batch.refs)
            recovered = self._failing_since is not None and not state.ledger.transient
            if recovered:
                self._failing_since = None
        if recovered:
            logger.info("Hindsight storage: the server answers again; waiting turns are being stored")
        state.complete([(r, StorageResult(r.turn_id, "stored")) for r in batch.refs])

    def _on_transient(self, batch: Batch, error: str, status_code: int | None) -> None:
        state = self._state
        with state.cv:
            state.ledger.requests += 1
            if batch.resolved:
                return
            batch.attempts += 1
            state.ledger.retries += 1
            delay = self._backoff.delay(batch.attempts)
            batch.ready_at = time.monotonic() + delay
            state.lanes.push(batch)
            state.ledger.transient[batch.operation_id] = state.ledger.failures_for(
                batch, error, permanent=False, status_code=status_code
            )
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            warn = now - self._last_warning >= self._warn_interval
            if warn:
                self._last_warning = now
            waiting = state.waiting()
        if warn:
            outbox = state.outbox
            logger.warning(
                "Hindsight storage is retrying (%s); %d turns are waiting and will be sent in order when the "
                "server answers (next attempt in %.1f s, %s)",
                error,
                waiting,
                delay,
                f"kept in the outbox {outbox.directory}" if outbox is not None else "kept in memory only",
            )

    def _on_permanent(self, batch: Batch, error: str, status_code: int | None) -> None:
        state = self._state
        with state.cv:
            state.ledger.requests += 1
            if batch.resolved:  # closed meanwhile and kept in the outbox (or reported): leave it so
                return
            state.finish(batch)
            state.ledger.failed += len(batch.refs)
            state.ledger.record_failure(batch, error, permanent=True, status_code=status_code)
        # Dead-letter first, then remove: a crash in between re-sends the file, never loses it.
        self._spool.dead_letter(batch, error)
        self._spool.remove(batch)
        outbox = state.outbox
        logger.error(
            "Hindsight storage: the server rejected %d turns, which will not be retried (%s): %s%s",
            len(batch.refs),
            error,
            describe([batch]),
            f"; kept in {outbox.directory / DEAD_LETTER}" if outbox is not None else "",
        )
        state.complete([(r, StorageResult(r.turn_id, "failed", error)) for r in batch.refs])

    def _split(self, batch: Batch, error: str) -> None:
        """A multi-turn request was rejected as a whole: retry turn by turn to isolate the bad one(s)."""
        assert batch.turns is not None
        assert batch.connection is not None
        state = self._state
        with state.cv:
            if batch.resolved:
                state.ledger.requests += 1
                return
        logger.warning(
            "Hindsight storage: a request of %d turns was rejected (%s); sending them one by one",
            len(batch.refs),
            error,
        )
        now = time.monotonic()
        children = [
            Batch(
                operation_id=operation_id(batch.base_url, batch.bank_id, [turn.turn_id]),
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
            with state.cv:
                child.order = state.lanes.next_order()
        if state.outbox is not None:
            for child in children:
                self._spool.write(child)
        self._spool.remove(batch)
        with state.cv:
            state.ledger.requests += 1
            # Closed meanwhile (``resolved``): the children's files hold the turns for the next run.
            if batch.resolved or not state.lanes.replace_head(batch, children):
                return
            state.ledger.transient.pop(batch.operation_id, None)
