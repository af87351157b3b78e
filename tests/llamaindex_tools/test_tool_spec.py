"""``HindsightToolSpec`` tools in LlamaIndex agents (FunctionAgent, ReActAgent, AgentWorkflow), against the
real Hindsight server. The LLM is LlamaIndex's ``MockFunctionCallingLLM`` with a scripted response
generator that emits real tool calls (``ToolCallBlock``s), so the agents run the tools through LlamaIndex's
own tool calling and feed the results back to the LLM."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM

from hindsight_core import ConfigurationError
from hindsight_core.errors import APIConnectionError
from hindsight_core.pipeline import MEMORY_OPEN, count_tokens
from hindsight_core.storage import StorageWorker
from hindsight_core.tools import RECALL_TOOL, RETAIN_TOOL
from llama_index.tools.hindsight import HindsightToolSpec
from tests.helpers import (
    async_recall_threads,
    closed_port_url,
    document_text,
    flush_storage,
    recall_texts,
    seed_bank,
    wait_for,
)

pytestmark = pytest.mark.server

FACT = "The user's sister is called Ines and lives in Madrid."


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> ChatMessage:
    return ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=[
            ToolCallBlock(tool_call_id=f"call-{uuid.uuid4().hex[:8]}", tool_name=name, tool_kwargs=kwargs)
            for name, kwargs in calls
        ],
    )


def scripted(*calls: tuple[str, dict[str, Any]]) -> MockFunctionCallingLLM:
    """Calls the tools in one step; then answers with what the tools returned."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        results = [m.content or "" for m in messages if m.role == MessageRole.TOOL]
        if results:
            return ChatMessage(role=MessageRole.ASSISTANT, content="Answer: " + " | ".join(results))
        return tool_calls(*calls)

    return MockFunctionCallingLLM(response_generator=respond)


async def run(agent: Any, message: str) -> tuple[str, list[ToolCallResult]]:
    handler = agent.run(user_msg=message)
    results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
    return str(await handler), results


def seeded(url: str, bank: str, *facts: str) -> str:
    seed_bank(url, bank, facts)
    for fact in facts:

        def found(fact: str = fact) -> bool:
            return fact in recall_texts(url, bank, fact)

        wait_for(found, what=f"recall to find {fact!r}")
    return bank


@pytest.fixture
def own_worker() -> Iterator[StorageWorker]:
    worker = StorageWorker(retry_initial=0.05, retry_max=0.2, exit_timeout=0.5)
    yield worker
    worker.close(timeout=0)


@pytest.fixture
def spec(hindsight_server: str) -> Callable[..., HindsightToolSpec]:
    def make(bank: str, **options: Any) -> HindsightToolSpec:
        return HindsightToolSpec(bank_id=bank, hindsight_api_url=hindsight_server, **options)

    return make


def test_the_tools_are_the_cores(spec: Callable[..., HindsightToolSpec]) -> None:
    tools = spec("someone").to_tool_list()
    assert [t.metadata.name for t in tools] == ["retain_memory", "recall_memory", "reflect_on_memory"]
    retain, recall, _ = tools
    assert recall.metadata.description == RECALL_TOOL.description
    assert retain.metadata.description == RETAIN_TOOL.description
    assert recall.metadata.get_parameters_dict()["required"] == ["query"]
    assert retain.metadata.get_parameters_dict()["properties"]["content"]["type"] == "string"
    assert all(t.async_fn.__name__.startswith("a") for t in tools)  # real async twins, not thread bridges
    assert [t.metadata.name for t in spec("x", include=["recall"]).to_tool_list()] == ["recall_memory"]
    with pytest.raises(ConfigurationError, match="did you mean 'budget'"):
        spec("x", budgte="low")
    with pytest.raises(ConfigurationError, match="unknown memory tool 'forget'"):
        spec("x", include=["forget"])
    assert "secret" not in repr(spec("x", api_key="secret"))


