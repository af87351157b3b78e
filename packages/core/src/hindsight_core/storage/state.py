"""What the worker's parts share, under one lock: the inbox, the lanes, the ledger, the known connections and
the outbox.

One lock (``cv``, a condition the worker thread waits on) guards all of it, so that a turn moves between the
inbox, a lane and the ledger atomically. No I/O and no callback runs with the lock held.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .batching import Batch, Entry, Lanes
from .connections import ConnectionBook
from .ledger import Ledger, Notice, notify
from .outbox import Outbox

__all__ = ["WorkerState"]


class WorkerState:
    """The state of one :class:`~hindsight_core.storage.StorageWorker`, shared by its parts."""

    def __init__(self, *, max_queue: int, max_batch: int, max_failures: int, outbox: Outbox | None) -> None:
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.cv = threading.Condition(threading.Lock())
        self.generation = 0
        """Bumped when the thread is stopped (or the process forked): a thread of an older one exits."""
        self.inbox: deque[Entry] = deque()
        self.inbox_since = 0.0
        """When the oldest turn in the inbox arrived (``time.monotonic()``)."""
        self.linger = 0.0
        self.lanes = Lanes()
        self.ledger = Ledger(max_failures)
        self.connections = ConnectionBook()
        self.outbox = outbox
        """None without an outbox, or once its directory turned out unusable."""

    def lingering(self, now: float) -> float | None:
        """Seconds the inbox's turns may still wait for more before batches are formed; None: form now
        (nothing to wait for, the linger is over, a full batch, a flush waiting) (lock held)."""
        if not self.inbox or len(self.inbox) >= self.max_batch or self.ledger.flushing:
            return None
        left = self.inbox_since + self.linger - now
        return left if left > 0 else None

    def waiting(self) -> int:
        """Turns accepted and not resolved yet (lock held)."""
        return len(self.inbox) + self.lanes.held + self.lanes.on_disk

    def usable_outbox(self) -> Outbox | None:
        """The outbox, its directory created; None without one (an unusable one is dropped, with an ERROR)."""
        outbox = self.outbox
        if outbox is None:
            return None
        if not outbox.ensure():
            self.outbox = None
            return None
        return outbox

    def finish(self, batch: Batch) -> None:
        """The head ``batch`` is resolved: out of its lane, the next one scheduled (lock held)."""
        self.lanes.finish(batch, time.monotonic())
        self.ledger.transient.pop(batch.operation_id, None)

    def complete(self, notices: list[Notice]) -> None:
        """Run the callbacks, then release flush waiters: a flush returns after its turns' callbacks ran."""
        if not notices:
            return
        notify(notices)
        with self.cv:
            self.ledger.close(ref for ref, _ in notices)

    def reset_after_fork(self) -> None:
        """A forked child starts empty: the parent still owns (and sends) what was queued at the fork."""
        self.cv = threading.Condition(threading.Lock())
        self.generation += 1
        self.inbox.clear()
        self.lanes.clear()
        self.ledger.forget_open()
        self.connections.forget_files()
