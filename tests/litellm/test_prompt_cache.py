"""Memory that keeps the provider's prompt cache: what reaches the provider, turn after turn.

Provider prompt caches serve the longest prefix a prompt shares with earlier prompts. These tests check
the properties that make it possible, on the OpenAI and the Anthropic wire: identical calls inject
identical bytes; in ``system_message`` mode the caller's system text comes first, untouched; in the
``*_user`` modes everything before the latest user message is exactly the caller's (the block sits next
to that message only). The shares themselves are measured in ``bench/prompt_cache.py``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import hindsight_litellm as hl
from hindsight_core.pipeline import MEMORY_OPEN
from tests.helpers import seed_bank
from tests.providers import FakeAnthropic, FakeOpenAI

pytestmark = pytest.mark.server

SYSTEM = "You are a concise travel assistant. " * 20
FACTS = [
    "The user's favourite city is Porto.",
    "The user is allergic to peanuts.",
    "The user travels with a dog named Pico.",
    "The user prefers trains to planes.",
    "The user's budget for hotels is 120 euros a night.",
]
QUESTIONS = [  # each shares words with a fact: the local server's offline embeddings match words
    "Which city is my favourite city?",
    "What am I allergic to?",
    "Can my dog Pico travel with me?",
    "Do I prefer trains or planes?",
]


def _conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for index in range(turns):
        messages.append({"role": "user", "content": QUESTIONS[index]})
        if index < turns - 1:
            messages.append({"role": "assistant", "content": f"Answer {index}."})
    return messages


def _call(wire: str, fake: FakeOpenAI | FakeAnthropic, messages: list[dict[str, Any]], **kwargs: Any) -> None:
    model = "openai/gpt-4o-mini" if wire == "openai" else "anthropic/claude-3-5-sonnet-20241022"
    hl.completion(model=model, api_base=fake.base_url, api_key="sk-test", messages=messages, **kwargs)


def _wire_messages(wire: str, body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The system prompt and the messages of a provider request."""
    if wire == "openai":
        messages = body["messages"]
        return messages[0]["content"], messages[1:]
    return body["system"], body["messages"]


@pytest.fixture
def travel_bank(hindsight_server: str, bank_id: str) -> str:
    seed_bank(hindsight_server, bank_id, FACTS)
    return bank_id


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["system_message", "prepend_user", "append_user"])
def test_the_prefix_before_the_memory_is_the_callers_own(
    wire: str,
    mode: str,
    hindsight_server: str,
    travel_bank: str,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake = fake_openai if wire == "openai" else fake_anthropic
    hl.configure(
        hindsight_api_url=hindsight_server,
        bank_id=travel_bank,
        injection_mode=mode,
        store_conversations=False,
    )
    plain = fake_openai if wire == "openai" else fake_anthropic
    for turns in range(1, len(QUESTIONS) + 1):
        messages = _conversation(turns)
        _call(wire, fake, messages, hindsight_session_id="trip")
        system, sent = _wire_messages(wire, fake.last_json)
        record = hl.get_last_injection_debug()
        assert record is not None
        assert record.injected, record.skipped_reason
        system_text = system if isinstance(system, str) else system[0]["text"]
        assert system_text.startswith(SYSTEM.strip())  # the caller's system text first, untouched
        if mode == "system_message":
            assert MEMORY_OPEN in json.dumps(system)
            continue
        assert MEMORY_OPEN not in json.dumps(system)
        # Only the latest user message carries the block; everything before it is the caller's own.
        carrying = [index for index, message in enumerate(sent) if MEMORY_OPEN in json.dumps(message)]
        assert carrying == [len(sent) - 1]
        _call(wire, plain, messages, hindsight_inject_memories=False)
        _, own = _wire_messages(wire, plain.last_json)
        assert sent[:-1] == own[:-1]
        assert QUESTIONS[turns - 1] in json.dumps(sent[-1])


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_identical_calls_inject_identical_bytes(
    wire: str, hindsight_server: str, travel_bank: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    """Two conversations asking the same thing, each with its own lookup: the same request bytes."""
    fake = fake_openai if wire == "openai" else fake_anthropic
    hl.configure(hindsight_api_url=hindsight_server, bank_id=travel_bank, store_conversations=False)
    bodies = []
    for _ in range(2):
        _call(wire, fake, _conversation(3), hindsight_session_id=uuid.uuid4().hex)
        record = hl.get_last_injection_debug()
        assert record is not None
        assert record.injected
        assert not record.lookup_reused  # a lookup of its own each time
        bodies.append(fake.requests[-1].body)
    assert bodies[0] == bodies[1]
