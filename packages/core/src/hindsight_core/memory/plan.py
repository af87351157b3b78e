"""The pure steps around a memory lookup: what to look up (and under which key it can be reused), and what
to inject once the answer is in. No I/O here; :mod:`.lookup` does the one request in between."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from .._logging import verbose_logger
from ..debug import InjectionDebugInfo, set_last_debug
from ..errors import ConfigurationError
from ..lookups import LookupKey, user_message_marker
from ..models import RecallResponse, ReflectResponse
from ..pipeline import Memory, Message, extract_query, inject, render_recall, render_reflect
from ..settings import MemorySettings
from .calls import MemoryCall, conversation_document_id

__all__ = ["Plan", "apply_response", "plan_call", "recall_options", "reflect_options"]

Response = RecallResponse | ReflectResponse
Fail = Callable[[InjectionDebugInfo, MemorySettings, Exception], None]


@dataclass(frozen=True)
class Plan:
    call: MemoryCall
    query: str | None  # None: no memory lookup for this call
    key: LookupKey | None = None  # the lookup's key in the pipeline's LookupCache (None: not reusable)


def plan_call(
    messages: Sequence[Message],
    settings: MemorySettings,
    model: str | None,
    turn: Hashable | None,
    fail: Fail,
) -> Plan:
    """The call (not injected yet, its record made the thread's last one) and what to look up for it."""
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
        return Plan(call, None)
    if not settings.bank_id:
        call.store = False
        fail(record, settings, ConfigurationError("no bank_id configured: memory is skipped for this call"))
        return Plan(call, None)
    record.document_id = conversation_document_id(settings, original)
    if not settings.inject_memories:
        record.skipped_reason = "inject_memories is off"
        return Plan(call, None)
    query = extract_query(original, settings.query)
    record.query = query
    if query is None:
        record.skipped_reason = "no user text to look up memories for"
        return Plan(call, None)
    marker = turn if turn is not None else user_message_marker(original)
    if marker is None:  # no user message to continue (e.g. an agent's memory tool): nothing to reuse
        return Plan(call, query)
    key = LookupKey(
        (settings.connection.base_url, settings.bank_id, record.document_id),
        (marker, query, *_fingerprint(settings)),
    )
    return Plan(call, query, key)


def apply_response(plan: Plan, response: Response | None, started: float) -> MemoryCall:
    """Render ``response`` within the budget, inject it into a copy of the caller's messages, fill the
    record (what was found, used, dropped; timings)."""
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
        record.mode = "recall"  # also when reflect fell back to recall
        record.recall_results = [
            {"text": r.text, "type": r.type, "context": r.context, "id": r.id, "scores": r.scores}
            for r in response.results
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


def _fingerprint(settings: MemorySettings) -> tuple[Any, ...]:
    """Everything the lookup's answer depends on besides the query (hashable)."""
    options = reflect_options(settings) if settings.use_reflect else recall_options(settings)
    schema = options.get("response_schema")
    if schema is not None:
        options["response_schema"] = json.dumps(schema, sort_keys=True, default=str)
    return (settings.mode, *sorted(options.items()))


def recall_options(settings: MemorySettings) -> dict[str, Any]:
    return {
        "budget": settings.budget,
        "max_tokens": settings.max_memory_tokens,
        "types": settings.server_fact_types,
        "tags": settings.recall_tags,
        "tags_match": settings.recall_tags_match if settings.recall_tags else None,
        "include_entities": settings.include_entities,
        "trace": settings.trace or None,
    }


def reflect_options(settings: MemorySettings) -> dict[str, Any]:
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
