"""hindsight_litellm.completion/acompletion and enable(): memory reaches the provider, stored once."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest

import hindsight_litellm as hl
from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.storage import default_worker
from tests.helpers import document_text, flush_storage, wait_for
from tests.litellm.conftest import openai_call
from tests.providers import FakeAnthropic, FakeOpenAI, assert_no_hindsight_keys

pytestmark = pytest.mark.server

QUESTION = "What is my favourite colour?"


def system_text(body: dict[str, Any]) -> str:
    systems = [m for m in body["messages"] if m["role"] == "system"]
    assert len(systems) <= 1
    return str(systems[0]["content"]) if systems else ""


def stored(url: str, bank: str, *expected: str) -> str:
    """The text stored for the last call's conversation, once it contains every ``expected`` string."""
    flush_storage()
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.document_id
    document = str(debug.document_id)

    def ready() -> str | None:
        text = document_text(url, bank, document)
        return text if text is not None and all(e in text for e in expected) else None

    return str(wait_for(ready, what=f"document {document} containing {expected}"))


def test_recall_mode_system_message_reaches_the_provider(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    response = hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    assert response.choices[0].message.content
    body = fake_openai.last_json
    system = system_text(body)
    assert system.startswith(MEMORY_OPEN)
    assert "# Relevant Memories" in system
    assert "[WORLD] The user's favourite colour is teal." in system
    assert body["messages"][-1] == {"role": "user", "content": QUESTION}
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.mode == "recall"
    assert debug.injected
    assert debug.results_count >= 1
    assert debug.memory_context == system
    assert debug.query == QUESTION
    assert debug.bank_id == seeded


def test_existing_system_prompt_gets_the_block_appended(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": QUESTION}]
    hl.completion(**openai_call(fake_openai, messages=messages))
    system = system_text(fake_openai.last_json)
    assert system.startswith("You are terse.\n\n" + MEMORY_OPEN)
    assert messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": QUESTION},
    ]


def test_prepend_user_mode_and_the_users_own_text_is_stored(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, injection_mode="prepend_user")
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    body = fake_openai.last_json
    assert system_text(body) == ""
    last = body["messages"][-1]["content"]
    assert last.startswith(MEMORY_OPEN)
    assert last.endswith("\n\n" + QUESTION)
    assert "teal" in last
    text = stored(hindsight_server, seeded, f"user: {QUESTION}")
    assert MEMORY_OPEN not in text
    assert "favourite colour is teal" not in text


def test_reflect_mode_injects_the_synthesized_context(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(
        hindsight_api_url=hindsight_server,
        bank_id=seeded,
        use_reflect=True,
        reflect_include_facts=True,
        reflect_context="I am a design assistant.",
    )
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    system = system_text(fake_openai.last_json)
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.mode == "reflect"
    assert debug.injected
    assert debug.reflect_text
    assert "# Memory Context" in system
    assert debug.reflect_text in system
    assert "Based on these memories:" in system
    assert "teal" in system


@pytest.mark.parametrize("mode", ["system_message", "prepend_user"])
@pytest.mark.parametrize("reflect", [False, True])
def test_anthropic_provider_gets_memories_in_every_mode(
    hindsight_server: str, seeded: str, fake_anthropic: FakeAnthropic, mode: str, reflect: bool
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, injection_mode=mode, use_reflect=reflect)
    hl.completion(
        model="anthropic/claude-sonnet-4-5-20250929",
        api_base=fake_anthropic.base_url,
        api_key="sk-ant-test",
        max_tokens=100,
        messages=[{"role": "user", "content": QUESTION}],
    )
    body = fake_anthropic.last_json
    assert_no_hindsight_keys(body)
    sent = str(body.get("system", "")) + str(body["messages"])
    assert sent.count(MEMORY_OPEN) == 1
    if mode == "system_message":
        assert MEMORY_OPEN in str(body.get("system"))
    else:
        assert MEMORY_OPEN in str(body["messages"][-1]["content"])
    assert ("teal" in sent) if not reflect else ("# Memory Context" in sent)


def test_no_hindsight_key_reaches_the_provider(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id="someone-else")
    options = {
        "hindsight_bank_id": seeded,
        "hindsight_query": "What colour does the user like?",
        "hindsight_budget": "high",
        "hindsight_max_memories": 2,
        "hindsight_max_memory_tokens": 2000,
        "hindsight_fact_types": ["world"],
        "hindsight_session_id": "session-7",
        "hindsight_document_id": "doc-7",
        "hindsight_tags": ["t1"],
        "hindsight_recall_tags": None,
        "hindsight_include_entities": False,
        "hindsight_trace": True,
        "hindsight_reflect_context": "ignored in recall mode",
        "hindsight_injection_mode": "system_message",
        "hindsight_verbose": True,
        "hindsight_store_conversations": True,
        "hindsight_api_url": hindsight_server,
    }
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "hi"}]), **options)
    hl.enable()
    litellm.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "hi"}]), **options)
    hl.disable()
    litellm.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "hi"}]), **options)
    assert len(fake_openai.requests) == 3
    for request in fake_openai.requests:
        assert_no_hindsight_keys(request)
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.bank_id == seeded
    assert debug.query == "What colour does the user like?"
    assert debug.memories_used <= 2
    assert debug.document_id == "session-7"  # session_id wins over the deprecated document_id (0.5.4)


