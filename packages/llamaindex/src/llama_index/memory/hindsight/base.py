"""``HindsightMemory``: LlamaIndex's chat-memory buffer plus long-term memory from a Hindsight server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_serializer, field_validator
from llama_index.core.llms.llm import LLM
from llama_index.core.memory.chat_memory_buffer import (
    DEFAULT_TOKEN_LIMIT,
    DEFAULT_TOKEN_LIMIT_RATIO,
    ChatMemoryBuffer,
)
from llama_index.core.memory.memory import InsertMethod
from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY, BaseChatStoreMemory
from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore
from llama_index.core.utils import get_tokenizer

from hindsight_core import ConfigurationError
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.memory import MemoryCall, conversation_document_id
from hindsight_core.pipeline import InjectionMode, content_text
from hindsight_core.settings import MemorySettings
from hindsight_core.warmup import warm_up

from ._core import PIPELINE, check_options, core_options, hide_api_key, resolve
from ._messages import (
    CompletedTurn,
    TurnTracker,
    first_user_message,
    injection_mode,
    insert_memory,
    last_user_message,
    to_core_message,
)

__all__ = ["DEFAULT_CHAT_HISTORY_TOKEN_RATIO", "HindsightMemory"]

DEFAULT_CHAT_HISTORY_TOKEN_RATIO = 0.7
"""Share of the token limit (after the engine's own prefix) kept for chat history; the memory block gets
at most the rest, and at most ``max_memory_tokens``. Same meaning as in LlamaIndex's ``Memory``."""

_HISTORY_KEY = "history"

_STATE_LOCK = threading.Lock()
"""Guards the small per-memory state (turn tracking, the turn's lookup); held for microseconds, never
across I/O. Module-level, so that memories stay picklable."""


@dataclass(frozen=True)
class _Lookup:
    """What one ``get`` asks memory: the query message, the settings, and which user message of the
    conversation it is for (``turn``: the core reuses a lookup for the same turn, e.g. an agent's steps)."""

    query: tuple[dict[str, Any], ...]
    settings: MemorySettings
    turn: tuple[int, str]


class HindsightMemory(BaseChatStoreMemory):
    """A chat-memory buffer whose ``get`` also brings back what Hindsight remembers.

    Short-term: the conversation, kept in ``chat_store`` (LlamaIndex's ``SimpleChatStore`` by default, or
    any ``BaseChatStore``) and cut to ``token_limit`` by LlamaIndex's own ``ChatMemoryBuffer`` logic and
    ``tokenizer_fn``. Long-term: on ``get``/``aget``, memories relevant to ``input`` (or to the last user
    message) are recalled from the Hindsight bank, rendered within budget by ``hindsight_core`` and put in
    the system message (``insert_method=InsertMethod.SYSTEM``) or next to the user's question (``USER``:
    before it; after it with ``injection_mode="append_user"``, which keeps the most of the prompt a
    cacheable prefix).
    When a turn completes (a user message, then the final assistant answer), it is handed to the core's
    background storage: once, without tool traffic or ReAct reasoning, never blocking the call.

    Use it in any ``memory=`` slot (chat engines, ``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``).
    Build it with :meth:`from_defaults`. Memory failures never fail the call unless ``strict=True``:
    :attr:`last_debug` says what happened.
    """

    token_limit: int = Field(default=DEFAULT_TOKEN_LIMIT, gt=0)
    tokenizer_fn: Callable[[str], list[Any]] = Field(default_factory=get_tokenizer, exclude=True)
    chat_history_token_ratio: float = Field(default=DEFAULT_CHAT_HISTORY_TOKEN_RATIO, ge=0.0, le=1.0)
    insert_method: InsertMethod = InsertMethod.SYSTEM
    bank_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Other ``hindsight_core`` settings (``budget``, ``max_memory_tokens``, ``hindsight_api_url``, ...)."""

    _after_question: bool = PrivateAttr(default=False)  # USER: the block after the question (append_user)
    _tracker: TurnTracker = PrivateAttr(default_factory=TurnTracker)
    _turn_call: MemoryCall | None = PrivateAttr(default=None)
    _document_id: str | None = PrivateAttr(default=None)
    _last_record: InjectionDebugInfo | None = PrivateAttr(default=None)
    _core: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        options = dict(self.options)
        mode = options.get("injection_mode")
        if mode is not None:
            wanted = check_options({"injection_mode": mode})["injection_mode"]
            on_system = injection_mode(self.insert_method) is InjectionMode.SYSTEM_MESSAGE
            if "insert_method" in data and on_system != (wanted is InjectionMode.SYSTEM_MESSAGE):
                raise ConfigurationError(
                    f"insert_method={self.insert_method} and injection_mode={mode!r} disagree; "
                    "set insert_method only"
                )
            self.insert_method = (  # both user-side modes are LlamaIndex's USER (next to the question)
                InsertMethod.SYSTEM if wanted is InjectionMode.SYSTEM_MESSAGE else InsertMethod.USER
            )
            self._after_question = wanted is InjectionMode.APPEND_USER
        core = core_options(self.bank_id, self.session_id, options)
        check_options(core)
        self._core = core
        warm_up()  # loads the core's token counter in the background, before the first recall

    @classmethod
    def class_name(cls) -> str:
        return "HindsightMemory"

    @classmethod
    def from_defaults(
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        *,
        bank_id: str | None = None,
        session_id: str | None = None,
        token_limit: int | None = None,
        tokenizer_fn: Callable[[str], list[Any]] | None = None,
        chat_store: BaseChatStore | None = None,
        chat_store_key: str = DEFAULT_CHAT_STORE_KEY,
        insert_method: InsertMethod | str = InsertMethod.SYSTEM,
        chat_history_token_ratio: float = DEFAULT_CHAT_HISTORY_TOKEN_RATIO,
        **options: Any,
    ) -> HindsightMemory:
        """A memory for one conversation.

        ``chat_history``, ``llm`` and ``token_limit`` are what LlamaIndex engines pass: as in
        ``ChatMemoryBuffer``, ``token_limit`` defaults to 75% of ``llm``'s context window, else 3000.
        ``bank_id`` (else ``HINDSIGHT_BANK_ID``) names the memory bank; ``session_id`` names the document
        the conversation is stored under (else one is derived from its first user message). Any other
        keyword is a ``hindsight_core`` setting (``budget``, ``max_memory_tokens``, ``max_memories``,
        ``fact_types``, ``use_reflect``, ``store_conversations``, ``hindsight_api_url``, ``api_key``,
        ``recall_timeout``, ``strict``, ...), validated now.
        """
        if llm is not None:
            token_limit = token_limit or int(llm.metadata.context_window * DEFAULT_TOKEN_LIMIT_RATIO)
        elif token_limit is None:
            token_limit = DEFAULT_TOKEN_LIMIT
        model = llm.metadata.model_name if llm is not None else None
        if chat_history is not None:
            chat_store = chat_store or SimpleChatStore()
            chat_store.set_messages(chat_store_key, chat_history)
        try:
            method = InsertMethod(insert_method)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in InsertMethod)
            raise ConfigurationError(
                f"insert_method must be one of {allowed}, got {insert_method!r}"
            ) from None
        data: dict[str, Any] = {
            "token_limit": token_limit,
            "tokenizer_fn": tokenizer_fn or get_tokenizer(),
            "chat_store": chat_store or SimpleChatStore(),
            "chat_store_key": chat_store_key,
            "chat_history_token_ratio": chat_history_token_ratio,
            "bank_id": bank_id,
            "session_id": session_id,
            "model": model if model and model != "unknown" else None,
            "options": options,
        }
        if "injection_mode" not in options or insert_method != InsertMethod.SYSTEM:
            data["insert_method"] = method
        return cls(**data)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> HindsightMemory:
        from llama_index.core.storage.chat_store.loading import load_chat_store

        data = {**data, **kwargs}
        data.pop("class_name", None)
        if isinstance(data.get("chat_store"), dict):
            data["chat_store"] = load_chat_store(data["chat_store"])
        return cls(**data)

    @field_validator("options")
    @classmethod
    def _hide_api_key(cls, options: dict[str, Any]) -> dict[str, Any]:
        return hide_api_key(options)

    @field_serializer("options")
    def _serialize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in options.items() if key != "api_key"}  # never the secret

    @field_serializer("insert_method")
    def _serialize_insert_method(self, method: InsertMethod) -> str:
        return str(method.value)

    # ------------------------------------------------------------------------------------------ reading

    @property
    def last_debug(self) -> InjectionDebugInfo | None:
        """What memory did on the last ``get``/``aget`` (query, memories used, error...) and, once the
        turn completed, what became of its storage (``storage_status``)."""
        return self._last_record

    @property
    def settings(self) -> MemorySettings:
        """The ``hindsight_core`` settings in effect (environment, then this memory's options)."""
        return resolve(self._core)

    def _needs_history(self, settings: MemorySettings) -> bool:
        return not settings.effective_document_id and self._document_id is None

    def _document(
        self, settings: MemorySettings, history: Sequence[ChatMessage], extra: dict[str, Any] | None
    ) -> str:
        """The document this conversation is stored under (explicit, else from its first user message)."""
        explicit = settings.effective_document_id
        if explicit:
            return explicit
        with _STATE_LOCK:
            if self._document_id is not None:
                return self._document_id
        first = first_user_message(history)
        seed = [to_core_message(first)] if first is not None else ([extra] if extra is not None else [])
        document = conversation_document_id(settings, seed)
        if first is not None:
            with _STATE_LOCK:
                self._document_id = document
        return document

    def _plan(
        self, history: Sequence[ChatMessage], input: str | ChatMessage | None, initial_token_count: int
    ) -> _Lookup:
        """The lookup for this ``get``: its query, settings and turn."""
        if initial_token_count > self.token_limit:
            raise ValueError("Initial token count exceeds token limit")
        last = last_user_message(history)
        if isinstance(input, ChatMessage):
            query_message: dict[str, Any] | None = to_core_message(input)
        elif isinstance(input, str) and input.strip():
            query_message = {"role": "user", "content": input}
        else:
            query_message = to_core_message(last) if last is not None else None
        settings = resolve(self._core)
        room = int((self.token_limit - initial_token_count) * (1.0 - self.chat_history_token_ratio))
        budget = max(1, room if settings.max_memory_tokens is None else min(settings.max_memory_tokens, room))
        settings = settings.model_copy(
            update={
                "document_id": self._document(settings, history, query_message),
                "max_memory_tokens": budget,
                "injection_mode": injection_mode(self.insert_method, self._after_question),
            }
        )
        # Which user message of the conversation this is: engines pass the new one as ``input`` before
        # putting it in the history, agents find it there (and ask again after each tool step).
        text = content_text(query_message.get("content")) if query_message is not None else ""
        ordinal = sum(1 for message in history if message.role == MessageRole.USER)
        if input is not None and (last is None or content_text(to_core_message(last).get("content")) != text):
            ordinal += 1
        return _Lookup((query_message,) if query_message is not None else (), settings, (ordinal, text))

    def _compose(
        self, history: list[ChatMessage], call: MemoryCall, initial_token_count: int
    ) -> list[ChatMessage]:
        """The recent history that fits next to the memory block, with the block inserted."""
        with _STATE_LOCK:
            self._turn_call = call
            self._last_record = call.record
        block = call.record.memory_context if call.record.injected else ""
        used = initial_token_count + (len(self.tokenizer_fn(block)) if block else 0)
        buffer = ChatMemoryBuffer(
            token_limit=self.token_limit,
            tokenizer_fn=self.tokenizer_fn,
            chat_store=SimpleChatStore(store={_HISTORY_KEY: history}),
            chat_store_key=_HISTORY_KEY,
        )
        recent = buffer.get(initial_token_count=min(used, self.token_limit))
        return insert_memory(recent, block, self.insert_method, after_question=self._after_question)

    def get(
        self, input: str | ChatMessage | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        """The recent chat history within ``token_limit``, with recalled memories inserted.

        The query is ``input`` when given (chat engines pass the new user message before adding it to
        the history), else the last user message. Memories are recalled once per user message (the
        core's rule): later ``get`` calls of the same turn (an agent's tool loop) reuse that lookup.
        """
        history = self.chat_store.get_messages(self.chat_store_key)
        lookup = self._plan(history, input, initial_token_count)
        call = PIPELINE.prepare(list(lookup.query), lookup.settings, model=self.model, turn=lookup.turn)
        return self._compose(history, call, initial_token_count)

    async def aget(
        self, input: str | ChatMessage | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        """:meth:`get` for asyncio: the chat store and the recall are awaited, nothing blocks the loop."""
        history = await self.chat_store.aget_messages(self.chat_store_key)
        lookup = self._plan(history, input, initial_token_count)
        call = await PIPELINE.aprepare(
            list(lookup.query), lookup.settings, model=self.model, turn=lookup.turn
        )
        return self._compose(history, call, initial_token_count)

    # ------------------------------------------------------------------------------------------ writing

    def _completed(self, messages: Sequence[ChatMessage]) -> list[tuple[CompletedTurn, MemoryCall | None]]:
        """Feed ``messages`` to the turn tracker; the turns they complete, the first with this turn's call."""
        with _STATE_LOCK:
            turns = self._tracker.add_all(messages)
            if not turns:
                return []
            call, self._turn_call = self._turn_call, None
        return [(turn, call if index == 0 else None) for index, turn in enumerate(turns)]

    def _storage(
        self,
        turn: CompletedTurn,
        call: MemoryCall | None,
        base: MemorySettings,
        history: Sequence[ChatMessage],
    ) -> tuple[list[dict[str, Any]], MemorySettings, str | None]:
        """What to store for ``turn`` (what this turn said, whatever the lookup was asked), its settings and
        model: those of the turn's lookup ``call`` when there is one (same document, and a call that was
        not to be stored is not), else this memory's."""
        user = [to_core_message(m) for m in turn.user]
        if call is not None:
            settings = call.settings
            if not call.store:
                settings = settings.model_copy(update={"store_conversations": False})
            return user, settings, call.model
        return (
            user,
            base.model_copy(update={"document_id": self._document(base, history, user[0])}),
            self.model,
        )

    def _observe(self, messages: Sequence[ChatMessage]) -> None:
        completed = self._completed(messages)
        if not completed:
            return
        base = resolve(self._core)
        history = self.chat_store.get_messages(self.chat_store_key) if self._needs_history(base) else []
        for turn, call in completed:
            user, settings, model = self._storage(turn, call, base, history)
            PIPELINE.store(user, turn.answer, settings, model=model, record=call.record if call else None)

    async def _aobserve(self, messages: Sequence[ChatMessage]) -> None:
        completed = self._completed(messages)
        if not completed:
            return
        base = resolve(self._core)
        history = (
            await self.chat_store.aget_messages(self.chat_store_key) if self._needs_history(base) else []
        )
        for turn, call in completed:
            user, settings, model = self._storage(turn, call, base, history)
            await PIPELINE.astore(
                user, turn.answer, settings, model=model, record=call.record if call else None
            )

    def put(self, message: ChatMessage) -> None:
        """Add ``message`` to the history; when it completes a turn, queue the turn for storage."""
        self.chat_store.add_message(self.chat_store_key, message)
        self._observe([message])

    async def aput(self, message: ChatMessage) -> None:
        await self.chat_store.async_add_message(self.chat_store_key, message)
        await self._aobserve([message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        for message in messages:
            self.chat_store.add_message(self.chat_store_key, message)
        self._observe(messages)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        for message in messages:
            await self.chat_store.async_add_message(self.chat_store_key, message)
        await self._aobserve(messages)

    def _forget_turn(self, history: Sequence[ChatMessage] = ()) -> None:
        """Start over from ``history``: its answered turns count as stored; a question at its end that
        has no answer yet is the turn in progress."""
        with _STATE_LOCK:
            self._tracker.clear()
            self._tracker.add_all(history)  # the turns it completes are history: not stored
            self._turn_call = None
            self._document_id = None

    def set(self, messages: list[ChatMessage]) -> None:
        """Replace the history with ``messages`` (engines do this when given ``chat_history=``). Their
        answered turns are taken as already stored: only turns completed by later ``put`` calls are."""
        self.chat_store.set_messages(self.chat_store_key, messages)
        self._forget_turn(messages)

    async def aset(self, messages: list[ChatMessage]) -> None:
        await self.chat_store.aset_messages(self.chat_store_key, messages)
        self._forget_turn(messages)

    def reset(self) -> None:
        """Clear the short-term history (long-term memory in the Hindsight bank is kept)."""
        self.chat_store.delete_messages(self.chat_store_key)
        self._forget_turn()

    async def areset(self) -> None:
        await self.chat_store.adelete_messages(self.chat_store_key)
        self._forget_turn()

    # ------------------------------------------------------------------------------------------ storage

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the turns queued so far are stored (or failed); False if ``timeout`` ran out."""
        return PIPELINE.storage.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        return await PIPELINE.storage.aflush(timeout)
