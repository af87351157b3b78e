"""What became of every turn: counters, failures, and the ``flush()`` waiters.

Every accepted turn gets a sequence number and stays *open* until it is stored, failed or deferred. A flush
waits for the lowest open number to pass the last number given out when it was called, so it never waits for
turns submitted after it. Callbacks run before the turns are closed: a flush returns after the callbacks of
the turns it waited for have run.

Not thread-safe by itself: the worker calls it with its lock held, except :func:`notify`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

from .batching import Batch, Ref
from .turns import OnDone, StorageFailure, StorageResult, StorageStats, Turn, norm_url, utcnow

__all__ = ["Ledger", "Notice", "notify"]

logger = logging.getLogger("hindsight_core.storage")

Notice = tuple[Ref, StorageResult]
"""A result to report for one turn (to its ``on_done``), then close it."""


def notify(notices: list[Notice]) -> None:
    """Run the ``on_done`` callbacks (without the lock); an exception in one is logged and ignored."""
    for ref, result in notices:
        if ref.on_done is None:
            continue
        try:
            ref.on_done(result)
        except Exception:
            logger.exception("Hindsight storage: an on_done callback raised (ignored)")


class Ledger:
    """Counters, failures (given up on, and still retrying), and the open turns flushes wait for."""

    def __init__(self, max_failures: int) -> None:
        self.submitted = 0
        self.stored = 0
        self.failed = 0
        self.deferred = 0
        self.recovered = 0
        self.requests = 0
        self.retries = 0
        self.failures: deque[StorageFailure] = deque(maxlen=max_failures)
        self.transient: dict[str, list[StorageFailure]] = {}
        """Errors of batches being retried, by operation id (gone when the batch is resolved)."""
        self._seq = 0
        self._open: set[int] = set()
        self._open_order: deque[int] = deque()
        self._waiters: deque[tuple[int, concurrent.futures.Future[bool]]] = deque()

    # -- turns in and out

    def new_ref(self, turn: Turn, on_done: OnDone | None) -> Ref:
        """A submitted turn's reference (not open yet: :meth:`open` it once accepted)."""
        self.submitted += 1
        self._seq += 1
        return Ref(turn.turn_id, turn.document_id, self._seq, on_done)

    def open(self, ref: Ref) -> None:
        self._open.add(ref.seq)
        self._open_order.append(ref.seq)

    def open_recovered(self, refs: Iterable[Ref]) -> None:
        """Number and open the turns of a batch read from the outbox."""
        for ref in refs:
            self._seq += 1
            ref.seq = self._seq
            self.open(ref)

    def close(self, refs: Iterable[Ref]) -> None:
        """These turns are done: release the flushes that waited only for them and earlier ones."""
        for ref in refs:
            self._open.discard(ref.seq)
        low = self._low_watermark()
        while self._waiters and self._waiters[0][0] < low:
            _, future = self._waiters.popleft()
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_result(True)

    def _low_watermark(self) -> float:
        while self._open_order and self._open_order[0] not in self._open:
            self._open_order.popleft()
        return self._open_order[0] if self._open_order else float("inf")

    # -- flush

    def flush_future(self) -> concurrent.futures.Future[bool]:
        """A future set when every turn numbered so far is done (already set if they are)."""
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        target = self._seq
        if self._low_watermark() > target:
            future.set_result(True)
        else:
            self._waiters.append((target, future))
        return future

    @property
    def flushing(self) -> bool:
        """Somebody waits for a flush."""
        return bool(self._waiters)

    def drop_waiter(self, future: concurrent.futures.Future[bool]) -> None:
        self._waiters = deque(w for w in self._waiters if w[1] is not future)

    # -- failures

    def failures_for(
        self, batch: Batch, error: str, *, permanent: bool, status_code: int | None
    ) -> list[StorageFailure]:
        """One failure per document of ``batch``."""
        by_document: dict[str, list[str]] = {}
        for ref in batch.refs:
            by_document.setdefault(ref.document_id, []).append(ref.turn_id)
        when = utcnow()
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

    def record_failure(self, batch: Batch, error: str, *, permanent: bool, status_code: int | None) -> None:
        self.transient.pop(batch.operation_id, None)
        self.failures.extend(self.failures_for(batch, error, permanent=permanent, status_code=status_code))

    def refuse(self, turn: Turn, reason: str) -> None:
        """A turn refused at submit (queue full, no thread): failed at once, never sent."""
        self.failed += 1
        self.failures.append(
            StorageFailure(
                (turn.turn_id,),
                turn.bank_id,
                turn.document_id,
                reason,
                True,
                utcnow(),
                norm_url(turn.connection.base_url),
                attempts=0,
            )
        )

    # -- reporting

    def pending_errors(self) -> list[StorageFailure]:
        retrying = [f for group in self.transient.values() for f in group]
        return [*self.failures, *retrying]

    def clear_errors(self) -> None:
        self.failures.clear()
        self.transient.clear()

    def stats(self, pending: int, on_disk: int) -> StorageStats:
        return StorageStats(
            submitted=self.submitted,
            stored=self.stored,
            failed=self.failed,
            deferred=self.deferred,
            pending=pending,
            on_disk=on_disk,
            recovered=self.recovered,
            requests=self.requests,
            retries=self.retries,
        )

    def forget_open(self) -> None:
        """Forget open turns, waiters and retrying errors (in a forked child: the parent owns them)."""
        self._open.clear()
        self._open_order.clear()
        self._waiters.clear()
        self.transient.clear()
