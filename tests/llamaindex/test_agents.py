"""HindsightMemory as the memory of FunctionAgent, ReActAgent and AgentWorkflow, against the real server:
memories reach the LLM on every step (streaming or not), and each turn is stored once, without tool traffic
or ReAct scaffolding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.mock import (
    MockFunctionCallingLLM,
    MockFunctionCallingLLMWithChatMemoryOfLastCall,
)
from llama_index.core.tools import BaseTool, FunctionTool

from llama_index.memory.hindsight import HindsightMemory, InsertMethod

from .conftest import CAT_FACT, QUESTION, sent_text, stored_text

pytestmark = pytest.mark.server


def pet_registry(name: str = "cat") -> str:
    """Look up a pet in the registry."""
    return f"REGISTRY-RECORD for {name}: vaccinated"


TOOLS: list[BaseTool | Callable[..., Any]] = [FunctionTool.from_defaults(fn=pet_registry)]


async def run(agent: Any, memory: HindsightMemory, message: str, *, streaming: bool) -> str:
    handler = agent.run(user_msg=message, memory=memory)
    if streaming:
        async for _event in handler.stream_events():
            pass
    return str(await handler)


def assert_stored_once(url: str, bank: str, memory: HindsightMemory, answer: str) -> str:
    record = memory.last_debug
    assert record is not None
    text = stored_text(url, bank, record.document_id, answer)
    assert text.count(f"user: {QUESTION}") == 1
    assert text.count(f"assistant: {answer}") == 1
    assert "REGISTRY-RECORD" not in text  # tool results are not stored
    assert "pet_registry" not in text  # nor tool calls
    assert "piano" not in text  # nor recalled memory
    assert "hindsight_memories" not in text
    return text


@pytest.mark.parametrize("streaming", [False, True])
async def test_function_agent(
    streaming: bool, hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    llm = MockFunctionCallingLLMWithChatMemoryOfLastCall()
    agent = FunctionAgent(tools=TOOLS, llm=llm, system_prompt="You are a pet assistant.", streaming=streaming)
    memory = make_memory(cat_bank)

    answer = await run(agent, memory, QUESTION, streaming=streaming)

    # The default mock calls every tool, then answers once it sees the tool results.
    assert answer == "Tool calls complete."
    sent = sent_text(llm.last_chat_messages)  # the last step: after the tool result
    assert "REGISTRY-RECORD" in sent
    assert CAT_FACT in sent
    assert sent.count("<hindsight_memories>") == 1
    assert memory.last_debug is not None
    assert memory.last_debug.injected
    assert_stored_once(hindsight_server, cat_bank, memory, answer)


def react_llm(seen: list[Sequence[ChatMessage]]) -> MockFunctionCallingLLM:
    """An LLM that speaks ReAct: first an action, then (after the observation) the answer."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        seen.append(list(messages))
        if any("REGISTRY-RECORD" in (m.content or "") for m in messages):
            return ChatMessage(
                role="assistant", content="Thought: I can answer now.\nAnswer: Your cat is Miso."
            )
        return ChatMessage(
            role="assistant",
            content=(
                'Thought: I should check the registry.\nAction: pet_registry\nAction Input: {"name": "cat"}'
            ),
        )

    return MockFunctionCallingLLM(response_generator=respond)


@pytest.mark.parametrize(
    ("streaming", "system_prompt", "insert_method"),
    [
        (False, "You are a pet assistant.", InsertMethod.SYSTEM),
        (True, "You are a pet assistant.", InsertMethod.SYSTEM),
        # ReActAgent drops the first message of its input when it is a system message (it expects its
        # own system_prompt there): without a system_prompt, memories go in the user message.
        (False, None, InsertMethod.USER),
        (True, None, InsertMethod.USER),
    ],
)
async def test_react_agent(
    streaming: bool,
    system_prompt: str | None,
    insert_method: InsertMethod,
    hindsight_server: str,
    cat_bank: str,
    make_memory: Callable[..., HindsightMemory],
) -> None:
    seen: list[Sequence[ChatMessage]] = []
    agent = ReActAgent(tools=TOOLS, llm=react_llm(seen), streaming=streaming, system_prompt=system_prompt)
    memory = make_memory(cat_bank, insert_method=insert_method)

    answer = await run(agent, memory, QUESTION, streaming=streaming)

    assert answer == "Your cat is Miso."
    assert len(seen) == 2
    for messages in seen:  # both reasoning steps saw the memory
        assert CAT_FACT in sent_text(messages)
    # The buffer keeps ReAct's reasoning for the agent, as LlamaIndex's own buffer does ...
    assert "Action: pet_registry" in " ".join(str(m.content) for m in memory.get_all())
    # ... but only the answer is stored.
    text = assert_stored_once(hindsight_server, cat_bank, memory, answer)
    assert "Thought:" not in text
    assert "Action:" not in text
    assert "Observation:" not in text


@pytest.mark.parametrize("streaming", [False, True])
async def test_agent_workflow(
    streaming: bool, hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    llm = MockFunctionCallingLLMWithChatMemoryOfLastCall()
    workflow = AgentWorkflow(
        agents=[
            FunctionAgent(
                name="pets",
                description="Answers questions about pets.",
                tools=TOOLS,
                llm=llm,
                system_prompt="You are a pet assistant.",
                streaming=streaming,
            )
        ],
        root_agent="pets",
    )
    memory = make_memory(cat_bank)

    answer = await run(workflow, memory, QUESTION, streaming=streaming)

    assert answer == "Tool calls complete."
    assert CAT_FACT in sent_text(llm.last_chat_messages)
    assert_stored_once(hindsight_server, cat_bank, memory, answer)


async def test_agent_second_run_keeps_history_and_stores_each_turn_once(
    hindsight_server: str, cat_bank: str, make_memory: Callable[..., HindsightMemory]
) -> None:
    llm = MockFunctionCallingLLMWithChatMemoryOfLastCall()
    agent = FunctionAgent(llm=llm, system_prompt="You are a pet assistant.")
    memory = make_memory(cat_bank)

    first = await run(agent, memory, QUESTION, streaming=False)
    second = await run(agent, memory, "Tell me more about my cat", streaming=False)

    sent = sent_text(llm.last_chat_messages)
    assert QUESTION in sent  # short-term history of the first run
    assert CAT_FACT in sent
    record = memory.last_debug
    assert record is not None
    text = stored_text(hindsight_server, cat_bank, record.document_id, "Tell me more about my cat")
    assert text.count(f"user: {QUESTION}") == 1
    assert text.count("user: Tell me more about my cat") == 1
    assert first
    assert second
