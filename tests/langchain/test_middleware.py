"""HindsightMiddleware in ``langchain.agents.create_agent`` agents, against the real Hindsight server.

The model is LangChain's ``GenericFakeChatModel`` taught to accept tools (``bind_tools`` returns the model:
the scripted replies already contain the tool calls), so a run goes model -> tool -> model like a real one.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from hindsight_core import ConfigurationError, HindsightClient
from hindsight_core.pipeline import MEMORY_OPEN
from langchain_hindsight import BANK_KEY, HindsightMiddleware
from tests.langchain.conftest import Bank, ModelInputs, ToolCallingFake

pytestmark = pytest.mark.server

FACT = "The user lives in Lisbon."


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def scripted(final: str, *, tool_call: bool = True) -> ToolCallingFake:
    replies: list[AIMessage] = []
    if tool_call:
        call = {"name": "get_weather", "args": {"city": "Lisbon"}, "id": f"call-{uuid.uuid4().hex[:8]}"}
        replies.append(AIMessage("", tool_calls=[call]))
    replies.append(AIMessage(final))
    return ToolCallingFake(messages=iter(replies))


def marker() -> str:
    return uuid.uuid4().hex[:10]


def assert_memory_in_system_prompt(
    inputs: ModelInputs, *, calls: int, prompt: str = "You are helpful."
) -> None:
    assert len(inputs.calls) == calls
    for call in inputs.calls:
        assert isinstance(call[0], SystemMessage)
        assert call[0].text.startswith(prompt + "\n\n" + MEMORY_OPEN)
        assert FACT in call[0].text
        assert not any(MEMORY_OPEN in m.text for m in call[1:])


def assert_state_is_clean(messages: Sequence[Any]) -> None:
    assert not any(MEMORY_OPEN in m.text for m in messages)
    assert not any(isinstance(m, SystemMessage) for m in messages)


def test_sync_agent_injects_every_model_call_and_stores_the_run_once(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    agent = create_agent(
        scripted(f"It is sunny in Lisbon ({tag})."),
        tools=[get_weather],
        system_prompt="You are helpful.",
        middleware=[HindsightMiddleware(hindsight_api_url=bank.url)],
    )

    result = agent.invoke(
        {"messages": [{"role": "user", "content": f"What's the weather where I live? {tag}"}]},
        {"callbacks": [inputs]},
        context={"bank_id": bank.bank_id},
    )

    assert result["messages"][-1].content == f"It is sunny in Lisbon ({tag})."
    assert_memory_in_system_prompt(inputs, calls=2)
    assert_state_is_clean(result["messages"])
    assert "hindsight_run" not in result  # private to the middleware
    first, last = (m for m in result["messages"] if isinstance(m, AIMessage))
    # One recall for the whole run: both model calls carry the same record.
    assert first.response_metadata["hindsight"] == last.response_metadata["hindsight"]
    assert last.response_metadata["hindsight"]["injected"] is True
    assert "memory_context" not in last.response_metadata["hindsight"]

    assert bank.stored(tag) == [
        f"user: What's the weather where I live? {tag}\nassistant: It is sunny in Lisbon ({tag})."
    ]


async def test_async_agent_bank_from_configurable(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    agent = create_agent(
        scripted(f"Sunny ({tag})."),
        tools=[get_weather],
        system_prompt="You are helpful.",
        middleware=[HindsightMiddleware(hindsight_api_url=bank.url)],
    )

    result = await agent.ainvoke(
        {"messages": [HumanMessage(f"Weather where I live? {tag}")]},
        {"callbacks": [inputs], "configurable": {BANK_KEY: bank.bank_id}},
    )

    assert result["messages"][-1].content == f"Sunny ({tag})."
    assert_memory_in_system_prompt(inputs, calls=2)
    assert_state_is_clean(result["messages"])
    assert bank.stored(tag) == [f"user: Weather where I live? {tag}\nassistant: Sunny ({tag})."]


@dataclass
class UserContext:
    bank_id: str
    user_name: str


async def test_async_agent_streaming_with_dataclass_context(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    agent = create_agent(
        scripted(f"Sunny ({tag})."),
        tools=[get_weather],
        system_prompt="You are helpful.",
        middleware=[HindsightMiddleware(hindsight_api_url=bank.url)],
        context_schema=UserContext,
    )

    updates = [
        chunk
        async for chunk in agent.astream(
            {"messages": [HumanMessage(f"Weather where the user lives? {tag}")]},
            {"callbacks": [inputs]},
            context=UserContext(bank_id=bank.bank_id, user_name="Ana"),
            stream_mode="updates",
        )
    ]

    assert updates
    assert_memory_in_system_prompt(inputs, calls=2)
    assert bank.stored(tag) == [f"user: Weather where the user lives? {tag}\nassistant: Sunny ({tag})."]


def test_prepend_user_mode_without_system_prompt(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    agent = create_agent(
        scripted(f"Sunny ({tag}).", tool_call=False),
        middleware=[
            HindsightMiddleware(
                bank_id=bank.bank_id, hindsight_api_url=bank.url, injection_mode="prepend_user"
            )
        ],
    )

    result = agent.invoke({"messages": [HumanMessage(f"Where do I live? {tag}")]}, {"callbacks": [inputs]})

    [call] = inputs.calls
    assert len(call) == 1
    assert isinstance(call[0], HumanMessage)
    assert FACT in call[0].text
    assert call[0].text.endswith(f"Where do I live? {tag}")
    assert result["messages"][0].content == f"Where do I live? {tag}"  # the state keeps the user's words
    assert bank.stored(tag) == [f"user: Where do I live? {tag}\nassistant: Sunny ({tag})."]


def test_thread_runs_recall_each_run_and_store_each_exchange_once(bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = marker()
    model = ToolCallingFake(
        messages=itertools.cycle([AIMessage(f"First answer ({tag})."), AIMessage(f"Second ({tag}).")])
    )
    agent = create_agent(
        model,
        system_prompt="You are helpful.",
        middleware=[HindsightMiddleware(bank_id=bank.bank_id, hindsight_api_url=bank.url)],
        checkpointer=InMemorySaver(),
    )
    thread: RunnableConfig = {"callbacks": [inputs], "configurable": {"thread_id": f"thread-{tag}"}}

    agent.invoke({"messages": [HumanMessage(f"Hello, where do I live? {tag}")]}, thread)
    result = agent.invoke({"messages": [HumanMessage(f"Where does the user live, again? {tag}")]}, thread)

    assert [m.content for m in result["messages"]] == [
        f"Hello, where do I live? {tag}",
        f"First answer ({tag}).",
        f"Where does the user live, again? {tag}",
        f"Second ({tag}).",
    ]
    assert_memory_in_system_prompt(inputs, calls=2)
    assert result["messages"][-1].response_metadata["hindsight"]["document_id"] == f"thread-{tag}"
    assert (
        result["messages"][-1].response_metadata["hindsight"]["query"]
        == f"Where does the user live, again? {tag}"
    )
    assert sorted(bank.exchanges(tag)) == [
        f"user: Hello, where do I live? {tag}\nassistant: First answer ({tag}).",
        f"user: Where does the user live, again? {tag}\nassistant: Second ({tag}).",
    ]


async def test_async_agent_sets_up_the_bank_with_its_mission(
    hindsight_server: str, bank_id: str, inputs: ModelInputs
) -> None:
    agent = create_agent(
        scripted("ok", tool_call=False),
        middleware=[
            HindsightMiddleware(
                hindsight_api_url=hindsight_server, mission="Remember where the user lives.", max_retries=0
            )
        ],
    )
    await agent.ainvoke(
        {"messages": [HumanMessage("hi")]}, {"callbacks": [inputs]}, context={"bank_id": bank_id}
    )
    with HindsightClient(hindsight_server) as client:
        assert client.get_bank(bank_id).reflect_mission == "Remember where the user lives."


def test_missing_bank_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    agent = create_agent(scripted("x", tool_call=False), middleware=[HindsightMiddleware()])
    with pytest.raises(ConfigurationError, match="bank_id"):
        agent.invoke({"messages": [HumanMessage("hi")]})


def test_bad_option_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="'max_memory_tokenz'"):
        HindsightMiddleware(max_memory_tokenz=10)


async def test_hindsight_down_the_agent_still_answers(closed_port_url: str, inputs: ModelInputs) -> None:
    agent = create_agent(
        scripted("Still here.", tool_call=False),
        middleware=[
            HindsightMiddleware(
                bank_id="any", hindsight_api_url=closed_port_url, max_retries=0, store_conversations=False
            )
        ],
    )
    result = await agent.ainvoke({"messages": [HumanMessage("Hello?")]}, {"callbacks": [inputs]})
    answer = result["messages"][-1]
    assert answer.content == "Still here."
    assert "APIConnectionError" in answer.response_metadata["hindsight"]["error"]
    assert not any(MEMORY_OPEN in t for t in inputs.texts)


@pytest.mark.filterwarnings(
    "error::DeprecationWarning", "error::PendingDeprecationWarning", "error::FutureWarning"
)
async def test_no_deprecation_warnings(bank: Bank, make_bank: Callable[[], Bank]) -> None:
    middleware = HindsightMiddleware(bank_id=bank.bank_id, hindsight_api_url=bank.url)
    agent = create_agent(scripted("a"), tools=[get_weather], system_prompt="x", middleware=[middleware])
    agent.invoke({"messages": [HumanMessage("hi")]})
    agent = create_agent(scripted("b"), tools=[get_weather], system_prompt="x", middleware=[middleware])
    await agent.ainvoke({"messages": [HumanMessage("hi")]})
    bank.settle()
