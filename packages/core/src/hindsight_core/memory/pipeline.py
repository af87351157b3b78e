""":class:`MemoryPipeline`, what every adapter uses: the read path (:mod:`.lookup`), the write path
(:mod:`.store`) and bank set-up, behind one object."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from ..connection import async_client, sync_client
from ..debug import InjectionDebugInfo, set_last_debug
from ..errors import HindsightError
from ..lookups import LookupCache
from ..pipeline import Message
from ..settings import MemorySettings
from ..storage import StorageWorker, default_worker
from .calls import FailOpen, MemoryCall
from .lookup import Lookup
from .store import Store

__all__ = ["MemoryPipeline"]


class MemoryPipeline:
    """Recall/reflect, render, budget, inject, record; then store. Shared by every adapter.

    ``source`` names the integration in stored metadata and log lines. ``storage`` defaults to the
    process-wide worker; ``lookups`` to a cache of this pipeline's own.
    """

    def __init__(
        self,
        *,
        source: str = "hindsight-core",
        storage: StorageWorker | None = None,
        lookups: LookupCache | None = None,
    ) -> None:
        self.source = source
        self._storage = storage
        self.lookups = lookups if lookups is not None else LookupCache()
        """The lookup of each conversation's latest user message, reused by the calls that continue it."""
        self._warn = FailOpen(source)
        self._lookup = Lookup(self.lookups, self._warn)
        self._store = Store(source, lambda: self.storage, self._warn)

    @property
    def storage(self) -> StorageWorker:
        if self._storage is None:
            self._storage = default_worker()
        return self._storage

    # ------------------------------------------------------------------------------------------- reading

    def prepare(
        self,
        messages: Sequence[Message],
        settings: MemorySettings,
        *,
        model: str | None = None,
        turn: Hashable | None = None,
    ) -> MemoryCall:
        """Recall or reflect, and inject the result into a copy of ``messages`` (blocking I/O).

        A call that continues the user message an earlier call looked up (an agent step, a retry) reuses
        that lookup. Which user message a call continues is read from ``messages``; an adapter that passes
        only part of the conversation says it with ``turn`` (any hashable value that changes with each new
        user message). Never raises for a memory problem unless ``settings.strict`` is set (then: the
        error)."""
        try:
            return self._lookup.prepare(messages, settings, model, turn)
        except Exception as exc:
            return self._unprepared(messages, settings, model, exc)

    async def aprepare(
        self,
        messages: Sequence[Message],
        settings: MemorySettings,
        *,
        model: str | None = None,
        turn: Hashable | None = None,
    ) -> MemoryCall:
        """:meth:`prepare` for asyncio: the lookup is awaited, the event loop is never blocked."""
        try:
            return await self._lookup.aprepare(messages, settings, model, turn)
        except Exception as exc:
            return self._unprepared(messages, settings, model, exc)

    def _unprepared(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, error: Exception
    ) -> MemoryCall:
        """The call as the caller made it, after an unexpected failure inside memory (fail open)."""
        if settings.strict:
            raise error
        record = InjectionDebugInfo(mode=settings.mode, query=None, bank_id=settings.bank_id, model=model)
        set_last_debug(record)
        self._warn(record, settings, error)
        original = list(messages) if isinstance(messages, Sequence) else []
        return MemoryCall(
            messages=[dict(m) for m in original],
            original=original,
            settings=settings,
            record=record,
            model=model,
            store=False,
        )

    # ------------------------------------------------------------------------------------------- writing

    def finish(self, call: MemoryCall, reply: Message | str | None, *, wait: bool | None = None) -> None:
        """Queue the exchange for storage (once per call; later calls are no-ops). Waits for the server only
        with ``wait=True``, or by default when ``sync_storage`` is set."""
        turn = self._store.turn(call, reply)
        if turn is None:
            return
        self._store.submit(call, turn)
        if call.settings.sync_storage if wait is None else wait:
            self.storage.flush(timeout=call.settings.retain_timeout)
            self._store.raise_if_not_stored(call)

    async def afinish(self, call: MemoryCall, reply: Message | str | None) -> None:
        """:meth:`finish` for asyncio (the optional wait does not block the event loop)."""
        turn = self._store.turn(call, reply)
        if turn is None:
            return
        self._store.submit(call, turn)
        if call.settings.sync_storage:
            await self.storage.aflush(timeout=call.settings.retain_timeout)
            self._store.raise_if_not_stored(call)

    def store(
        self,
        messages: Sequence[Message],
        reply: Message | str | None,
        settings: MemorySettings,
        *,
        model: str | None = None,
        record: InjectionDebugInfo | None = None,
    ) -> InjectionDebugInfo:
        """Queue an exchange for storage without a memory lookup, for adapters whose framework completes a
        turn somewhere else than where memory was read.

        The storage status is tracked on ``record`` (e.g. the record of the lookup made for this turn) or,
        without one, on a new record, which is returned. The thread's "last debug record" is left alone."""
        call = self._store.storage_call(messages, settings, model, record)
        self.finish(call, reply)
        return call.record

    async def astore(
        self,
        messages: Sequence[Message],
        reply: Message | str | None,
        settings: MemorySettings,
        *,
        model: str | None = None,
        record: InjectionDebugInfo | None = None,
    ) -> InjectionDebugInfo:
        """:meth:`store` for asyncio."""
        call = self._store.storage_call(messages, settings, model, record)
        await self.afinish(call, reply)
        return call.record

    def remember(
        self,
        text: str,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
        context: str | None = None,
    ) -> InjectionDebugInfo:
        """Queue ``text`` for storage as it is (not a transcript: e.g. a fact an agent chose to keep) in the
        document of the conversation ``messages`` belong to, with the settings' tags. Stored whatever
        ``store_conversations`` says (that switch is about transcripts).

        Returns at once, unless ``sync_storage`` is set: then it waits, and a note that could not be stored
        is a memory failure (recorded and warned about; raised in strict mode). The returned record tracks
        the storage status."""
        call, turn = self._store.note(text, settings, messages, context)
        if turn is None or not settings.sync_storage:
            return call.record
        return self._store.noted(call, self.storage.flush(timeout=settings.retain_timeout))

    async def aremember(
        self,
        text: str,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
        context: str | None = None,
    ) -> InjectionDebugInfo:
        """:meth:`remember` for asyncio (the optional wait does not block the event loop)."""
        call, turn = self._store.note(text, settings, messages, context)
        if turn is None or not settings.sync_storage:
            return call.record
        return self._store.noted(call, await self.storage.aflush(timeout=settings.retain_timeout))

    def queue_retain(
        self,
        content: str,
        settings: MemorySettings,
        *,
        context: str | None = None,
        document_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> InjectionDebugInfo:
        """Queue ``content`` on the storage worker as a direct retain (``retain(..., sync=False)``): it
        returns at once; the worker sends it, retries through outages, and reports what it could not store
        (``storage.pending_errors()``). With ``document_id`` the content replaces that document's, else it
        is a document of its own. The returned record tracks the storage status."""
        return self._store.content(
            content, settings, context=context, document_id=document_id, metadata=metadata
        )

    # ---------------------------------------------------------------------------------------------- bank

    def ensure_bank(self, settings: MemorySettings) -> bool:
        """Create or update the bank when ``mission`` or ``bank_name`` is set (blocking). True when done,
        False when there was nothing to do or it failed (logged; raised in strict mode)."""
        if not (settings.bank_id and (settings.mission or settings.bank_name)):
            return False
        try:
            sync_client(settings.connection).create_bank(
                settings.bank_id, name=settings.bank_name, mission=settings.mission
            )
        except HindsightError as exc:
            self._warn.bank(settings, exc)
            return False
        return True

    async def aensure_bank(self, settings: MemorySettings) -> bool:
        """:meth:`ensure_bank` for asyncio."""
        if not (settings.bank_id and (settings.mission or settings.bank_name)):
            return False
        try:
            await async_client(settings.connection).create_bank(
                settings.bank_id, name=settings.bank_name, mission=settings.mission
            )
        except HindsightError as exc:
            self._warn.bank(settings, exc)
            return False
        return True
