"""Direct memory APIs: ``recall``, ``reflect``, ``retain`` and their async twins.

They use the configured settings (``configure()``, ``set_defaults()``, ``hindsight_memory()``) with the
arguments given on top, call the server through the core's shared clients, and return the result types
of hindsight-litellm 0.5.4. Unlike memory injection, which fails open, these raise on failure: you asked
for this call, so you get its error (a :class:`~hindsight_core.HindsightError`). Without a configuration
or a bank they raise :class:`~hindsight_core.NotConfiguredError` (a ``RuntimeError``, as in 0.5.4). The
``debug`` of each result is filled when ``verbose`` is set, as in 0.5.4.
"""

from __future__ import annotations

from typing import Any

from hindsight_core import NotConfiguredError
from hindsight_core import (
    RecallResponse as CoreRecallResponse,
)
from hindsight_core import (
    ReflectResponse as CoreReflect,
)
from hindsight_core.connection import async_client, sync_client
from hindsight_core.settings import MemorySettings

from .config import LAYERS, PIPELINE
from .results import (
    RecallDebugInfo,
    RecallResponse,
    RecallResult,
    ReflectDebugInfo,
    ReflectResult,
    RetainDebugInfo,
    RetainResult,
)

__all__ = [
    "RecallDebugInfo",
    "RecallResponse",
    "RecallResult",
    "ReflectDebugInfo",
    "ReflectResult",
    "RetainDebugInfo",
    "RetainResult",
    "arecall",
    "areflect",
    "aretain",
    "recall",
    "reflect",
    "retain",
]


def _settings(overrides: dict[str, Any]) -> tuple[MemorySettings, str]:
    settings = LAYERS.resolve({key: value for key, value in overrides.items() if value is not None})
    if not settings.bank_id:
        raise NotConfiguredError(
            "Hindsight not configured: call configure() (with bank_id, or set_defaults(bank_id=...)) or pass "
            "bank_id=... (or set HINDSIGHT_BANK_ID)"
        )
    return settings, settings.bank_id


def _recall_args(
    query: str,
    bank_id: str | None,
    fact_types: list[str] | None,
    budget: str | None,
    max_tokens: int | None,
    hindsight_api_url: str | None,
    include_entities: bool | None,
    trace: bool | None,
    recall_tags: list[str] | None,
    recall_tags_match: str | None,
) -> tuple[MemorySettings, str, dict[str, Any]]:
    settings, bank = _settings(
        {
            "bank_id": bank_id,
            "fact_types": fact_types,
            "budget": budget,
            "hindsight_api_url": hindsight_api_url,
            "include_entities": include_entities,
            "trace": trace,
            "recall_tags": recall_tags,
            "recall_tags_match": recall_tags_match,
        }
    )
    arguments = {
        "budget": settings.budget,
        "max_tokens": max_tokens or settings.max_memory_tokens,
        "types": settings.server_fact_types,
        "tags": settings.recall_tags,
        "tags_match": settings.recall_tags_match if settings.recall_tags else None,
        "include_entities": settings.include_entities,
        "trace": settings.trace or None,
    }
    return settings, bank, arguments


def _recall_result(
    response: CoreRecallResponse, query: str, bank: str, settings: MemorySettings, max_tokens: int | None
) -> RecallResponse:
    results = [
        RecallResult(
            text=r.text,
            fact_type=r.type or "world",
            weight=float((r.scores or {}).get("final") or 1.0),
            metadata=dict(r.metadata) if r.metadata else None,
        )
        for r in response.results
    ]
    debug = (
        RecallDebugInfo(
            query=query,
            bank_id=bank,
            budget=settings.budget,
            max_tokens=max_tokens or settings.max_memory_tokens,
            fact_types=list(settings.fact_types) if settings.fact_types else None,
            results_count=len(results),
            api_url=settings.connection.base_url,
        )
        if settings.verbose
        else None
    )
    return RecallResponse(results=results, debug=debug)


def recall(
    query: str,
    bank_id: str | None = None,
    fact_types: list[str] | None = None,
    budget: str | None = None,
    max_tokens: int | None = None,
    hindsight_api_url: str | None = None,
    include_entities: bool | None = None,
    trace: bool | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str | None = None,
) -> RecallResponse:
    """Memories relevant to ``query``, best first: ``for m in recall(...): print(m.fact_type, m.text)``."""
    settings, bank, arguments = _recall_args(
        query,
        bank_id,
        fact_types,
        budget,
        max_tokens,
        hindsight_api_url,
        include_entities,
        trace,
        recall_tags,
        recall_tags_match,
    )
    response = sync_client(settings.connection).recall(bank, query, **arguments)
    return _recall_result(response, query, bank, settings, max_tokens)


async def arecall(
    query: str,
    bank_id: str | None = None,
    fact_types: list[str] | None = None,
    budget: str | None = None,
    max_tokens: int | None = None,
    hindsight_api_url: str | None = None,
    include_entities: bool | None = None,
    trace: bool | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str | None = None,
) -> RecallResponse:
    """:func:`recall` for asyncio."""
    settings, bank, arguments = _recall_args(
        query,
        bank_id,
        fact_types,
        budget,
        max_tokens,
        hindsight_api_url,
        include_entities,
        trace,
        recall_tags,
        recall_tags_match,
    )
    response = await async_client(settings.connection).recall(bank, query, **arguments)
    return _recall_result(response, query, bank, settings, max_tokens)


