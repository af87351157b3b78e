"""Memory orchestration: messages + settings in, messages with memory + a debug record out; and, after the
LLM answered, the exchange handed to storage.

:class:`MemoryPipeline` is used the same way by every adapter::

    call = pipeline.prepare(messages, settings, model="gpt-4o")        # or: await pipeline.aprepare(...)
    response = llm(call.messages)                                      # the adapter's own LLM call
    pipeline.finish(call, reply)                                       # or: await pipeline.afinish(...)

``prepare`` plans (pure), does the one recall or reflect (sync or async I/O: the only difference between
the flavours), then renders, budgets and injects (pure). A memory failure never fails the call unless
``strict`` is set: the call goes on without memory, the error is in the debug record, and a rate-limited
WARNING says so. ``finish`` builds the turn's transcript from the caller's original messages and queues
it on the background storage worker; it never waits for the server (unless ``sync_storage`` is set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._logging import RateLimitedLog, verbose_logger
from .connection import async_client, sync_client
from .debug import InjectionDebugInfo, set_last_debug
from .errors import APIConnectionError, ConfigurationError, HindsightError, NotFoundError, StorageError
from .lookups import LookupCache, LookupKey, user_message_marker
from .models import RecallResponse, ReflectResponse
from .pipeline import (
    Memory,
    Message,
    completes_turn,
    content_text,
    extract_query,
    inject,
    render_recall,
    render_reflect,
    transcript,
)
from .settings import MemorySettings
from .storage import StorageResult, StorageWorker, Turn, default_worker

__all__ = ["LOOKUP_PAUSE", "NO_BANK_YET", "MemoryCall", "MemoryPipeline", "conversation_document_id"]

LOOKUP_PAUSE = 5.0
"""Seconds memory lookups to a server are skipped (failing open at once) after it could not be reached."""

NO_BANK_YET = "the bank does not exist yet (nothing stored in it)"
"""``skipped_reason`` of a recall from a bank the server does not know (not an error: nothing stored yet)."""


@dataclass
class MemoryCall:
    """One LLM call going through memory: what to send, and what to store afterwards."""

    messages: list[dict[str, Any]]
    """The messages to send: the caller's, with the memory block injected (a new list)."""
    original: list[Message]
    """The caller's messages, unchanged: the transcript is built from these."""
    settings: MemorySettings
    record: InjectionDebugInfo
    model: str | None = None
    store: bool = True
    finished: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class _Plan:
    call: MemoryCall
    query: str | None  # None: no memory lookup for this call
    key: LookupKey | None = None  # the lookup's key in the pipeline's LookupCache


def conversation_document_id(settings: MemorySettings, messages: Sequence[Message]) -> str:
    """The document a conversation is stored under.

    ``document_id``, else ``session_id``; else an id derived from the conversation's first user message,
    which stays the same as the conversation grows, so its turns land in one document without the
    application naming it.
    """
    explicit = settings.effective_document_id
    if explicit:
        return explicit
    first = next((m for m in messages if m.get("role") == "user"), None)
    seed = content_text(first.get("content")) if first is not None else ""
    digest = hashlib.sha256(f"{settings.bank_id}\x00{seed}".encode()).hexdigest()[:20]
    return f"conversation-{digest}"


