"""Ordered per-bank lanes and batching: which turns go out together, and which request is sent next.

Pure bookkeeping: no thread, no lock, no disk, no clock (the caller passes ``now``). The worker calls it with
its lock held.

Lanes
    A *lane* is one server and bank. Its batches are sent strictly in order, one request at a time: only the
    head of a lane is ever ready, and the next batch becomes ready when the head is finished (stored or given
    up on). Lanes are independent: a lane whose head waits for a retry does not hold up the others. The ready
    heads are kept in a heap by (ready time, order), so the oldest ready head is sent first.

Batches
    Turns for the same connection and bank that wait together go in one batch (at most ``max_batch``). The
    server refuses two items of one document in one async request, so a batch's consecutive turns of one
    document become one item (:func:`retain_items`), and a turn whose context, tags or metadata differ from
    the earlier turns of its document in the batch starts a new batch (:func:`group_entries`). A batch never
    changes once formed: its operation id (:func:`operation_id`) is derived from its turns, so a resend is
    recognised by the server.

A linger (waiting a little for more turns under load) belongs in :func:`group_entries` and :meth:`Lanes.form`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..connection import Connection
from ..models import RetainItem
from .connections import key_id
from .turns import OnDone, Turn, norm_url

__all__ = [
    "Batch",
    "Entry",
    "LaneKey",
    "Lanes",
    "Ref",
    "describe",
    "group_entries",
    "new_batch_name",
    "operation_id",
    "retain_items",
    "signature",
]

_OPERATION_NAMESPACE = uuid.UUID("6f1d3c2a-8b4e-5a7f-9c0d-2e4b6a8c0f13")
_batch_names = itertools.count(1)

LaneKey = tuple[str, str]
"""(server URL, bank id)."""


@dataclass(eq=False)
class Ref:
    """What the worker remembers of a turn even while its content is only on disk."""

    turn_id: str
    document_id: str
    seq: int
    on_done: OnDone | None = None


@dataclass(eq=False)
class Entry:
    """A submitted turn, not yet in a batch."""

    turn: Turn
    ref: Ref


@dataclass(eq=False)
class Batch:
    """One request's worth of turns. Its composition, hence its operation id, never changes once formed.

    ``turns`` is None while the batch's content is only in the outbox (``persisted``); ``spill`` marks a batch
    formed while memory was full, which leaves memory once written. ``resolved`` is set when the batch is
    finished or handed over at close; ``ready_at`` (monotonic seconds) is when it may be sent.
    """

    operation_id: str
    base_url: str
    bank_id: str
    key_id: str | None
    connection: Connection | None
    refs: list[Ref]
    turns: list[Turn] | None
    name: str
    order: int
    ready_at: float
    persisted: bool = False
    spill: bool = False
    attempts: int = 0
    resolved: bool = False

    @property
    def lane(self) -> LaneKey:
        return (self.base_url, self.bank_id)


def operation_id(base_url: str, bank_id: str, turn_ids: Iterable[str]) -> str:
    """Deterministic per batch composition: same turns, same id (a retry); other turns, another id."""
    return str(uuid.uuid5(_OPERATION_NAMESPACE, "\n".join([base_url, bank_id, *turn_ids])))


def signature(turn: Turn) -> tuple[Any, ...]:
    """What turns of one document must share to be merged into one item (a replacing turn: its own)."""
    metadata = tuple(sorted(turn.metadata.items())) if turn.metadata is not None else None
    own = turn.turn_id if turn.update_mode == "replace" else None
    return (turn.context, turn.tags, metadata, own)


def retain_items(turns: list[Turn]) -> list[RetainItem]:
    """One item per document: appended turns' texts joined in order (the server's own append separator);
    a replacing turn is alone in its document's group (see :func:`signature`)."""
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
                update_mode=first.update_mode,
            )
        )
    return items


def group_entries(entries: Iterable[Entry], max_batch: int) -> list[list[Entry]]:
    """Group entries by (connection, bank) in order, at most ``max_batch`` each, merge-compatible."""
    open_batches: dict[tuple[Connection, str], tuple[list[Entry], dict[str, tuple[Any, ...]]]] = {}
    groups: list[list[Entry]] = []
    for entry in entries:
        turn = entry.turn
        key = (turn.connection, turn.bank_id)
        current = open_batches.get(key)
        turn_signature = signature(turn)
        if current is not None:
            members, documents = current
            known = documents.get(turn.document_id)
            if len(members) >= max_batch or (known is not None and known != turn_signature):
                current = None
        if current is None:
            current = ([], {})
            open_batches[key] = current
            groups.append(current[0])
        current[0].append(entry)
        current[1].setdefault(turn.document_id, turn_signature)
    return groups


def new_batch_name() -> str:
    """A unique batch name, also its outbox file's: sorts by creation time across runs; the process-wide
    counter keeps names unique within one."""
    return f"{time.time_ns():020d}-{os.getpid():07d}-{next(_batch_names):08d}"


