"""Agent-driven memory: ``create_hindsight_tools()`` in ``langchain.agents.create_agent`` agents, against the
real Hindsight server.

The model is LangChain's ``GenericFakeChatModel`` taught to accept tools; its scripted replies are real tool
calls (``AIMessage(tool_calls=[...])``), so the agent runs the Hindsight tools through LangChain's own tool
node and the model's next reply sees their ``ToolMessage``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from hindsight_core import APIConnectionError, ConfigurationError
from hindsight_core.pipeline import MEMORY_OPEN, count_tokens
from hindsight_core.storage import StorageWorker
from hindsight_core.tools import RECALL_TOOL
from langchain_hindsight import BANK_KEY, HindsightTool, create_hindsight_tools, flush_storage
from tests.helpers import async_recall_threads, document_text, wait_for
from tests.langchain.conftest import Bank, ToolCallingFake

pytestmark = pytest.mark.server

FACT = "The user is allergic to peanuts."


def calling(*calls: tuple[str, dict[str, Any]], final: str = "Done.") -> ToolCallingFake:
    """A model that makes ``calls`` (tool name, arguments) in one step, then answers ``final``."""
    tool_calls = [
        {"name": name, "args": args, "id": f"call-{uuid.uuid4().hex[:8]}", "type": "tool_call"}
        for name, args in calls
    ]
    return ToolCallingFake(messages=iter([AIMessage("", tool_calls=tool_calls), AIMessage(final)]))


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def ask(text: str) -> Any:  # the agent input (a TypedDict for the type checker)
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
def own_worker() -> Iterator[StorageWorker]:
    """A storage worker of the test's own: turns that cannot be stored never hold up the shared one."""
    worker = StorageWorker(retry_initial=0.05, retry_max=0.2, exit_timeout=0.5)
    yield worker
    worker.close(timeout=0)


def test_the_tools_are_what_a_model_is_told_about(hindsight_server: str) -> None:
    tools = create_hindsight_tools(bank_id="b", hindsight_api_url=hindsight_server)
    assert [t.name for t in tools] == ["hindsight_retain", "hindsight_recall", "hindsight_reflect"]
    schema = convert_to_openai_tool(tools[1])["function"]
    assert schema["name"] == "hindsight_recall"
    assert "long-term memory" in schema["description"]
    assert schema["parameters"]["required"] == ["query"]
    assert schema["parameters"]["properties"]["query"]["type"] == "string"
    assert [t.name for t in create_hindsight_tools(include=("recall",))] == ["hindsight_recall"]
    with pytest.raises(ConfigurationError, match="unknown memory tool 'forget'"):
        create_hindsight_tools(include=("recall", "forget"))
    with pytest.raises(ConfigurationError, match="did you mean 'budget'"):
        create_hindsight_tools(budgte="low")
    with pytest.raises(ConfigurationError, match="bank_id_from_config"):
        create_hindsight_tools(bank_id_from_config="")
    specs = {s.id for s in create_hindsight_tools(bank_id_from_config="user_id")[0].config_specs}
    assert specs == {BANK_KEY, "user_id"}


def test_agent_recall_gets_the_stored_fact_in_its_tool_message(bank: Bank) -> None:
    bank.seed(FACT)
    tools = create_hindsight_tools(bank_id=bank.bank_id, hindsight_api_url=bank.url)
    agent = create_agent(
        calling(("hindsight_recall", {"query": "is the user allergic to peanuts"})), tools=tools
    )

    result = agent.invoke(ask("Can I eat satay?"))

    (message,) = tool_messages(result)
    assert message.name == "hindsight_recall"
    assert message.status == "success"
    assert MEMORY_OPEN in message.text
    assert FACT in message.text
    assert message.artifact["bank_id"] == bank.bank_id  # the debug record
    assert message.artifact["memories_used"] >= 1
    assert result["messages"][-1].text == "Done."