def test_no_bank_fails_when_the_spec_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    with pytest.raises(ConfigurationError, match=r"HindsightToolSpec\(bank_id=\.\.\.\)"):
        HindsightToolSpec()


async def test_function_agent_recall_round_trip(
    hindsight_server: str, bank_id: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    seeded(hindsight_server, bank_id, FACT)
    tools = spec(bank_id)
    agent = FunctionAgent(
        tools=tools.to_tool_list(), llm=scripted(("recall_memory", {"query": "sister called"}))
    )

    answer, results = await run(agent, "Where does my sister live?")

    (result,) = results
    assert result.tool_name == "recall_memory"
    assert not result.tool_output.is_error
    assert MEMORY_OPEN in result.tool_output.content
    assert FACT in result.tool_output.content
    assert FACT in answer  # the LLM read the tool's result
    assert tools.last_debug is not None
    assert tools.last_debug.memories_used >= 1


async def test_function_agent_retain_then_recall(
    hindsight_server: str, bank_id: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    seed_bank(hindsight_server, bank_id)
    fact = f"The user's gym locker is number {uuid.uuid4().hex[:6]}."
    tools = spec(bank_id, session_id="notes-1", tags=["app:test"])
    agent = FunctionAgent(tools=tools.to_tool_list(), llm=scripted(("retain_memory", {"content": fact})))

    answer, results = await run(agent, f"Remember: {fact}")

    assert results[0].tool_output.content == "Noted: it is being saved to long-term memory in the background."
    assert answer.startswith("Answer: Noted")
    wait_for(lambda: fact in recall_texts(hindsight_server, bank_id, fact), what="the fact to be recallable")
    flush_storage()
    assert document_text(hindsight_server, bank_id, "notes-1") == fact
    later = FunctionAgent(
        tools=tools.to_tool_list(), llm=scripted(("recall_memory", {"query": "gym locker"}))
    )
    _, recalled = await run(later, "What is my locker number?")
    assert fact in recalled[0].tool_output.content


async def test_async_paths_await_the_async_client_on_the_loop(
    hindsight_server: str,
    bank_id: str,
    spec: Callable[..., HindsightToolSpec],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded(hindsight_server, bank_id, FACT)
    threads = async_recall_threads(monkeypatch)
    agent = FunctionAgent(
        tools=spec(bank_id).to_tool_list(), llm=scripted(("recall_memory", {"query": "sister"}))
    )

    _, results = await run(agent, "Where does my sister live?")

    assert FACT in results[0].tool_output.content
    assert threads == [threading.get_ident()]  # on the event loop's thread: nothing ran in a worker thread


async def test_react_agent_and_agent_workflow(
    hindsight_server: str, bank_id: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    seeded(hindsight_server, bank_id, FACT)
    tools = spec(bank_id).to_tool_list()

    def react(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        observed = [m.content for m in messages if (m.content or "").startswith("Observation:")]
        if observed:
            return ChatMessage(role=MessageRole.ASSISTANT, content=f"Thought: done.\nAnswer: {observed[-1]}")
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            content='Thought: check memory.\nAction: recall_memory\nAction Input: {"query": "sister Madrid"}',
        )

    answer, _ = await run(ReActAgent(tools=tools, llm=MockFunctionCallingLLM(response_generator=react)), "Hi")
    assert FACT in answer

    workflow = AgentWorkflow(
        agents=[
            FunctionAgent(
                name="assistant",
                description="Answers with memory.",
                tools=tools,
                llm=scripted(("recall_memory", {"query": "sister called"})),
            )
        ],
        root_agent="assistant",
    )
    answer, results = await run(workflow, "Where does my sister live?")
    assert FACT in results[0].tool_output.content
    assert FACT in answer


async def test_hindsight_down_every_tool_answers_and_the_agent_finishes(own_worker: StorageWorker) -> None:
    tools = HindsightToolSpec(
        bank_id="somebody", hindsight_api_url=closed_port_url(), max_retries=0, storage=own_worker
    )
    llm = scripted(
        ("recall_memory", {"query": "sister"}),
        ("reflect_on_memory", {"query": "Who is in the user's family?"}),
        ("retain_memory", {"content": "The user has a sister."}),
    )
    answer, results = await run(FunctionAgent(tools=tools.to_tool_list(), llm=llm), "Hello")

    outputs = {r.tool_name: r.tool_output for r in results}
    assert set(outputs) == {"recall_memory", "reflect_on_memory", "retain_memory"}
    assert not any(o.is_error for o in outputs.values())
    for name in ("recall_memory", "reflect_on_memory"):
        assert outputs[name].content.startswith(
            "Long-term memory is unavailable right now (APIConnectionError)"
        )
    assert answer.startswith("Answer: ")
    assert tools.last_debug is not None


def test_strict_raises(hindsight_server: str) -> None:
    tools = HindsightToolSpec(
        bank_id="somebody", hindsight_api_url=closed_port_url(), max_retries=0, strict=True
    )
    with pytest.raises(APIConnectionError):
        tools.recall_memory("sister")


async def test_bad_arguments_from_the_llm_get_a_message(
    hindsight_server: str, bank_id: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    seed_bank(hindsight_server, bank_id)
    llm = scripted(
        ("recall_memory", {"query": ""}),
        ("recall_memory", {"query": 7}),
        ("retain_memory", {"content": "word " * 3000}),
        ("reflect_on_memory", {}),
    )
    answer, results = await run(FunctionAgent(tools=spec(bank_id).to_tool_list(), llm=llm), "Hello")

    contents = [r.tool_output.content for r in results]
    assert contents[0].startswith("'query' is empty.")
    assert contents[1].startswith("'query' must be text (a string), not a number.")
    assert contents[2].startswith("'content' is too long (3,001 tokens")
    assert "query" in contents[3]  # LlamaIndex reports the missing argument
    assert results[3].tool_output.is_error
    assert answer.startswith("Answer: ")


async def test_two_users_concurrently_no_cross_talk(
    hindsight_server: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    alice = seeded(hindsight_server, f"test-{uuid.uuid4().hex}", "Alice's brother is called Tomas.")
    bob = seeded(hindsight_server, f"test-{uuid.uuid4().hex}", "Bob's brother is called Pavel.")

    async def ask(bank: str) -> str:
        agent = FunctionAgent(
            tools=spec(bank).to_tool_list(), llm=scripted(("recall_memory", {"query": "brother called"}))
        )
        _, results = await run(agent, "What is my brother called?")
        content: str = results[0].tool_output.content
        return content

    for _ in range(3):
        for_alice, for_bob = await asyncio.gather(ask(alice), ask(bob))
        assert "Tomas" in for_alice
        assert "Pavel" not in for_alice
        assert "Pavel" in for_bob
        assert "Tomas" not in for_bob


def test_results_stay_within_max_memory_tokens(
    hindsight_server: str, bank_id: str, spec: Callable[..., HindsightToolSpec]
) -> None:
    facts = [
        f"Note {i}: the user keeps a jar of honey from village {i} on the kitchen shelf." for i in range(30)
    ]
    seed_bank(hindsight_server, bank_id, facts)
    wait_for(lambda: len(recall_texts(hindsight_server, bank_id, "honey village jar")) >= 10, what="facts")
    budget = 100
    tools = spec(bank_id, max_memory_tokens=budget)

    recalled = tools.recall_memory("which honey jars from which village")
    reflected = asyncio.run(tools.areflect_on_memory("Where does the user keep honey?"))

    assert "honey" in recalled
    assert count_tokens(recalled) <= budget
    assert count_tokens(reflected) <= budget
    assert count_tokens(spec(bank_id).recall_memory("which honey jars from which village")) > budget
