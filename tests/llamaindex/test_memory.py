"""HindsightMemory and HindsightMemoryBlock used directly, against the real server: the BaseMemory
contract (get/aget/put/aput/aput_messages/set/reset), the token limit, one recall per turn, isolation
between banks, fail-open when the server is down, and the block inside LlamaIndex's ``Memory``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall
from llama_index.core.memory import Memory
from llama_index.core.utils import get_tokenizer

from hindsight_core import HindsightClient
from llama_index.memory.hindsight import HindsightMemory, HindsightMemoryBlock
from llama_index.memory.hindsight._core import PIPELINE
from tests.helpers import closed_port_url, document_text, flush_storage, wait_for

from .conftest import CAT_FACT, DOG_FACT, QUESTION, seed, sent_text, stored_text

pytestmark = pytest.mark.server


def user(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=text)


def assistant(text: str, **kwargs: Any) -> ChatMessage:
    return ChatMessage(role=MessageRole.ASSISTANT, content=text, **kwargs)


def test_get_put_sync(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    memory = make_memory(cat_bank, session_id="sync-session")
    memory.put(user(QUESTION))

    messages = memory.get()

    assert messages[0].role == MessageRole.SYSTEM
    assert CAT_FACT in str(messages[0].content)
    assert [m.content for m in messages[1:]] == [QUESTION]
    assert memory.get_all() == [user(QUESTION)]  # the buffer itself holds no memory

    memory.put(assistant("It is Miso."))
    text = stored_text(hindsight_server, cat_bank, "sync-session", "It is Miso.")
    assert text == f"user: {QUESTION}\nassistant: It is Miso."


async def test_aget_aput_messages_with_tools(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    memory = make_memory(cat_bank, session_id="async-session")
    await memory.aput(user(QUESTION))

    messages = await memory.aget(input=QUESTION)
    assert CAT_FACT in sent_text(messages)

    await memory.aput_messages(
        [
            assistant(
                "",
                additional_kwargs={
                    "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": "{}"}}]
                },
            ),
            ChatMessage(
                role=MessageRole.TOOL, content="lookup says: Miso", additional_kwargs={"tool_call_id": "c1"}
            ),
            assistant("Your cat is Miso."),
        ]
    )

    assert len(await memory.aget_all()) == 4
    text = stored_text(hindsight_server, cat_bank, "async-session", "Your cat is Miso.")
    assert text == f"user: {QUESTION}\nassistant: Your cat is Miso."


async def test_one_recall_per_turn(
    monkeypatch: pytest.MonkeyPatch, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    """An agent asks its memory again after every tool call: the turn's memories are reused (the core's
    rule: one lookup per user message; ``calls`` lists the lookups that went to the server)."""
    calls: list[Any] = []
    original = PIPELINE.aprepare

    async def counting(*args: Any, **kwargs: Any) -> Any:
        call = await original(*args, **kwargs)
        if not call.record.lookup_reused:
            calls.append(args)
        return call

    monkeypatch.setattr(PIPELINE, "aprepare", counting)
    memory = make_memory(cat_bank)
    await memory.aput(user(QUESTION))

    first = await memory.aget()
    again = await memory.aget(input=QUESTION)
    assert CAT_FACT in sent_text(first)
    assert sent_text(first) == sent_text(again)
    assert len(calls) == 1

    await memory.aput(assistant("Miso."))  # the turn completes ...
    await memory.aput(user(QUESTION))  # ... so the same question in a new turn is looked up again
    await memory.aget()
    assert len(calls) == 2  # storing the completed turn looks nothing up


def test_token_limit_counts_the_memory_block(
    cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    tokenizer = get_tokenizer()
    memory = make_memory(cat_bank, token_limit=300, chat_history_token_ratio=0.5)
    for index in range(20):
        memory.put(user(f"Question number {index} about pets and their many habits."))
        memory.put(assistant(f"Answer number {index}: pets have habits of all kinds."))
    memory.put(user(QUESTION))

    messages = memory.get(initial_token_count=20)

    block = str(messages[0].content)
    assert CAT_FACT in block
    total = sum(len(tokenizer(str(m.content))) for m in messages)
    assert total + 20 <= 300
    assert messages[-1].content == QUESTION
    assert len(messages) < 42  # older history was cut
    record = memory.last_debug
    assert record is not None
    assert record.max_memory_tokens == 140  # (300 - 20) * (1 - 0.5)
    assert record.tokens_injected <= 140


async def test_banks_stay_isolated(
    hindsight_server: str, make_memory: Callable[..., HindsightMemory], bank_id: str
) -> None:
    cats, dogs = f"{bank_id}-cats", f"{bank_id}-dogs"
    seed(hindsight_server, cats, [CAT_FACT])
    seed(hindsight_server, dogs, [DOG_FACT])
    question = "What are my pets called, the cat and the dog?"
    seen = {}
    memories = {}
    for bank in (cats, dogs):
        llm = MockLLMWithChatMemoryOfLastCall(max_tokens=2)
        memories[bank] = make_memory(bank, session_id="pets")
        engine = SimpleChatEngine.from_defaults(llm=llm, memory=memories[bank])
        await engine.achat(question)
        seen[bank] = sent_text(llm.last_chat_messages)

    assert CAT_FACT in seen[cats]
    assert DOG_FACT not in seen[cats]
    assert DOG_FACT in seen[dogs]
    assert CAT_FACT not in seen[dogs]
    # Each conversation went to its own bank.
    stored_text(hindsight_server, cats, "pets", question)
    stored_text(hindsight_server, dogs, "pets", question)
    with HindsightClient(hindsight_server) as client:
        assert all(CAT_FACT not in r.text for r in client.recall(dogs, question).results)


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_server_down_the_engine_still_answers(flavour: str) -> None:
    memory = HindsightMemory.from_defaults(
        bank_id="nobody-home",
        hindsight_api_url=closed_port_url(),
        max_retries=0,
        store_conversations=False,
    )
    llm = MockLLMWithChatMemoryOfLastCall(max_tokens=2)
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)

    answer = engine.chat(QUESTION) if flavour == "sync" else await engine.achat(QUESTION)

    assert str(answer) == "text text"
    assert QUESTION in sent_text(llm.last_chat_messages)
    record = memory.last_debug
    assert record is not None
    assert not record.injected
    assert record.error is not None
    assert "APIConnectionError" in record.error
    assert record.storage_status == "skipped"


def test_strict_mode_raises() -> None:
    memory = HindsightMemory.from_defaults(
        bank_id="nobody-home", hindsight_api_url=closed_port_url(), max_retries=0, strict=True
    )
    memory.put(user(QUESTION))
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        memory.get()


def test_set_and_reset(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    memory = make_memory(cat_bank, session_id="set-reset")
    memory.set([user("Old question"), assistant("Old answer")])
    memory.put(user("Half a turn"))
    memory.reset()
    assert memory.get_all() == []
    memory.put(assistant("An answer to nothing"))  # no user message since reset: not a turn
    memory.put(user(QUESTION))
    memory.put(assistant("Miso."))

    text = stored_text(hindsight_server, cat_bank, "set-reset", "Miso.")
    assert text == f"user: {QUESTION}\nassistant: Miso."


async def test_memory_block_in_llamaindex_memory(hindsight_server: str, cat_bank: str) -> None:
    block = HindsightMemoryBlock(bank_id=cat_bank, options={"hindsight_api_url": hindsight_server})
    memory = Memory.from_defaults(
        session_id="block-session",
        memory_blocks=[block],
        token_limit=60,
        chat_history_token_ratio=0.5,
        token_flush_size=10,
    )
    for index in range(3):
        await memory.aput(user(f"Question {index} about my cat and its habits please"))
        await memory.aput(assistant(f"Answer {index}: cats sleep a lot during the day"))

    messages = await memory.aget(input=QUESTION)

    assert messages[0].role == MessageRole.SYSTEM
    assert CAT_FACT in str(messages[0].content)
    assert block.last_debug is not None
    assert block.last_debug.injected
    # Only what Memory flushed out of its short-term queue reaches the block, and is stored.
    flush_storage()
    text = wait_for(
        lambda: document_text(hindsight_server, cat_bank, "block-session"), what="the flushed turns"
    )
    assert text.startswith("user: Question 0 about my cat and its habits please\nassistant: Answer 0:")
    assert "Question 2" not in text  # still in the short-term queue
    assert text.count("Question 0") == 1


async def test_history_ending_with_a_question(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    """``AgentWorkflow.run(chat_history=[..., question])``: the question at the end of the given history
    is the turn in progress, stored with its answer; the answered turns before it are not stored again."""
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall

    llm = MockFunctionCallingLLMWithChatMemoryOfLastCall()
    agent = FunctionAgent(llm=llm, system_prompt="You are a pet assistant.")
    memory = make_memory(cat_bank, session_id="history-question")

    answer = await agent.run(
        chat_history=[user("Earlier question"), assistant("Earlier answer"), user(QUESTION)], memory=memory
    )

    assert CAT_FACT in sent_text(llm.last_chat_messages)
    text = stored_text(hindsight_server, cat_bank, "history-question", QUESTION)
    assert text == f"user: {QUESTION}\nassistant: {answer}"