def test_hindsight_query_overrides_the_last_user_message(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server)
    hl.set_defaults(bank_id=seeded)
    hl.enable()
    hl.completion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": "Help me with my project"}]),
        hindsight_query="What framework is the user building with?",
    )
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.query == "What framework is the user building with?"
    assert "FastAPI" in system_text(fake_openai.last_json)


def test_enable_plus_completion_injects_once_and_stores_once(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, document_id="conv-once")
    hl.enable()
    assert hl.is_enabled()
    first = "Remember: my favourite colour is still teal, and I live in Porto."
    second = "Is pytest still my favourite testing tool? I own a cat named Miso."
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": first}]))
    litellm.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": second}]))
    assert len(fake_openai.requests) == 2
    for request in fake_openai.requests:
        assert str(request.json).count(MEMORY_OPEN) == 1
    flush_storage()
    text = wait_for(lambda: (t := document_text(hindsight_server, seeded, "conv-once")) and second in t and t)
    assert text.count(first) == 1
    assert text.count(second) == 1
    assert MEMORY_OPEN not in text


def test_plain_litellm_without_enable_gets_no_memory(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    litellm.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    assert system_text(fake_openai.last_json) == ""
    assert not hl.is_enabled()
    assert hl.get_last_injection_debug() is None


def test_a_conversation_is_one_document_with_each_turn_once(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    fake_openai.reply = lambda body: f"Reply number {len(body['messages'])}."
    messages: list[dict[str, Any]] = []
    for turn in range(5):
        messages.append({"role": "user", "content": f"Turn {turn}: my lucky number is {turn * 7}."})
        response = hl.completion(**openai_call(fake_openai, messages=list(messages)))
        messages.append({"role": "assistant", "content": response.choices[0].message.content})
    text = stored(
        hindsight_server, seeded, *(f"Turn {turn}: my lucky number is {turn * 7}." for turn in range(5))
    )
    for turn in range(5):
        assert text.count(f"Turn {turn}: my lucky number is {turn * 7}.") == 1
    assert text.count("assistant: Reply number") == 5
    assert MEMORY_OPEN not in text


async def test_async_completion_gets_memories_and_stores(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    response = await hl.acompletion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}])
    )
    assert response.choices[0].message.content
    assert "teal" in system_text(fake_openai.last_json)
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.injected
    hl.enable()
    await litellm.acompletion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": "What am I building?"}])
    )
    assert "FastAPI" in system_text(fake_openai.last_json)
    stored(hindsight_server, seeded, "user: What am I building?")


def test_streamed_reply_is_stored_once(hindsight_server: str, seeded: str, fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    fake_openai.reply = "Teal is a lovely colour, and you like it."
    stream = hl.completion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}], stream=True)
    )
    chunks = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert "".join(chunks) == "Teal is a lovely colour, and you like it."
    assert len(chunks) > 2
    assert "teal" in system_text(fake_openai.last_json)
    text = stored(hindsight_server, seeded, "assistant: Teal is a lovely colour")
    assert text.count("assistant: Teal is a lovely colour, and you like it.") == 1