async def test_async_agent_uses_the_async_client_on_the_loop(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank.seed(FACT)
    threads = async_recall_threads(monkeypatch)
    tools = create_hindsight_tools(bank_id=bank.bank_id, hindsight_api_url=bank.url)
    agent = create_agent(calling(("hindsight_recall", {"query": "allergic to peanuts"})), tools=tools)

    result = await agent.ainvoke(ask("Can I eat satay?"))

    assert FACT in tool_messages(result)[0].text
    assert threads == [threading.get_ident()]  # awaited on the event loop's thread, not in a worker thread


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_agent_retain_makes_the_fact_recallable_in_the_conversation_document(
    flavour: str, bank: Bank
) -> None:
    fact = f"The user's locker code is {uuid.uuid4().hex[:8]}."
    thread = f"thread-{uuid.uuid4().hex[:8]}"
    tools = create_hindsight_tools(
        bank_id=bank.bank_id, hindsight_api_url=bank.url, tags=["app:test"], include=("retain",)
    )
    agent = create_agent(
        calling(("hindsight_retain", {"content": fact}), final="I'll remember."), tools=tools
    )
    config: Any = {"configurable": {"thread_id": thread}}

    if flavour == "sync":
        result = agent.invoke(ask(f"Remember: {fact}"), config=config)
    else:
        result = asyncio.run(agent.ainvoke(ask(f"Remember: {fact}"), config=config))

    (message,) = tool_messages(result)
    assert message.text == "Noted: it is being saved to long-term memory in the background."
    assert result["messages"][-1].text == "I'll remember."
    bank.wait_for(fact)  # recallable afterwards
    assert flush_storage(timeout=30)
    assert document_text(bank.url, bank.bank_id, thread) == fact  # the conversation's document (thread)
    tagged = bank.client.recall(bank.bank_id, fact, tags=["app:test"], tags_match="all")
    assert any(fact in r.text for r in tagged.results)


def test_sync_storage_waits_until_stored(bank: Bank) -> None:
    fact = f"The user's bike is {uuid.uuid4().hex[:8]}."
    (retain,) = create_hindsight_tools(
        bank_id=bank.bank_id, hindsight_api_url=bank.url, sync_storage=True, include=("retain",)
    )
    assert retain.invoke({"content": fact}) == "Saved to long-term memory."
    bank.wait_for(fact)


def test_hindsight_down_every_tool_answers_and_the_agent_finishes(
    closed_port_url: str, own_worker: StorageWorker
) -> None:
    tools = create_hindsight_tools(
        bank_id="somebody", hindsight_api_url=closed_port_url, max_retries=0, storage=own_worker
    )
    model = calling(
        ("hindsight_recall", {"query": "allergies"}),
        ("hindsight_reflect", {"query": "What does the user like?"}),
        ("hindsight_retain", {"content": "The user likes tea."}),
        final="Answered without memory.",
    )
    result = create_agent(model, tools=tools).invoke(ask("Hello"))

    messages = {m.name: m for m in tool_messages(result)}
    for name in ("hindsight_recall", "hindsight_reflect"):
        assert messages[name].text.startswith(
            "Long-term memory is unavailable right now (APIConnectionError)"
        )
        assert messages[name].artifact["error"].startswith("APIConnectionError")
    assert messages["hindsight_retain"].status == "success"  # queued: the worker retries in the background
    assert result["messages"][-1].text == "Answered without memory."


def test_strict_raises_when_hindsight_is_down(closed_port_url: str) -> None:
    (recall,) = create_hindsight_tools(
        bank_id="somebody", hindsight_api_url=closed_port_url, max_retries=0, strict=True, include=["recall"]
    )
    with pytest.raises(APIConnectionError):
        recall.invoke({"query": "allergies"})


def test_unknown_bank_is_nothing_stored_yet(hindsight_server: str) -> None:
    (recall,) = create_hindsight_tools(
        bank_id=f"never-{uuid.uuid4().hex}", hindsight_api_url=hindsight_server, include=["recall"]
    )
    assert recall.invoke({"query": "anything"}) == "Nothing is stored in long-term memory yet."


def test_bad_arguments_from_the_model_get_a_clear_error_message(bank: Bank) -> None:
    tools = create_hindsight_tools(bank_id=bank.bank_id, hindsight_api_url=bank.url)
    model = calling(
        ("hindsight_recall", {"query": "   "}),
        ("hindsight_recall", {"query": 42}),
        ("hindsight_reflect", {}),
        ("hindsight_retain", {"content": "word " * 5000}),
        ("hindsight_retain", {"content": "x", "importance": "high"}),
    )
    result = create_agent(model, tools=tools).invoke(ask("Hello"))

    texts = [m.text for m in tool_messages(result)]
    assert all(m.status == "error" for m in tool_messages(result))
    assert texts[0].startswith("'query' is empty.")
    assert texts[1].startswith("'query' must be text (a string), not a number.")
    assert texts[2].startswith("Missing 'query'.")
    assert texts[3].startswith("'content' is too long (5,001 tokens; at most 2,000")
    assert texts[4] == "Unknown argument 'importance': this tool takes only 'content'."
    assert result["messages"][-1].text == "Done."
    assert bank.stored("word") == []  # nothing was stored


def test_no_bank_is_a_tool_error_naming_the_key(
    hindsight_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    tools = create_hindsight_tools(bank_id_from_config="user_id", hindsight_api_url=hindsight_server)
    result = create_agent(calling(("hindsight_recall", {"query": "x"})), tools=tools).invoke(ask("Hi"))

    (message,) = tool_messages(result)
    assert message.status == "error"
    assert message.text.startswith("hindsight_recall: config['configurable']['user_id'] is not set")
    assert BANK_KEY in message.text
    assert result["messages"][-1].text == "Done."


def test_a_static_bank_wins_over_the_config_key(make_bank: Any) -> None:
    static: Bank = make_bank()
    (recall,) = create_hindsight_tools(
        bank_id=static.bank_id,
        bank_id_from_config="user_id",
        hindsight_api_url=static.url,
        include=["recall"],
    )
    message = recall.invoke(
        {"name": "hindsight_recall", "args": {"query": "x"}, "id": "c1", "type": "tool_call"},
        config={"configurable": {"user_id": "someone-else"}},
    )
    assert message.artifact["bank_id"] == static.bank_id


async def test_two_users_concurrently_each_get_their_own_memory(make_bank: Any) -> None:
    alice: Bank = make_bank()
    bob: Bank = make_bank()
    alice.seed("Alice's dog is called Rex.")
    bob.seed("Bob's cat is called Miso.")
    tools = create_hindsight_tools(bank_id_from_config="user_id", hindsight_api_url=alice.url)
    notes = {"alice": f"Alice note {uuid.uuid4().hex[:8]}", "bob": f"Bob note {uuid.uuid4().hex[:8]}"}

    async def run(user: str, bank: Bank) -> list[ToolMessage]:
        model = calling(
            ("hindsight_recall", {"query": "dog cat called"}), ("hindsight_retain", {"content": notes[user]})
        )
        agent = create_agent(model, tools=tools)
        result = await agent.ainvoke(
            ask("What is my pet called?"), config={"configurable": {"user_id": bank.bank_id}}
        )
        return tool_messages(result)

    for _ in range(3):  # a few rounds, so that the calls really interleave
        first, second = await asyncio.gather(run("alice", alice), run("bob", bob))
        recall_a, recall_b = (next(m for m in ms if m.name == "hindsight_recall") for ms in (first, second))
        assert "Rex" in recall_a.text
        assert "Miso" not in recall_a.text
        assert "Miso" in recall_b.text
        assert "Rex" not in recall_b.text
    alice.wait_for(notes["alice"])
    bob.wait_for(notes["bob"])
    assert not any(notes["bob"] in t for t in alice.world(notes["bob"]))
    assert not any(notes["alice"] in t for t in bob.world(notes["alice"]))


def test_tool_results_stay_within_max_memory_tokens(bank: Bank) -> None:
    facts = [f"Fact {i}: the user once visited city number {i} and liked its old harbour." for i in range(30)]
    bank.client.retain_batch(bank.bank_id, [{"content": f} for f in facts])
    wait_for(lambda: len(bank.world("city harbour")) >= 10, what="the facts to be recallable")
    budget = 120
    tools = create_hindsight_tools(bank_id=bank.bank_id, hindsight_api_url=bank.url, max_memory_tokens=budget)
    by_name = {t.name: t for t in tools}

    recalled = by_name["hindsight_recall"].invoke({"query": "which cities did the user visit, harbour"})
    reflected = by_name["hindsight_reflect"].invoke({"query": "Which cities did the user like?"})

    assert MEMORY_OPEN in recalled
    assert "harbour" in recalled  # some memories fit ...
    assert count_tokens(recalled) <= budget  # ... and the whole result is within the budget
    assert count_tokens(reflected) <= budget
    unlimited = create_hindsight_tools(bank_id=bank.bank_id, hindsight_api_url=bank.url, include=["recall"])
    assert count_tokens(unlimited[0].invoke({"query": "which cities did the user visit, harbour"})) > budget


def test_tools_are_base_tools_with_a_native_async_implementation() -> None:
    (tool,) = create_hindsight_tools(include=["recall"])
    assert isinstance(tool, BaseTool)
    assert isinstance(tool, HindsightTool)
    assert HindsightTool._arun is not BaseTool._arun  # not LangChain's run-the-sync-one-in-a-thread default
    assert tool.args_schema == RECALL_TOOL.json_schema()
