"""Debug records: what memory did for one call, and the last record of the current thread or task.

A record is made for every call that goes through the memory pipeline, memory used or not, so "why did
my prompt get no memories?" always has an answer (``skipped_reason``, ``error``). The last one is kept
in a ``ContextVar``: each thread and each asyncio task sees its own, never another user's.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "InjectionDebugInfo",
    "StorageStatus",
    "clear_last_debug",
    "get_last_debug",
    "set_last_debug",
]

StorageStatus = Literal["not stored", "queued", "stored", "deferred", "failed", "skipped"]
"""``deferred``: not sent when the process ended, kept in the on-disk outbox for the next run."""


@dataclass
class InjectionDebugInfo:
    """What memory did for one LLM call.

    The first fields are those of hindsight-litellm 0.5.4's record (``mode``, ``query``, ``bank_id``,
    ``memory_context``, ``reflect_text``, ``reflect_facts``, ``recall_results``, ``results_count``,
    ``injected``, ``error``); the rest say how the block was budgeted, how long it took, and what
    happened to the conversation's storage (updated from the storage worker when it finishes).
    """

    mode: Literal["recall", "reflect"]
    query: str | None
    bank_id: str | None
    memory_context: str = ""
    reflect_text: str | None = None
    reflect_facts: list[dict[str, Any]] | None = None
    """The facts reflect used, as dicts (``text``, ``type``, ``context``, ``id``), as 0.5.4 gave them."""
    recall_results: list[dict[str, Any]] | None = None
    """The recalled memories, best first, as dicts (``text``, ``type``, ``context``, ``id``, and the server's
    relevance ``scores``), as 0.5.4 gave them."""
    results_count: int = 0
    """As in 0.5.4: the memories injected (recall), or 1 when a reflect answer was injected."""
    injected: bool = False
    error: str | None = None

    model: str | None = None
    document_id: str | None = None
    injection_mode: str | None = None
    skipped_reason: str | None = None
    memories_found: int = 0
    memories_used: int = 0
    memories_dropped_by_budget: int = 0
    memories_dropped_by_limit: int = 0
    tokens_injected: int = 0
    fallback: str | None = None
    """Set when reflect failed or was too slow and recalled memories were injected instead (why)."""
    lookup_reused: bool = False
    """True when this call continued a user message whose lookup was already made (an agent step, a
    retry): its memories were reused, not recalled again."""
    max_memory_tokens: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    storage_status: StorageStatus = "not stored"
    storage_error: str | None = None
    storage_reason: str | None = None
    """Why the call stored nothing (``storage_status`` ``skipped``): e.g. a step of an agent turn."""
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (results as their text and type)."""
        return {
            "mode": self.mode,
            "query": self.query,
            "bank_id": self.bank_id,
            "document_id": self.document_id,
            "model": self.model,
            "injected": self.injected,
            "injection_mode": self.injection_mode,
            "results_count": self.results_count,
            "memories_found": self.memories_found,
            "memories_used": self.memories_used,
            "memories_dropped_by_budget": self.memories_dropped_by_budget,
            "memories_dropped_by_limit": self.memories_dropped_by_limit,
            "tokens_injected": self.tokens_injected,
            "lookup_reused": self.lookup_reused,
            "fallback": self.fallback,
            "max_memory_tokens": self.max_memory_tokens,
            "memory_context": self.memory_context,
            "reflect_text": self.reflect_text,
            "error": self.error,
            "skipped_reason": self.skipped_reason,
            "timings_ms": dict(self.timings_ms),
            "storage_status": self.storage_status,
            "storage_error": self.storage_error,
            "storage_reason": self.storage_reason,
            "created_at": self.created_at.isoformat(),
        }


_last: contextvars.ContextVar[InjectionDebugInfo | None] = contextvars.ContextVar(
    "hindsight_last_debug", default=None
)


def set_last_debug(record: InjectionDebugInfo) -> None:
    _last.set(record)


def get_last_debug() -> InjectionDebugInfo | None:
    """The record of the last call made by the current thread or asyncio task, if any."""
    return _last.get()


def clear_last_debug() -> None:
    _last.set(None)
