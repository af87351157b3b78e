"""HindsightMemory in LlamaIndex's chat engines, against the real server: the recalled memory reaches the
LLM (sync, async, streaming, async streaming) and each completed turn is stored once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.chat_engine import (
    CondensePlusContextChatEngine,
    ContextChatEngine,
    SimpleChatEngine,
)
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

from llama_index.memory.hindsight import HindsightMemory, InsertMethod

from .conftest import CAT_FACT, QUESTION, FixedRetriever, sent_text, stored_text

pytestmark = pytest.mark.server

ENGINES = ["simple", "context", "condense_plus_context"]
MODES = ["chat", "stream_chat", "achat", "astream_chat"]


def build(kind: str, llm: MockLLMWithChatMemoryOfLastCall, memory: HindsightMemory) -> BaseChatEngine:
    if kind == "simple":
        return SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt="You are helpful.")
    if kind == "context":
        return ContextChatEngine.from_defaults(
            retriever=FixedRetriever(), llm=llm, memory=memory, system_prompt="You are helpful."
        )
    return CondensePlusContextChatEngine.from_defaults(
        retriever=FixedRetriever(), llm=llm, memory=memory, system_prompt="You are helpful."
    )


async def ask(engine: BaseChatEngine, mode: str, message: str) -> str:
    """One turn through ``engine`` in ``mode``; returns the answer (streams are read to the end)."""
    if mode == "chat":
        return str(engine.chat(message))
    if mode == "achat":
        return str(await engine.achat(message))
    if mode == "stream_chat":
        streaming = engine.stream_chat(message)
        return "".join(streaming.response_gen)
    streaming = await engine.astream_chat(message)
    return "".join([token async for token in streaming.async_response_gen()])


def llm() -> MockLLMWithChatMemoryOfLastCall:
    # max_tokens: answers "text text text" instead of echoing the prompt; a chat model, so that the
    # context engines call chat() (which records the messages) rather than complete().
    return MockLLMWithChatMemoryOfLastCall(max_tokens=3, is_chat_model=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ENGINES)
async def test_memory_reaches_llm_and_turn_is_stored_once(
    kind: str, mode: str, hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    model = llm()
    memory = make_memory(cat_bank)
    engine = build(kind, model, memory)

    answer = await ask(engine, mode, QUESTION)

    assert answer.strip() == "text text text"
    sent = sent_text(model.last_chat_messages)
    assert CAT_FACT in sent
    assert sent.count("<hindsight_memories>") == 1
    record = memory.last_debug
    assert record is not None
    assert record.injected
    assert record.query == QUESTION
    assert record.error is None

    second = "And where does it sleep?"
    await ask(engine, mode, second)
    document = memory.last_debug.document_id if memory.last_debug else None
    text = stored_text(hindsight_server, cat_bank, document, QUESTION, second)
    assert text.count(f"user: {QUESTION}") == 1
    assert text.count(f"user: {second}") == 1
    assert text.count("assistant: text text text") == 2
    assert "hindsight_memories" not in text
    assert "Miso" not in text  # recalled memory is never stored back
    assert memory.last_debug is not None
    assert memory.last_debug.storage_status == "stored"

    history = memory.get_all()
    assert [m.role.value for m in history] == ["user", "assistant", "user", "assistant"]
    assert "Miso" not in " ".join(str(m.content) for m in history)  # the buffer holds no memory block


@pytest.mark.parametrize("kind", ENGINES)
async def test_insert_method_user(
    kind: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    model = llm()
    memory = make_memory(cat_bank, insert_method=InsertMethod.USER)
    engine = build(kind, model, memory)

    await ask(engine, "achat", QUESTION)

    messages = list(model.last_chat_messages or [])
    holding = [m for m in messages if CAT_FACT in str(m.content)]
    assert len(holding) == 1
    assert holding[0].role.value == "user"
    system = [m for m in messages if m.role.value == "system"]
    assert all(CAT_FACT not in str(m.content) for m in system)


async def test_append_user_puts_the_memories_after_the_question(
    cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    """``injection_mode="append_user"`` is LlamaIndex's USER placement after the question's text: the
    conversation before it stays a cacheable prefix (bench/prompt_cache.py)."""
    model = llm()
    memory = make_memory(cat_bank, injection_mode="append_user")
    assert memory.insert_method is InsertMethod.USER
    engine = build("simple", model, memory)

    await ask(engine, "chat", QUESTION)

    last = list(model.last_chat_messages or [])[-1]
    assert last.role.value == "user"
    assert str(last.content).startswith(f"{QUESTION}\n\n<hindsight_memories>")
    assert CAT_FACT in str(last.content)
    assert memory.last_debug is not None
    assert memory.last_debug.injection_mode == "append_user"


def test_chat_history_argument_is_not_stored(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    """History an application passes with ``chat_history=`` was stored when it happened; only the new turn
    is stored."""
    from llama_index.core.llms import ChatMessage

    model = llm()
    memory = make_memory(cat_bank, session_id="with-history")
    engine = SimpleChatEngine.from_defaults(llm=model, memory=memory)
    earlier: list[Any] = [
        ChatMessage(role="user", content="Earlier question about the weather"),
        ChatMessage(role="assistant", content="Earlier answer: sunny"),
    ]

    engine.chat(QUESTION, chat_history=earlier)

    assert "Earlier question" in sent_text(model.last_chat_messages)
    text = stored_text(hindsight_server, cat_bank, "with-history", QUESTION)
    assert "weather" not in text
    assert text.count(f"user: {QUESTION}") == 1


async def test_engine_builds_the_memory_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, hindsight_server: str, cat_bank: str
) -> None:
    """``memory_cls=HindsightMemory``: the engine calls ``from_defaults(chat_history=..., token_limit=...)``
    and the bank and server come from the environment."""
    monkeypatch.setenv("HINDSIGHT_API_URL", hindsight_server)
    monkeypatch.setenv("HINDSIGHT_BANK_ID", cat_bank)
    model = llm()
    engine = SimpleChatEngine.from_defaults(llm=model, memory_cls=HindsightMemory)

    await engine.achat(QUESTION)

    assert CAT_FACT in sent_text(model.last_chat_messages)
    memory = engine._memory
    assert isinstance(memory, HindsightMemory)
    assert memory.token_limit == model.metadata.context_window - 256
