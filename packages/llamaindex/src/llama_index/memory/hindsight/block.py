"""``HindsightMemoryBlock``: Hindsight long-term memory as a block of LlamaIndex's ``Memory``."""

from __future__ import annotations

import threading
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_serializer, field_validator
from llama_index.core.memory.memory import BaseMemoryBlock

from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.warmup import warm_up

from ._core import PIPELINE, check_options, core_options, hide_api_key, resolve
from ._messages import TurnTracker, last_user_message, to_core_message

__all__ = ["HindsightMemoryBlock"]

_STATE_LOCK = threading.Lock()
"""Guards the small per-memory state (turn tracking, the turn's lookup); held for microseconds, never
across I/O. Module-level, so that memories stay picklable."""


class HindsightMemoryBlock(BaseMemoryBlock[str]):
    """Recalls memories from a Hindsight bank into ``Memory``'s memory template, and stores the turns
    ``Memory`` flushes out of its short-term queue.

    Limitation: LlamaIndex's ``Memory`` hands a block only the messages it *flushes* out of its short-term
    queue (when the queue passes ``token_limit * chat_history_token_ratio``). A turn is therefore stored
    when it leaves the queue, not when it completes, and the turns still in the queue when the ``Memory``
    is dropped are never stored. Use :class:`~llama_index.memory.hindsight.HindsightMemory` to store
    every turn as it completes.

    ``bank_id`` (else ``HINDSIGHT_BANK_ID``) names the bank. The document a conversation is stored under
    is ``session_id``, else the ``Memory``'s own ``session_id``. Other ``hindsight_core`` settings go in
    ``options`` (``budget``, ``max_memory_tokens``, ``hindsight_api_url``, ...). ``priority`` 0 (the
    default) means ``Memory`` never truncates the block; its size is bounded by ``max_memory_tokens``.
    """

    name: str = Field(default="hindsight", description="The name of the memory block.")
    description: str | None = Field(
        default="Long-term memories about the user and earlier conversations, recalled from Hindsight.",
        description="A description of the memory block.",
    )
    bank_id: str | None = None
    session_id: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    _trackers: dict[str, TurnTracker] = PrivateAttr(default_factory=dict)
    _core: dict[str, Any] = PrivateAttr(default_factory=dict)
    _last_record: InjectionDebugInfo | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        core = core_options(self.bank_id, self.session_id, self.options)
        check_options(core)
        self._core = core
        warm_up()

    @field_validator("options")
    @classmethod
    def _hide_api_key(cls, options: dict[str, Any]) -> dict[str, Any]:
        return hide_api_key(options)

    @field_serializer("options")
    def _serialize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in options.items() if key != "api_key"}

    @property
    def last_debug(self) -> InjectionDebugInfo | None:
        """What memory did on the last ``aget`` (query, memories used, error...)."""
        return self._last_record

    def _document(self, session_id: Any) -> dict[str, Any]:
        """Settings overrides naming the document: explicit, else the ``Memory`` session."""
        return {"document_id": str(session_id)} if session_id else {}

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        """The memory block text for the last user message in ``messages`` ("" when nothing to add)."""
        last = last_user_message(messages or [])
        settings = resolve(self._core)
        if not settings.effective_document_id:
            settings = settings.model_copy(update=self._document(block_kwargs.get("session_id")))
        query = [to_core_message(last)] if last is not None else []
        call = await PIPELINE.aprepare(query, settings)
        self._last_record = call.record
        return call.record.memory_context if call.record.injected else ""

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Store the completed turns among the messages ``Memory`` flushed out of its queue."""
        if not messages:
            return
        session = messages[0].additional_kwargs.get("session_id")
        with _STATE_LOCK:
            tracker = self._trackers.setdefault(str(session or ""), TurnTracker())
            turns = tracker.add_all(messages)
        if not turns:
            return
        settings = resolve(self._core)
        if not settings.effective_document_id:
            settings = settings.model_copy(update=self._document(session))
        for turn in turns:
            await PIPELINE.astore([to_core_message(m) for m in turn.user], turn.answer, settings)
