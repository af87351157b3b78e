"""LangGraph nodes ``create_recall_node()`` / ``create_retain_node()`` in a ``StateGraph(MessagesState)``,
against the real Hindsight server: the model sees the memory, the turn is stored once, and no run carries
an earlier run's memory block in the graph's state (checkpointed across runs of one thread)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from hindsight_core import ConfigurationError
from hindsight_core.pipeline import MEMORY_OPEN
from langchain_hindsight import MEMORY_MESSAGE_ID, create_recall_node, create_retain_node, is_memory_message
from tests.helpers import document_text, wait_for
from tests.langchain.conftest import Bank, ModelInputs

pytestmark = pytest.mark.server

FACT = "The user plays the cello in an orchestra."


def replies(text: str) -> GenericFakeChatModel:
    """A model answering ``text`` every time, with a new message each time (a reused message keeps the id
    LangChain gave it, and LangGraph would then replace the earlier answer in the state)."""
    return GenericFakeChatModel(messages=(AIMessage(text) for _ in itertools.count()))


def build(model: GenericFakeChatModel, bank: Bank, *, retain: bool = True, **settings: Any) -> Any:
    """recall -> model -> retain (-> END), checkpointed; the bank is config["configurable"]["user_id"]."""

    def call_model(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"], config)]}

    async def acall_model(state: MessagesState, config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        return {"messages": [await model.ainvoke(state["messages"], config)]}

    graph = StateGraph(MessagesState)
    options = {"bank_id_from_config": "user_id", "hindsight_api_url": bank.url, **settings}
    graph.add_node("recall", create_recall_node(**options))
    graph.add_node("model", RunnableLambda(call_model, afunc=acall_model))
    graph.add_edge(START, "recall")
    graph.add_edge("recall", "model")
    if retain:
        graph.add_node("retain", create_retain_node(**options))
        graph.add_edge("model", "retain")
        graph.add_edge("retain", END)
    else:
        graph.add_edge("model", END)
    return graph.compile(checkpointer=InMemorySaver())


def run(graph: Any, flavour: str, text: str, config: RunnableConfig) -> dict[str, Any]:
    value = {"messages": [HumanMessage(text)]}
    if flavour == "sync":
        result: dict[str, Any] = graph.invoke(value, config)
    else:
        result = asyncio.run(graph.ainvoke(value, config))
    return result


def blocks(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    return [m for m in messages if MEMORY_OPEN in m.text]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_recall_model_retain_graph(flavour: str, bank: Bank, inputs: ModelInputs) -> None:
    bank.seed(FACT)
    tag = uuid.uuid4().hex[:8]
    model = replies(f"Lovely ({tag}).")
    graph = build(model, bank)
    thread = f"thread-{tag}"
    config: RunnableConfig = {
        "configurable": {"thread_id": thread, "user_id": bank.bank_id},
        "callbacks": [inputs],
    }

    first = run(graph, flavour, f"Which instrument do I play in the orchestra? {tag}", config)
    second = run(graph, flavour, f"And the user plays the cello where? {tag}", config)

    # The model saw the memory, once, right after the user's message, on each run.
    assert len(inputs.calls) == 2
    for seen in inputs.calls:
        (block,) = blocks(seen)
        assert isinstance(block, SystemMessage)
        assert FACT in block.text
        assert seen[-1] == block
        assert isinstance(seen[-2], HumanMessage)
    assert inputs.calls[1][:2] == first["messages"]  # run 2 starts from run 1's state, with no block in it
    # The state never keeps a memory block: not after run 1, not after run 2.
    for state in (first, second):
        assert not blocks(state["messages"])
        assert not any(is_memory_message(m) for m in state["messages"])
    assert [type(m) for m in second["messages"]] == [HumanMessage, AIMessage] * 2

    # Each turn stored once, in the thread's document, without the memory block.
    def stored() -> str | None:
        text = document_text(bank.url, bank.bank_id, thread)
        return text if text and text.count("assistant:") >= 2 else None

    text: str = wait_for(stored, what="both turns to be stored")
    assert text.count(f"user: Which instrument do I play in the orchestra? {tag}") == 1
    assert text.count(f"user: And the user plays the cello where? {tag}") == 1
    assert text.count(f"assistant: Lovely ({tag}).") == 2
    assert FACT not in text
    assert MEMORY_OPEN not in text


def test_without_a_retain_node_the_next_recall_replaces_the_old_block(
    bank: Bank, inputs: ModelInputs
) -> None:
    bank.seed(FACT)
    model = replies("Noted.")
    graph = build(model, bank, retain=False, store_conversations=False)
    config: RunnableConfig = {
        "configurable": {"thread_id": uuid.uuid4().hex, "user_id": bank.bank_id},
        "callbacks": [inputs],
    }

    first = run(graph, "sync", "Do I play the cello?", config)
    second = run(graph, "sync", "Which orchestra do I play the cello in?", config)

    (old,) = blocks(first["messages"])
    (new,) = blocks(second["messages"])  # one block: the second run's
    assert new.id != old.id
    assert str(new.id).startswith(MEMORY_MESSAGE_ID)
    assert len(blocks(inputs.calls[1])) == 1  # the model never saw two blocks
    assert second["messages"].index(new) == 3  # right after the second run's user message


def test_no_memory_found_adds_no_block(make_bank: Any, inputs: ModelInputs) -> None:
    empty: Bank = make_bank()
    model = replies("Hello.")
    graph = build(model, empty, store_conversations=False)
    config: RunnableConfig = {
        "configurable": {"thread_id": uuid.uuid4().hex, "user_id": empty.bank_id},
        "callbacks": [inputs],
    }
    result = run(graph, "sync", "Hi there", config)
    assert [type(m) for m in result["messages"]] == [HumanMessage, AIMessage]
    assert not blocks(inputs.calls[0])


def test_hindsight_down_the_graph_answers(closed_port_url: str, inputs: ModelInputs) -> None:
    model = replies("Still here.")
    offline = Bank(closed_port_url, "anyone", None)  # type: ignore[arg-type]
    graph = build(model, offline, max_retries=0, store_conversations=False)
    config: RunnableConfig = {"configurable": {"thread_id": "t", "user_id": "anyone"}, "callbacks": [inputs]}
    result = run(graph, "sync", "Hello", config)
    assert result["messages"][-1].text == "Still here."
    assert not blocks(inputs.calls[0])


def test_no_bank_names_the_key(hindsight_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    node = create_recall_node(bank_id_from_config="user_id", hindsight_api_url=hindsight_server)
    with pytest.raises(ConfigurationError, match=r"config\['configurable'\]\['user_id'\] is not set"):
        node.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {}})
    with pytest.raises(ConfigurationError, match="unknown create_retain_node option 'budgte'"):
        create_retain_node(budgte="low")
