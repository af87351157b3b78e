"""Agent turns through LangChain: one lookup per user message, the turn stored once (the core's rules).

The recall requests that reach the server are counted by a pass-through proxy in front of the real server
(``tests.reliability.hindsight_faults``), the stored turns by the storage worker's counter.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from hindsight_core.storage import default_worker
from langchain_hindsight import HindsightMiddleware, RunnableWithHindsight
from tests.langchain.conftest import Bank, ModelInputs, ToolCallingFake
from tests.reliability.hindsight_faults import HindsightFaults

pytestmark = pytest.mark.server

FACT = "The user's favourite city is Porto."
QUESTION = "Which city do I like best? Plan a weekend there."
ANSWER = "Porto it is: Ribeira on Saturday, the Douro on Sunday."
STEPS = 5


@pytest.fixture
def counting(hindsight_server: str) -> Iterator[HindsightFaults]:
    proxy = HindsightFaults(hindsight_server)
    try:
        yield proxy
    finally:
        proxy.close()


@tool
def search(page: int) -> str:
    """Search travel guides (one page of results)."""
    return f"results page {page}"


def agent_model() -> ToolCallingFake:
    """A model that searches ``STEPS`` times, then answers."""
    replies = [
        AIMessage("", tool_calls=[{"name": "search", "args": {"page": step}, "id": f"call-{step}"}])
        for step in range(STEPS)
    ]
    return ToolCallingFake(messages=iter([*replies, AIMessage(ANSWER)]))


def _submitted() -> int:
    return default_worker().stats().submitted


def test_runnable_agent_loop_recalls_once_and_stores_the_turn_once(
    bank: Bank, counting: HindsightFaults, inputs: ModelInputs
) -> None:
    bank.seed(FACT)
    runnable = RunnableWithHindsight(
        agent_model(), bank_id=bank.bank_id, hindsight_api_url=counting.url, session_id=uuid.uuid4().hex
    )
    before = _submitted()
    messages: list[BaseMessage] = [HumanMessage(QUESTION)]
    reply = runnable.invoke(messages, config={"callbacks": [inputs]})
    while reply.tool_calls:
        messages.append(reply)
        for call in reply.tool_calls:
            messages.append(ToolMessage(search.invoke(call["args"]), tool_call_id=call["id"]))
        reply = runnable.invoke(messages, config={"callbacks": [inputs]})
    assert reply.content == ANSWER
    assert counting.hits["recall"] == 1
    assert len(inputs.calls) == STEPS + 1
    assert all(FACT in text for text in inputs.texts)  # every step saw the memory
    assert _submitted() - before == 1
    stored = bank.stored(ANSWER)
    assert len(stored) == 1
    assert QUESTION in stored[0]
    assert "results page" not in stored[0]
    assert "search" not in stored[0]


async def test_middleware_agent_recalls_once_and_stores_the_turn_once(
    bank: Bank, counting: HindsightFaults, inputs: ModelInputs
) -> None:
    bank.seed(FACT)
    agent = create_agent(
        agent_model(),
        tools=[search],
        middleware=[HindsightMiddleware(bank_id=bank.bank_id, hindsight_api_url=counting.url)],
    )
    before = _submitted()
    result: dict[str, Any] = await agent.ainvoke(
        {"messages": [HumanMessage(QUESTION)]},
        config={"callbacks": [inputs], "configurable": {"thread_id": uuid.uuid4().hex}},
    )
    assert result["messages"][-1].content == ANSWER
    assert counting.hits["recall"] == 1
    assert len(inputs.calls) == STEPS + 1
    assert all(FACT in text for text in inputs.texts)
    assert _submitted() - before == 1
    stored = bank.stored(ANSWER)
    assert len(stored) == 1
    assert QUESTION in stored[0]
    assert "results page" not in stored[0]