async def test_async_streamed_reply_is_stored(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    hl.enable()
    fake_openai.reply = "Streaming asynchronously works."
    stream = await litellm.acompletion(
        **openai_call(
            fake_openai, messages=[{"role": "user", "content": "Does async streaming work?"}], stream=True
        )
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(parts) == "Streaming asynchronously works."
    stored(hindsight_server, seeded, "assistant: Streaming asynchronously works.")


def test_stream_closed_early_stores_what_arrived(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    fake_openai.reply = "one two three four five six seven eight nine ten eleven twelve"
    stream = hl.completion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": "Count."}], stream=True)
    )
    first = next(iter(stream))
    stream.close()
    stored(hindsight_server, seeded, "user: Count.", (first.choices[0].delta.content or "").strip())


def test_excluded_models_are_neither_injected_nor_stored(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, excluded_models=["gpt-3.5*"])
    hl.completion(
        model="openai/gpt-3.5-turbo",
        api_base=fake_openai.base_url,
        api_key="sk-test",
        messages=[{"role": "user", "content": "Excluded question about teal?"}],
    )
    assert system_text(fake_openai.last_json) == ""
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert not debug.injected
    assert debug.skipped_reason is not None
    assert "excluded" in debug.skipped_reason
    assert debug.storage_status == "skipped"
    flush_storage()
    assert "Excluded question" not in str(hl.recall("Excluded question about teal?", bank_id=seeded).results)


def test_agent_loop_recalls_once_and_stores_the_turn_once(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    """5 tool steps after one user message: one recall, the turn stored once (the user's words and the
    answer, no tool traffic)."""
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    before = default_worker().stats().submitted
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"{QUESTION} Plan my trip to Porto."}]
    records = []
    for step in range(5):
        fake_openai.reply = {
            "tool_calls": [{"id": f"call_{step}", "name": "search", "arguments": f'{{"page": {step}}}'}]
        }
        response = hl.completion(**openai_call(fake_openai, messages=messages))
        records.append(hl.get_last_injection_debug())
        messages.append(response.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": f"call_{step}", "content": f"result {step}"})
    fake_openai.reply = "Porto: stay in Ribeira, eat francesinha."
    hl.completion(**openai_call(fake_openai, messages=messages))
    records.append(hl.get_last_injection_debug())
    assert all(r is not None for r in records)
    assert [r.lookup_reused for r in records if r] == [False, True, True, True, True, True]
    assert all(r.injected for r in records if r)
    assert all(MEMORY_OPEN in str(body["messages"]) for body in (r.json for r in fake_openai.requests))
    assert default_worker().stats().submitted - before == 1
    text = stored(hindsight_server, seeded, "francesinha")
    assert text.count(f"user: {QUESTION} Plan my trip to Porto.") == 1
    assert "search" not in text
    assert "result 3" not in text


def test_positional_model_and_messages(hindsight_server: str, seeded: str, fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    hl.completion(
        "openai/gpt-4o-mini",
        [{"role": "user", "content": QUESTION}],
        api_base=fake_openai.base_url,
        api_key="sk-t",
    )
    assert "teal" in system_text(fake_openai.last_json)


def test_concurrent_async_calls_keep_their_banks_apart(
    hindsight_server: str, fake_openai: FakeOpenAI
) -> None:
    from tests.helpers import seed_bank

    banks = {f"{name}-{id(fake_openai)}": name for name in ("ana", "ben", "cho")}
    for bank, name in banks.items():
        seed_bank(
            hindsight_server, bank, [f"The user's name is {name.title()} and their pet is a {name}-cat."]
        )
    hl.configure(hindsight_api_url=hindsight_server)

    async def ask(bank: str) -> tuple[str, str]:
        await hl.acompletion(
            **openai_call(fake_openai, messages=[{"role": "user", "content": f"What is my pet? ({bank})"}]),
            hindsight_bank_id=bank,
        )
        debug = hl.get_last_injection_debug()
        assert debug is not None
        return bank, debug.memory_context

    async def main() -> list[tuple[str, str]]:
        return await asyncio.gather(*(ask(bank) for bank in list(banks) * 4))

    for bank, context in asyncio.run(main()):
        name = banks[bank]
        assert f"{name}-cat" in context
        for other in banks.values():
            if other != name:
                assert f"{other}-cat" not in context


def test_litellm_fallbacks_do_not_inject_or_store_twice(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded, document_id="fallbacks")
    hl.enable()
    fake_openai.fail_next(500, times=1)
    fake_openai.reply = "Answered by the fallback."
    response = litellm.completion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]),
        fallbacks=["openai/gpt-4o"],
        num_retries=0,
    )
    assert response.choices[0].message.content == "Answered by the fallback."
    assert len(fake_openai.requests) >= 2
    for request in fake_openai.requests:
        assert str(request.json).count(MEMORY_OPEN) == 1
    text = stored(hindsight_server, seeded, "assistant: Answered by the fallback.")
    assert text.count(f"user: {QUESTION}") == 1