class MemoryPipeline:
    """Recall/reflect, render, budget, inject, record; then store. Shared by every adapter.

    ``source`` names the integration in stored metadata and log lines. ``storage`` defaults to the
    process-wide worker.
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
        self._warn = RateLimitedLog(logging.getLogger(f"hindsight_core.{source}"), interval=60.0)
        self._pause_lock = threading.Lock()
        self._paused_until: dict[str, float] = {}

    @property
    def storage(self) -> StorageWorker:
        if self._storage is None:
            self._storage = default_worker()
        return self._storage

    # ------------------------------------------------------------------------------------- preparation

    def _plan(
        self,
        messages: Sequence[Message],
        settings: MemorySettings,
        model: str | None,
        turn: Hashable | None = None,
    ) -> _Plan:
        original = list(messages)
        record = InjectionDebugInfo(
            mode=settings.mode,
            query=None,
            bank_id=settings.bank_id,
            model=model,
            injection_mode=settings.injection_mode.value,
            max_memory_tokens=settings.max_memory_tokens,
        )
        call = MemoryCall(
            messages=inject(original, "", settings.injection_mode),
            original=original,
            settings=settings,
            record=record,
            model=model,
            store=settings.store_conversations,
        )
        set_last_debug(record)
        if settings.is_excluded(model):
            record.skipped_reason = f"model {model!r} matches excluded_models"
            call.store = False
            return _Plan(call, None)
        if not settings.bank_id:
            call.store = False
            self._fail(
                record, settings, ConfigurationError("no bank_id configured: memory is skipped for this call")
            )
            return _Plan(call, None)
        record.document_id = conversation_document_id(settings, original)
        if not settings.inject_memories:
            record.skipped_reason = "inject_memories is off"
            return _Plan(call, None)
        query = extract_query(original, settings.query)
        record.query = query
        if query is None:
            record.skipped_reason = "no user text to look up memories for"
            return _Plan(call, None)
        marker = turn if turn is not None else user_message_marker(original)
        if marker is None:  # no user message to continue (e.g. an agent's memory tool): nothing to reuse
            return _Plan(call, query)
        key = LookupKey(
            (settings.connection.base_url, settings.bank_id, record.document_id),
            (marker, query, *_lookup_fingerprint(settings)),
        )
        return _Plan(call, query, key)

    def _reused(self, plan: _Plan) -> RecallResponse | ReflectResponse | None:
        """The lookup already made for the user message this call continues (an agent step, a retry)."""
        if plan.key is None:
            return None
        response = self.lookups.get(plan.key)
        if response is not None:
            plan.call.record.lookup_reused = True
        return response

    def _remember(self, plan: _Plan, response: RecallResponse | ReflectResponse | None) -> None:
        if plan.key is not None and response is not None:
            self.lookups.put(plan.key, response)

    def _fail(self, record: InjectionDebugInfo, settings: MemorySettings, error: Exception) -> None:
        """Fail open (record + rate-limited warning) or, in strict mode, raise."""
        record.error = f"{type(error).__name__}: {error}"
        if settings.strict:
            raise error
        self._warn.warning(
            f"memory:{type(error).__name__}",
            "Hindsight memory skipped for this call (bank %r): %s. The LLM call goes on without memory.",
            settings.bank_id,
            record.error,
        )

    def _apply(
        self, plan: _Plan, response: RecallResponse | ReflectResponse | None, started: float
    ) -> MemoryCall:
        call, settings, record = plan.call, plan.call.settings, plan.call.record
        render_started = time.perf_counter()
        if isinstance(response, ReflectResponse):
            facts = response.based_on.memories if response.based_on is not None else []
            record.reflect_text = response.text
            record.reflect_facts = [
                {"text": f.text, "type": f.type, "context": f.context, "id": f.id} for f in facts
            ]
            record.memories_found = len(facts)
            rendered = render_reflect(
                response.text,
                [Memory(f.text, f.type) for f in facts] if settings.reflect_include_facts else [],
                settings.max_memory_tokens,
            )
        elif isinstance(response, RecallResponse):
            record.recall_results = [
                {"text": r.text, "type": r.type, "context": r.context, "id": r.id} for r in response.results
            ]
            record.memories_found = len(response.results)
            rendered = render_recall(
                [Memory(r.text, r.type) for r in response.results],
                settings.max_memory_tokens,
                settings.max_memories,
            )
        else:
            rendered = None
        if rendered is not None:
            record.memories_used = rendered.used
            record.memories_dropped_by_budget = rendered.dropped_by_budget
            record.memories_dropped_by_limit = rendered.dropped_by_limit
            if rendered.text:
                call.messages = inject(call.original, rendered.text, settings.injection_mode)
                record.memory_context = rendered.text
                record.tokens_injected = rendered.tokens
                record.injected = True
                record.results_count = 1 if record.mode == "reflect" else rendered.used
            elif record.skipped_reason is None:
                record.skipped_reason = (
                    "no memories found" if not record.memories_found else "no memory fit the budget"
                )
        now = time.perf_counter()
        record.timings_ms["render"] = (now - render_started) * 1000
        record.timings_ms["total"] = (now - started) * 1000
        if settings.verbose:
            verbose_logger().info(
                "Hindsight %s for bank %r: %d found, %d injected (%d tokens)%s",
                record.mode,
                record.bank_id,
                record.memories_found,
                record.memories_used,
                record.tokens_injected,
                f":\n{record.memory_context}" if record.injected else "",
            )
        return call

    def _lookup_failed(self, plan: _Plan, error: Exception) -> None:
        if isinstance(error, NotFoundError) and plan.call.record.mode == "recall":
            plan.call.record.skipped_reason = NO_BANK_YET
            return
        if isinstance(error, APIConnectionError):
            # The server is down or too slow: spare the next calls the same wait for a little while.
            with self._pause_lock:
                self._paused_until[plan.call.settings.connection.base_url] = time.monotonic() + LOOKUP_PAUSE
        self._fail(plan.call.record, plan.call.settings, error)

    def _paused(self, plan: _Plan) -> bool:
        """Whether lookups to this server are paused after a recent connection failure (then fail open)."""
        url = plan.call.settings.connection.base_url
        until = self._paused_until.get(url)
        if until is None:
            return False
        remaining = until - time.monotonic()
        if remaining <= 0:
            with self._pause_lock:
                self._paused_until.pop(url, None)
            return False
        self._fail(
            plan.call.record,
            plan.call.settings,
            APIConnectionError(
                f"Hindsight at {url} could not be reached a moment ago; memory lookups to it are paused "
                f"for {remaining:.1f} s more",
                operation=plan.call.record.mode,
                url=url,
            ),
        )
        return True

    def _unprepared(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, error: Exception
    ) -> MemoryCall:
        """The call as the caller made it, after an unexpected failure inside memory (fail open)."""
        if settings.strict:
            raise error
        record = InjectionDebugInfo(mode=settings.mode, query=None, bank_id=settings.bank_id, model=model)
        set_last_debug(record)
        self._fail(record, settings, error)
        original = list(messages) if isinstance(messages, Sequence) else []
        return MemoryCall(
            messages=[dict(m) for m in original],
            original=original,
            settings=settings,
            record=record,
            model=model,
            store=False,
        )

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
            return self._prepare(messages, settings, model, turn)
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
            return await self._aprepare(messages, settings, model, turn)
        except Exception as exc:
            return self._unprepared(messages, settings, model, exc)

    def _prepare(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, turn: Hashable | None
    ) -> MemoryCall:
        started = time.perf_counter()
        plan = self._plan(messages, settings, model, turn)
        reused = self._reused(plan)
        if reused is not None or plan.query is None or self._paused(plan):
            return self._apply(plan, reused, started)
        response: RecallResponse | ReflectResponse | None = None
        lookup_started = time.perf_counter()
        try:
            client = sync_client(settings.connection)
            if settings.use_reflect:
                response = client.reflect(settings.bank_id or "", plan.query, **_reflect_options(settings))
            else:
                response = client.recall(settings.bank_id or "", plan.query, **_recall_options(settings))
        except Exception as exc:
            self._lookup_failed(plan, exc)
        plan.call.record.timings_ms[settings.mode] = (time.perf_counter() - lookup_started) * 1000
        self._remember(plan, response)
        return self._apply(plan, response, started)

    async def _aprepare(
        self, messages: Sequence[Message], settings: MemorySettings, model: str | None, turn: Hashable | None
    ) -> MemoryCall:
        started = time.perf_counter()
        plan = self._plan(messages, settings, model, turn)
        reused = self._reused(plan)
        if reused is not None or plan.query is None or self._paused(plan):
            return self._apply(plan, reused, started)
        response: RecallResponse | ReflectResponse | None = None
        lookup_started = time.perf_counter()
        try:
            client = async_client(settings.connection)
            if settings.use_reflect:
                response = await client.reflect(
                    settings.bank_id or "", plan.query, **_reflect_options(settings)
                )
            else:
                response = await client.recall(
                    settings.bank_id or "", plan.query, **_recall_options(settings)
                )
        except Exception as exc:
            self._lookup_failed(plan, exc)
        plan.call.record.timings_ms[settings.mode] = (time.perf_counter() - lookup_started) * 1000
        self._remember(plan, response)
        return self._apply(plan, response, started)

    # -------------------------------------------------------------------------------------------- storage

    def _storage_call(
        self,
        messages: Sequence[Message],
        settings: MemorySettings,
        model: str | None,
        record: InjectionDebugInfo | None,
    ) -> MemoryCall:
        original = list(messages)
        if record is None:
            record = InjectionDebugInfo(
                mode=settings.mode,
                query=None,
                bank_id=settings.bank_id,
                model=model,
                skipped_reason="storage only",
            )
        store = settings.store_conversations and bool(settings.bank_id) and not settings.is_excluded(model)
        if settings.bank_id:
            record.document_id = conversation_document_id(settings, original)
        return MemoryCall(
            messages=[], original=original, settings=settings, record=record, model=model, store=store
        )

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
        call = self._storage_call(messages, settings, model, record)
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
        call = self._storage_call(messages, settings, model, record)
        await self.afinish(call, reply)
        return call.record

    def _turn(self, call: MemoryCall, reply: Message | str | None) -> Turn | None:
        record = call.record
        if call.finished:
            return None
        call.finished = True
        if not call.store:
            record.storage_status = "skipped"
            record.storage_reason = record.storage_reason or "storage is off for this call"
            return None
        if not completes_turn(reply):
            record.storage_status = "skipped"
            record.storage_reason = (
                "an agent step (the reply calls tools): the turn is stored with its answer"
            )
            return None
        text = transcript(call.original, reply)
        if not text:
            record.storage_status = "skipped"
            record.storage_reason = "nothing to store"
            return None
        context = f"conversation with an AI assistant{f' ({call.model})' if call.model else ''}"
        return self._make_turn(call, text, context)

    def _make_turn(self, call: MemoryCall, text: str, context: str | None) -> Turn:
        settings = call.settings
        metadata = {"source": self.source}
        if call.model:
            metadata["model"] = call.model
        if settings.session_id:
            metadata["session_id"] = settings.session_id
        return Turn(
            connection=settings.connection,
            bank_id=settings.bank_id or "",
            document_id=call.record.document_id or conversation_document_id(settings, call.original),
            content=text,
            context=context,
            tags=settings.tags,
            metadata=metadata,
        )

    def _submit(self, call: MemoryCall, turn: Turn) -> None:
        record = call.record

        def done(result: StorageResult) -> None:
            record.storage_status = result.status
            record.storage_error = result.error

        record.storage_status = "queued"
        self.storage.submit(turn, on_done=done)

    def finish(self, call: MemoryCall, reply: Message | str | None, *, wait: bool | None = None) -> None:
        """Queue the exchange for storage (once per call; later calls are no-ops). Waits for the server only
        with ``wait=True``, or by default when ``sync_storage`` is set."""
        turn = self._turn(call, reply)
        if turn is None:
            return
        self._submit(call, turn)
        if call.settings.sync_storage if wait is None else wait:
            self.storage.flush(timeout=call.settings.retain_timeout)
            self._raise_if_not_stored(call)

    async def afinish(self, call: MemoryCall, reply: Message | str | None) -> None:
        """:meth:`finish` for asyncio (the optional wait does not block the event loop)."""
        turn = self._turn(call, reply)
        if turn is None:
            return
        self._submit(call, turn)
        if call.settings.sync_storage:
            await self.storage.aflush(timeout=call.settings.retain_timeout)
            self._raise_if_not_stored(call)

    @staticmethod
    def _raise_if_not_stored(call: MemoryCall) -> None:
        """With ``sync_storage`` and ``strict``, a turn the server did not take is an error (as
        ``sync_storage`` raised in hindsight-litellm 0.5.4); without ``strict`` it is reported, not raised."""
        record = call.record
        if not call.settings.strict or record.storage_status in ("stored", "skipped"):
            return
        reason = record.storage_error or f"not acknowledged within {call.settings.retain_timeout:g} s"
        raise StorageError(
            f"the conversation could not be stored in bank {call.settings.bank_id!r} "
            f"({record.storage_status}): {reason}",
            failure=None,
            permanent=record.storage_status == "failed",
        )

    def _note(
        self, text: str, settings: MemorySettings, messages: Sequence[Message], context: str | None
    ) -> tuple[MemoryCall, Turn | None]:
        call = self._storage_call(messages, settings, None, None)
        call.record.skipped_reason = None
        if not settings.bank_id:
            call.record.storage_status = "skipped"
            self._fail(call.record, settings, ConfigurationError("no bank_id configured: nothing is stored"))
            return call, None
        if not text.strip():
            call.record.storage_status = "skipped"
            return call, None
        turn = self._make_turn(call, text, context)
        self._submit(call, turn)
        return call, turn

    def _noted(self, call: MemoryCall, done: bool) -> InjectionDebugInfo:
        """After waiting for a note: anything but "stored" fails open (or raises, in strict mode)."""
        record = call.record
        if record.storage_status != "stored":
            detail = record.storage_error or ("not stored in time" if not done else record.storage_status)
            self._fail(
                record,
                call.settings,
                StorageError(
                    f"could not store in bank {call.settings.bank_id!r}: {detail}",
                    failure=None,
                    permanent=record.storage_status == "failed",
                ),
            )
        return record

    def remember(
        self,
        text: str,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
        context: str | None = None,
    ) -> InjectionDebugInfo:
        """Queue ``text`` for storage as it is (not a transcript: e.g. a fact an agent chose to keep) in the
        document of the conversation ``messages`` belong to (see :func:`conversation_document_id`), with the
        settings' tags. Stored whatever ``store_conversations`` says (that switch is about transcripts).

        Returns at once, unless ``sync_storage`` is set: then it waits, and a note that could not be stored
        is a memory failure (recorded and warned about; raised in strict mode). The returned record tracks
        the storage status."""
        call, turn = self._note(text, settings, messages, context)
        if turn is None or not settings.sync_storage:
            return call.record
        return self._noted(call, self.storage.flush(timeout=settings.retain_timeout))

    async def aremember(
        self,
        text: str,
        settings: MemorySettings,
        *,
        messages: Sequence[Message] = (),
        context: str | None = None,
    ) -> InjectionDebugInfo:
        """:meth:`remember` for asyncio (the optional wait does not block the event loop)."""
        call, turn = self._note(text, settings, messages, context)
        if turn is None or not settings.sync_storage:
            return call.record
        return self._noted(call, await self.storage.aflush(timeout=settings.retain_timeout))

    # ----------------------------------------------------------------------------------------------- bank

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
            self._fail_bank(settings, exc)
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
            self._fail_bank(settings, exc)
            return False
        return True

    def _fail_bank(self, settings: MemorySettings, error: HindsightError) -> None:
        if settings.strict:
            raise error
        self._warn.warning(
            "bank", "Could not create or update Hindsight bank %r: %s", settings.bank_id, f"{error}"
        )


def _lookup_fingerprint(settings: MemorySettings) -> tuple[Any, ...]:
    """Everything the lookup's answer depends on besides the query (hashable)."""
    options = _reflect_options(settings) if settings.use_reflect else _recall_options(settings)
    schema = options.get("response_schema")
    if schema is not None:
        options["response_schema"] = json.dumps(schema, sort_keys=True, default=str)
    return (settings.mode, *sorted(options.items()))


def _recall_options(settings: MemorySettings) -> dict[str, Any]:
    return {
        "budget": settings.budget,
        "max_tokens": settings.max_memory_tokens,
        "types": settings.server_fact_types,
        "tags": settings.recall_tags,
        "tags_match": settings.recall_tags_match if settings.recall_tags else None,
        "include_entities": settings.include_entities,
        "trace": settings.trace or None,
    }


def _reflect_options(settings: MemorySettings) -> dict[str, Any]:
    return {
        "budget": settings.budget,
        "context": settings.reflect_context,
        "max_tokens": settings.max_memory_tokens,
        "response_schema": settings.reflect_response_schema,
        "include_facts": settings.reflect_include_facts,
        "tags": settings.recall_tags,
        "tags_match": settings.recall_tags_match if settings.recall_tags else None,
        "fact_types": settings.server_fact_types,
    }