def _reflect_args(
    bank_id: str | None,
    budget: str | None,
    context: str | None,
    response_schema: dict[str, Any] | None,
    hindsight_api_url: str | None,
    recall_tags: list[str] | None,
    recall_tags_match: str | None,
    include_facts: bool | None,
) -> tuple[MemorySettings, str, dict[str, Any]]:
    settings, bank = _settings(
        {
            "bank_id": bank_id,
            "budget": budget,
            "reflect_context": context,
            "reflect_response_schema": response_schema,
            "hindsight_api_url": hindsight_api_url,
            "recall_tags": recall_tags,
            "recall_tags_match": recall_tags_match,
            "reflect_include_facts": include_facts,
        }
    )
    arguments = {
        "budget": settings.budget,
        "context": settings.reflect_context,
        "response_schema": settings.reflect_response_schema,
        "include_facts": settings.reflect_include_facts,
        "tags": settings.recall_tags,
        "tags_match": settings.recall_tags_match if settings.recall_tags else None,
        "fact_types": settings.server_fact_types,
    }
    return settings, bank, arguments


def _reflect_result(response: CoreReflect, query: str, bank: str, settings: MemorySettings) -> ReflectResult:
    debug = (
        ReflectDebugInfo(
            query=query,
            bank_id=bank,
            budget=settings.budget,
            context=settings.reflect_context,
            api_url=settings.connection.base_url,
        )
        if settings.verbose
        else None
    )
    based_on = list(response.based_on.memories) if response.based_on is not None else None
    return ReflectResult(
        text=response.text, based_on=based_on, debug=debug, structured_output=response.structured_output
    )


def reflect(
    query: str,
    bank_id: str | None = None,
    budget: str | None = None,
    context: str | None = None,
    response_schema: dict[str, Any] | None = None,
    hindsight_api_url: str | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str | None = None,
    include_facts: bool | None = None,
) -> ReflectResult:
    """An answer to ``query`` synthesized from the bank's memories (``result.text``)."""
    settings, bank, arguments = _reflect_args(
        bank_id,
        budget,
        context,
        response_schema,
        hindsight_api_url,
        recall_tags,
        recall_tags_match,
        include_facts,
    )
    response = sync_client(settings.connection).reflect(bank, query, **arguments)
    return _reflect_result(response, query, bank, settings)


async def areflect(
    query: str,
    bank_id: str | None = None,
    budget: str | None = None,
    context: str | None = None,
    response_schema: dict[str, Any] | None = None,
    hindsight_api_url: str | None = None,
    recall_tags: list[str] | None = None,
    recall_tags_match: str | None = None,
    include_facts: bool | None = None,
) -> ReflectResult:
    """:func:`reflect` for asyncio."""
    settings, bank, arguments = _reflect_args(
        bank_id,
        budget,
        context,
        response_schema,
        hindsight_api_url,
        recall_tags,
        recall_tags_match,
        include_facts,
    )
    response = await async_client(settings.connection).reflect(bank, query, **arguments)
    return _reflect_result(response, query, bank, settings)


def _retain_args(
    content: str,
    bank_id: str | None,
    context: str | None,
    document_id: str | None,
    tags: list[str] | None,
    metadata: dict[str, str] | None,
    hindsight_api_url: str | None,
    sync: bool,
) -> tuple[MemorySettings, str, dict[str, Any], RetainDebugInfo | None]:
    settings, bank = _settings({"bank_id": bank_id, "tags": tags, "hindsight_api_url": hindsight_api_url})
    arguments = {
        "context": context,
        "document_id": document_id,
        "tags": settings.tags,
        "metadata": metadata,
        "async_": not sync,
    }
    debug = (
        RetainDebugInfo(
            content=content,
            bank_id=bank,
            context=context,
            document_id=document_id,
            tags=list(settings.tags) if settings.tags else None,
            metadata=metadata,
            api_url=settings.connection.base_url,
        )
        if settings.verbose
        else None
    )
    return settings, bank, arguments, debug


def retain(
    content: str,
    bank_id: str | None = None,
    context: str | None = None,
    document_id: str | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    hindsight_api_url: str | None = None,
    sync: bool = False,
) -> RetainResult:
    """Store ``content`` in the bank (in ``document_id``, replacing what that document held, else in a
    document of its own).

    By default (``sync=False``), as in 0.5.4, this returns at once with ``success=True``: the content is
    handed to the background storage worker, which sends it, retries through outages and reports what it
    could not store in ``get_pending_retain_errors()``. ``sync=True`` sends it now and waits until the
    server has extracted its memories; a failure raises."""
    settings, bank, arguments, debug = _retain_args(
        content, bank_id, context, document_id, tags, metadata, hindsight_api_url, sync
    )
    if not sync:
        return _queued(content, settings, context, document_id, metadata, debug)
    response = sync_client(settings.connection).retain(bank, content, **arguments)
    return RetainResult(success=response.success, items_count=response.items_count, debug=debug)


def _queued(
    content: str,
    settings: MemorySettings,
    context: str | None,
    document_id: str | None,
    metadata: dict[str, str] | None,
    debug: RetainDebugInfo | None,
) -> RetainResult:
    PIPELINE.queue_retain(content, settings, context=context, document_id=document_id, metadata=metadata)
    return RetainResult(success=True, items_count=0, debug=debug)


async def aretain(
    content: str,
    bank_id: str | None = None,
    context: str | None = None,
    document_id: str | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    hindsight_api_url: str | None = None,
    sync: bool = False,
) -> RetainResult:
    """:func:`retain` for asyncio."""
    settings, bank, arguments, debug = _retain_args(
        content, bank_id, context, document_id, tags, metadata, hindsight_api_url, sync
    )
    if not sync:
        return _queued(content, settings, context, document_id, metadata, debug)
    response = await async_client(settings.connection).retain(bank, content, **arguments)
    return RetainResult(success=response.success, items_count=response.items_count, debug=debug)
