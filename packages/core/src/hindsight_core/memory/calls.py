"""What the read and the write path share: the call going through memory, the conversation's document,
and the failure policy (fail open, visibly; raise in strict mode)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._logging import RateLimitedLog
from ..debug import InjectionDebugInfo
from ..pipeline import Message, content_text
from ..settings import MemorySettings

__all__ = ["NO_BANK_YET", "FailOpen", "MemoryCall", "conversation_document_id"]

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


def conversation_document_id(settings: MemorySettings, messages: Sequence[Message]) -> str:
    """The document a conversation is stored under.

    ``session_id`` (or the deprecated ``document_id``); else an id derived from the conversation's first
    user message, which stays the same as the conversation grows, so its turns land in one document
    without the application naming it.
    """
    explicit = settings.effective_document_id
    if explicit:
        return explicit
    first = next((m for m in messages if m.get("role") == "user"), None)
    seed = content_text(first.get("content")) if first is not None else ""
    digest = hashlib.sha256(f"{settings.bank_id}\x00{seed}".encode()).hexdigest()[:20]
    return f"conversation-{digest}"


class FailOpen:
    """A memory failure never fails the LLM call: it goes in the debug record and in a WARNING (at most
    one per minute per kind, counting those held back). In strict mode it is raised instead."""

    def __init__(self, source: str) -> None:
        self.limiter = RateLimitedLog(logging.getLogger(f"hindsight_core.{source}"), interval=60.0)

    def __call__(self, record: InjectionDebugInfo, settings: MemorySettings, error: Exception) -> None:
        record.error = f"{type(error).__name__}: {error}"
        if settings.strict:
            raise error
        self.limiter.warning(
            f"memory:{type(error).__name__}",
            "Hindsight memory skipped for this call (bank %r): %s. The LLM call goes on without memory.",
            settings.bank_id,
            record.error,
        )

    def bank(self, settings: MemorySettings, error: Exception) -> None:
        """A bank could not be created or updated (mission, name)."""
        if settings.strict:
            raise error
        self.limiter.warning(
            "bank", "Could not create or update Hindsight bank %r: %s", settings.bank_id, error
        )

    def reset(self) -> None:
        """Forget which warnings were given (tests)."""
        self.limiter.reset()