def describe(batches: list[Batch]) -> str:
    """``bank 'b' documents ['d1', 'd2']; ...``: what a lost or rejected set of turns belonged to."""
    documents: dict[str, dict[str, None]] = {}
    for batch in batches:
        slot = documents.setdefault(batch.bank_id, {})
        for ref in batch.refs:
            slot.setdefault(ref.document_id, None)
    return "; ".join(f"bank {bank!r} documents {list(docs)}" for bank, docs in documents.items())


class Lanes:
    """The batches waiting to be sent, one ordered lane per (server, bank), and which head is ready next.

    ``held`` counts the turns of batches whose content is in memory, ``on_disk`` those whose content is only
    in the outbox.
    """

    def __init__(self) -> None:
        self._lanes: dict[LaneKey, deque[Batch]] = {}
        self._ready: list[tuple[float, int, int, Batch]] = []
        self._ticks = itertools.count()
        self._order = 0
        self.held = 0
        self.on_disk = 0

    def __bool__(self) -> bool:
        return bool(self._lanes)

    def __iter__(self) -> Iterator[Batch]:
        """Every batch, lane by lane, each lane in order."""
        return (batch for lane in self._lanes.values() for batch in lane)

    def names(self) -> set[str]:
        return {batch.name for batch in self}

    def next_order(self) -> int:
        self._order += 1
        return self._order

    def form(self, entries: list[Entry], *, max_batch: int, now: float, spill: bool) -> list[Batch]:
        """Batch ``entries`` (:func:`group_entries`) and queue the batches at the ends of their lanes."""
        batches = []
        for group in group_entries(entries, max_batch):
            first = group[0].turn
            base_url = norm_url(first.connection.base_url)
            turns = [e.turn for e in group]
            batch = Batch(
                operation_id=operation_id(base_url, first.bank_id, (t.turn_id for t in turns)),
                base_url=base_url,
                bank_id=first.bank_id,
                key_id=key_id(first.connection),
                connection=first.connection,
                refs=[e.ref for e in group],
                turns=turns,
                name=new_batch_name(),
                order=self.next_order(),
                ready_at=now,
                spill=spill,
            )
            self.held += len(turns)
            self.enqueue(batch)
            batches.append(batch)
        return batches

    def add_from_disk(self, batch: Batch) -> None:
        """Queue a batch read from the outbox (its content stays on disk until it is sent)."""
        self.on_disk += len(batch.refs)
        self.enqueue(batch)

    def enqueue(self, batch: Batch) -> None:
        lane = self._lanes.get(batch.lane)
        if lane is None:
            lane = self._lanes[batch.lane] = deque()
        lane.append(batch)
        if len(lane) == 1:
            self.push(batch)

    def push(self, batch: Batch) -> None:
        """(Re)schedule a lane head at its ``ready_at``; older heap entries for it become stale."""
        heapq.heappush(self._ready, (batch.ready_at, batch.order, next(self._ticks), batch))

    def pick(self, now: float) -> tuple[Batch | None, float | None]:
        """The oldest ready head of a lane, else None and how long until one is (None: no batch at all)."""
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

    def finish(self, batch: Batch, now: float) -> None:
        """Take the resolved head ``batch`` out of its lane and schedule the next one."""
        batch.resolved = True
        lane = self._lanes.get(batch.lane)
        if lane is not None and lane and lane[0] is batch:
            lane.popleft()
            if lane:
                lane[0].ready_at = min(lane[0].ready_at, now)
                self.push(lane[0])
            else:
                del self._lanes[batch.lane]
        if batch.turns is not None:
            self.held -= len(batch.refs)
        else:
            self.on_disk -= len(batch.refs)

    def replace_head(self, batch: Batch, children: list[Batch]) -> bool:
        """Put ``children`` in place of the head ``batch`` (split turn by turn); False if not the head."""
        lane = self._lanes.get(batch.lane)
        if lane is None or not lane or lane[0] is not batch:
            return False
        lane.popleft()
        lane.extendleft(reversed(children))
        self.push(children[0])
        return True

    def unload(self, batch: Batch) -> None:
        """The batch's content is on disk now: drop it from memory."""
        batch.turns = None
        self.held -= len(batch.refs)
        self.on_disk += len(batch.refs)

    def reload(self, batch: Batch, turns: list[Turn]) -> None:
        """The batch's content was read back from disk."""
        batch.turns = turns
        self.on_disk -= len(batch.refs)
        self.held += len(batch.refs)

    def hurry(self, now: float, *, base_url: str | None = None) -> None:
        """Make every lane head (of the server at ``base_url``, or of all) ready now: at exit, retry at
        once; when a server answers again, send what waited for it."""
        wanted = base_url.rstrip("/").lower() if base_url is not None else None
        for (url, _), lane in self._lanes.items():
            if wanted is not None and url.rstrip("/").lower() != wanted:
                continue
            head = lane[0]
            if head.ready_at > now:
                head.ready_at = now
                self.push(head)

    def clear(self) -> None:
        """Forget every batch (at close, or in a forked child)."""
        self._lanes.clear()
        self._ready.clear()
        self.held = self.on_disk = 0
