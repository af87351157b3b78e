"""Background storage of conversation turns: off the LLM call's hot path, each turn stored once, nothing lost
silently.

Why a worker
    Retaining a turn takes the server 0.5-2 s and can fail. Doing it inline would add that to every LLM call,
    and doing it on fire-and-forget daemon threads (what hindsight-litellm 0.5.4 did) loses turns at exit
    and on every error. :class:`StorageWorker` takes a :class:`Turn` in O(1) without I/O (``submit()``),
    and one background thread sends turns in order, retries what failed for transient reasons, reports what
    failed for good, and at exit either finishes, keeps the rest on disk (the *outbox*) or says what was lost.

Why append mode and operation ids
    Each turn is sent once, appended (``update_mode="append"``) to the document of its conversation: the
    worker never re-reads a document and never re-sends history, so stored text grows linearly and concurrent
    conversations cannot overwrite each other. Every request is an async retain carrying an ``operation_id``
    derived from the turn ids it carries; the batch never changes once formed, so a retry after a lost
    acknowledgement (or a re-send from the outbox by the next process) is recognised by the server and
    stores nothing twice.

Where each part lives
    ``turns``        Turn, StorageResult, StorageFailure, StorageStats (the public data types)
    ``batching``     ordered per-bank lanes, batch forming and merging, operation ids (pure)
    ``connections``  which connection (API key) sends which outbox file; the key's fingerprint
    ``outbox``       the outbox directory: file format, atomic writes, dead letter, unreadable files
    ``spool``        lanes and outbox in step: write before sending, spill, read back, recover, keep at close
    ``sender``       one request: outcome, retry with backoff, split, give up; the retry warnings
    ``ledger``       counters, failures, flush waiters, callbacks
    ``state``        what those share under the worker's one lock
    ``worker``       StorageWorker (submit, flush, stats, close), its thread, exit and fork handling

See ``docs/storage.md`` for the guarantees in user terms.
"""

from .outbox import OUTBOX_DIR_ENV
from .turns import StorageFailure, StorageResult, StorageStats, StorageStatus, Turn
from .worker import StorageWorker, default_worker

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
