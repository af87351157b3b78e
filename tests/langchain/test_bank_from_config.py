"""``bank_id_from_config``: RunnableWithHindsight and HindsightMiddleware take the bank from the app's own
``config["configurable"]`` key (e.g. ``user_id``), per call, against the real Hindsight server."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from hindsight_core import ConfigurationError
from hindsight_core.pipeline import MEMORY_OPEN
from langchain_hindsight import BANK_KEY, HindsightMiddleware, RunnableWithHindsight
from tests.langchain.conftest import Bank, ModelInputs

pytestmark = pytest.mark.server


def model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=(AIMessage("Sure.") for _ in itertools.count()))


def system_text(inputs: ModelInputs, call: int = 0) -> str:
    return "\n".join(m.text for m in inputs.calls[call] if isinstance(m, SystemMessage))


def test_runnable_takes_the_bank_from_the_apps_key(make_bank: Any, inputs: ModelInputs) -> None:
    alice: Bank = make_bank()
    alice.seed("Alice rides a red bicycle.")
    chat = RunnableWithHindsight(model(), bank_id_from_config="user_id", hindsight_api_url=alice.url)

    reply = chat.invoke(
        "What colour is my bicycle?",
        {"configurable": {"user_id": alice.bank_id}, "callbacks": [inputs]},
    )

    assert reply.response_metadata["hindsight"]["bank_id"] == alice.bank_id
    assert "Alice rides a red bicycle." in system_text(inputs)
    assert {s.id for s in chat.config_specs} >= {BANK_KEY, "user_id"}


def test_runnable_precedence_and_errors(make_bank: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    static: Bank = make_bank()
    pinned = RunnableWithHindsight(
        model(), bank_id=static.bank_id, bank_id_from_config="user_id", hindsight_api_url=static.url
    )
    reply = pinned.invoke("hi", {"configurable": {"user_id": "someone-else"}})
    assert reply.response_metadata["hindsight"]["bank_id"] == static.bank_id  # a static bank wins
    explicit = pinned.invoke("hi", {"configurable": {"user_id": "someone-else", BANK_KEY: static.bank_id}})
    assert explicit.response_metadata["hindsight"]["bank_id"] == static.bank_id

    keyed = RunnableWithHindsight(
        model(), bank_id_from_config="user_id", hindsight_api_url=static.url, store_conversations=False
    )
    with pytest.raises(ConfigurationError, match=r"config\['configurable'\]\['user_id'\] is not set"):
        keyed.invoke("hi")
    with pytest.raises(ConfigurationError, match=r"\['user_id'\] names the Hindsight bank"):
        keyed.invoke("hi", {"configurable": {"user_id": {"id": 1}}})
    numeric = keyed.invoke("hi", {"configurable": {"user_id": 42}})
    assert numeric.response_metadata["hindsight"]["bank_id"] == "42"
    with pytest.raises(ConfigurationError, match="bank_id_from_config"):
        RunnableWithHindsight(model(), bank_id_from_config=3)  # type: ignore[arg-type]


def test_middleware_takes_the_bank_from_the_apps_key(make_bank: Any, inputs: ModelInputs) -> None:
    bob: Bank = make_bank()
    bob.seed("Bob collects antique maps.")
    agent = create_agent(
        model(),
        system_prompt="You are helpful.",
        middleware=[HindsightMiddleware(bank_id_from_config="user_id", hindsight_api_url=bob.url)],
    )

    result = agent.invoke(
        {"messages": [HumanMessage("Which maps do I collect?")]},
        {"configurable": {"user_id": bob.bank_id}, "callbacks": [inputs]},
    )

    assert "Bob collects antique maps." in system_text(inputs)
    assert MEMORY_OPEN not in result["messages"][-1].text
    assert result["messages"][-1].response_metadata["hindsight"]["bank_id"] == bob.bank_id


async def test_two_users_concurrently_through_one_runnable(make_bank: Any) -> None:
    alice: Bank = make_bank()
    bob: Bank = make_bank()
    alice.seed("Alice's favourite tea is sencha.")
    bob.seed("Bob's favourite tea is earl grey.")
    chat = RunnableWithHindsight(model(), bank_id_from_config="user_id", hindsight_api_url=alice.url)

    async def ask(bank: Bank) -> dict[str, Any]:
        reply = await chat.ainvoke("Which tea is my favourite?", {"configurable": {"user_id": bank.bank_id}})
        record: dict[str, Any] = reply.response_metadata["hindsight"]
        return record

    for _ in range(3):
        first, second = await asyncio.gather(ask(alice), ask(bob))
        assert first["bank_id"] == alice.bank_id
        assert second["bank_id"] == bob.bank_id
        assert "sencha" in first["memory_context"]
        assert "earl grey" not in first["memory_context"]
        assert "earl grey" in second["memory_context"]
        assert "sencha" not in second["memory_context"]
