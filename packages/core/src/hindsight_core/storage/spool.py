"""Keeping the lanes and the outbox in step: recovery, spilling to disk, and what is left at close.

- A new batch is written to the outbox before its first send (:meth:`Spool.persist_fresh`); one formed while
  memory was full then leaves memory, and is read back just before it is sent (:meth:`Spool.load`).
- At start, files an earlier run left are queued first, oldest first, with the operation id they were first
  sent with (:meth:`Spool.recover`); a file whose key is unknown waits until its connection is registered,
  then is queued too (:meth:`Spool.load_files`).
- When the worker stops, every unsent batch is either kept in the outbox (``deferred``) or, without one,
  reported as failed (:meth:`Spool.set_aside`).

Called by the worker thread (and by ``close()`` or the exit handler), never from a submitting thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..connection import Connection
from .batching import Batch, describe
from .connections import fallback_connection
from .ledger import Notice
from .outbox import read_batch_file
from .state import WorkerState
from .turns import StorageResult, utcnow

__all__ = ["Spool"]

logger = logging.getLogger("hindsight_core.storage")


class Spool:
    """The outbox side of the worker: what is written, read back, recovered, and kept at close."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state

    # -- single files

    def write(self, batch: Batch) -> bool:
        """Write the batch file (True if it is on disk now, or was already)."""
        outbox = self._state.outbox
        if outbox is None:
            return batch.persisted
        return outbox.write(batch)

    def remove(self, batch: Batch) -> None:
        outbox = self._state.outbox
        if outbox is not None:
            outbox.remove(batch)

    def dead_letter(self, batch: Batch, error: str) -> None:
        outbox = self._state.outbox
        if outbox is not None:
            outbox.dead_letter(batch, error, utcnow())

    def _resolve(self, base_url: str, key: str | None) -> Connection | None:
        with self._state.cv:
            known = self._state.connections.get(base_url, key)
        if known is not None:
            return known
        return fallback_connection(base_url, key)

    # -- intake

    def persist_fresh(self, batches: list[Batch]) -> None:
        """Write newly formed batches before their first send; spilled ones then leave memory."""
        state = self._state
        outbox = state.usable_outbox()
        if outbox is None:
            return
        for batch in batches:
            if batch.resolved or not outbox.write(batch):
                continue
            with state.cv:
                if batch.spill and not batch.resolved and batch.turns is not None:
                    state.lanes.unload(batch)

    def load(self, batch: Batch) -> bool:
        """Bring an on-disk batch's turns back into memory before it is sent (False: it cannot be sent)."""
        if batch.turns is not None:
            return True
        state = self._state
        fresh = None
        if state.outbox is not None:
            fresh = read_batch_file(state.outbox.path(batch), self._resolve, batch.connection)
        notices: list[Notice] = []
        with state.cv:
            if fresh is None or fresh.turns is None:
                if not batch.resolved:
                    state.finish(batch)
                    state.ledger.failed += len(batch.refs)
                    error = "the outbox file could not be read back"
                    state.ledger.record_failure(batch, error, permanent=True, status_code=None)
                    notices = [(r, StorageResult(r.turn_id, "failed", error)) for r in batch.refs]
            elif not batch.resolved:
                state.lanes.reload(batch, fresh.turns)
        state.complete(notices)
        return fresh is not None and batch.turns is not None

    # -- recovery

    def recover(self, generation: int) -> None:
        """At start: queue the batches an earlier run left in the outbox, oldest first."""
        outbox = self._state.usable_outbox()
        if outbox is None:
            return
        paths = outbox.leftovers()
        if paths is not None:
            self.load_files(paths, generation, recovering=True)

    def adopt(self, generation: int) -> None:
        """While running: queue the files of processes that stopped, found in a shared outbox."""
        outbox = self._state.usable_outbox()
        if outbox is None:
            return
        paths = outbox.adopt()
        if paths:
            self.load_files(paths, generation, recovering=True)

    def load_files(self, paths: list[Path], generation: int, *, recovering: bool = False) -> None:
        """Queue the batches of these outbox files (their content stays on disk until sent)."""
        state = self._state
        loaded: list[Batch] = []
        for path in paths:
            batch = read_batch_file(path, self._resolve)
            if batch is None:
                continue
            if batch.connection is None:
                with state.cv:
                    state.connections.orphan(batch.base_url, batch.key_id, path)
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
        with state.cv:
            if state.generation != generation:
                return
            known = state.lanes.names()
            for batch in loaded:
                if batch.name in known:
                    continue
                batch.order = state.lanes.next_order()
                batch.ready_at = 0.0 if recovering else time.monotonic()
                state.ledger.open_recovered(batch.refs)
                state.ledger.recovered += len(batch.refs)
                state.lanes.add_from_disk(batch)
            state.cv.notify_all()
        if loaded:
            logger.info(
                "Hindsight storage: %d turns left in the outbox %s by an earlier run or a stopped process "
                "are being sent",
                sum(len(b.refs) for b in loaded),
                state.outbox.directory if state.outbox is not None else None,
            )

    # -- stopping

    def set_aside(self, batches: list[Batch], reason: str) -> int:
        """Keep unsent ``batches`` in the outbox (``deferred``) or report them failed; returns how many."""
        state = self._state
        if any(not b.persisted for b in batches):
            state.usable_outbox()
        kept: list[Batch] = []
        lost: list[Batch] = []
        for batch in batches:
            if state.outbox is not None and (batch.persisted or state.outbox.write(batch)):
                kept.append(batch)
            else:
                lost.append(batch)
        notices: list[Notice] = []
        with state.cv:
            for batch in kept:
                state.ledger.deferred += len(batch.refs)
                notices.extend((r, StorageResult(r.turn_id, "deferred")) for r in batch.refs)
            message = f"not stored: {reason} before the server acknowledged it"
            for batch in lost:
                state.ledger.failed += len(batch.refs)
                state.ledger.record_failure(batch, message, permanent=True, status_code=None)
                notices.extend((r, StorageResult(r.turn_id, "failed", message)) for r in batch.refs)
        if kept:
            logger.warning(
                "Hindsight storage: %s with %d turns unsent; they are kept in the outbox %s and will be sent "
                "by the next worker started on it",
                reason,
                sum(len(b.refs) for b in kept),
                state.outbox.directory if state.outbox is not None else None,
            )
        if lost:
            logger.error(
                "Hindsight storage: %s with %d turns unsent and no outbox; they are lost: %s "
                "(set HINDSIGHT_OUTBOX_DIR to keep them on disk)",
                reason,
                sum(len(b.refs) for b in lost),
                describe(lost),
            )
        state.complete(notices)
        return len(kept) + len(lost)
