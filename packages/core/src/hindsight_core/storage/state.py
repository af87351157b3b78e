"""What the worker's parts share, under one lock: the inbox, the lanes, the ledger, the known connections and
the outbox.

One lock (``cv``, a condition the worker thread waits on) guards all of it, so that a turn moves between the
inbox, a lane and the ledger atomically. No I/O and no callback runs with the lock held.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from ..errors import ConfigurationError
from .batching import Batch, Entry, Lanes
from .connections import ConnectionBook
from .ledger import Ledger, Notice, notify
from .outbox import Outbox

__all__ = ["WorkerState", "check_options"]


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
        self.adopt_interval = 5.0
        self.next_adoption = 0.0
        """When to look next for files of stopped processes in a shared outbox (``time.monotonic()``)."""
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
        if self.outbox is not None:
            self.outbox.forget_after_fork()


def check_options(options: dict[str, Any]) -> None:
    """Validate the worker's constructor options (a ConfigurationError names the bad one)."""
    for option in ("max_queue", "max_batch", "max_failures"):
        value = options[option]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{option} must be an integer >= 1, got {value!r}")
    for option in ("retry_initial", "retry_max", "warn_interval", "exit_timeout", "linger", "adopt_interval"):
        number = options[option]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise ConfigurationError(f"{option} must be a number of seconds >= 0, got {number!r}")
    if not 0.0 <= options["retry_jitter"] <= 1.0:
        raise ConfigurationError(f"retry_jitter must be between 0 and 1, got {options['retry_jitter']!r}")
    if not callable(options["client_for"]):
        raise ConfigurationError("client_for must be a callable returning a HindsightClient")
