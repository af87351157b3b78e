"""``wrap_openai`` / ``wrap_anthropic`` with the real SDK clients, a real Hindsight server and fake providers.

What the provider received (memories in the prompt, no ``hindsight_*`` option) is read from the fakes'
request log; what was stored is read back from the server after the storage worker has drained. Each
call must hand exactly one turn to storage (counted on the storage worker) and the stored document must
hold the exchange once, without the injected memory.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest

import hindsight_litellm as hl
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.pipeline.render import MEMORY_OPEN
from hindsight_core.storage import default_worker
from tests.helpers import closed_port_url, document_text, flush_storage, wait_for
from tests.providers import FakeAnthropic, FakeOpenAI, assert_no_hindsight_keys

pytestmark = pytest.mark.server

QUESTION = "What is my favourite colour?"
REPLY = "Noted, I will keep that in mind for the palette."
CALLER_SYSTEM = "You are a terse design assistant."
MEMORY = "favourite colour is teal"  # a seeded fact (conftest.FACTS), as it appears in the memory block
CLAUDE = "claude-3-5-sonnet-20241022"


# ------------------------------------------------------------------------------------------------ helpers


def submitted() -> int:
    """Turns handed to the storage worker so far (in this process)."""
    return default_worker().stats().submitted


def _retains_settled(url: str, bank: str) -> bool:
    response = httpx.get(f"{url}/v1/default/banks/{quote(bank, safe='')}/operations", params={"limit": 100})
    response.raise_for_status()
    operations = response.json()["operations"]
    return all(
        op["status"] in ("completed", "failed")
        for op in operations
        if "retain" in str(op.get("operation_type"))
    )


def stored_text(url: str, bank: str, document_id: str | None) -> str:
    """The document's text once every queued turn reached the server and the server processed them all."""
    assert document_id, "the debug record names no document"
    flush_storage()
    wait_for(lambda: _retains_settled(url, bank), what=f"retain operations of bank {bank}")
    text: str = wait_for(lambda: document_text(url, bank, document_id), what=f"document {document_id}")
    return text


def last_debug() -> InjectionDebugInfo:
    record = hl.get_last_injection_debug()
    assert record is not None, "no debug record for the last call"
    return record


def assert_stored_once(text: str, *lines: str) -> None:
    for line in lines:
        assert text.count(line) == 1, f"{line!r} should be stored exactly once in:\n{text}"
    assert MEMORY_OPEN not in text, f"recalled memory was stored:\n{text}"
    assert MEMORY not in text, f"recalled memory was stored:\n{text}"


def first_text(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    return block.text


def user(text: str = QUESTION) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def oai(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    fake_openai.reply = REPLY
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
async def aoai(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    fake_openai.reply = REPLY
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(fake_anthropic: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    fake_anthropic.reply = REPLY
    with anthropic.Anthropic(
        base_url=fake_anthropic.base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def aant(fake_anthropic: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    fake_anthropic.reply = REPLY
    async with anthropic.AsyncAnthropic(
        base_url=fake_anthropic.base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


# ------------------------------------------------------------------------------------------------- OpenAI


def test_openai_memories_reach_the_system_message_and_the_exchange_is_stored_once(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    messages = [{"role": "system", "content": CALLER_SYSTEM}, *user()]
    before = submitted()

    response = wrapped.chat.completions.create(model="gpt-4o-mini", messages=messages)

    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert response.choices[0].message.content == REPLY
    assert len(fake_openai.requests) == 1
    body = fake_openai.last_json
    assert_no_hindsight_keys(body)
    sent = body["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith(CALLER_SYSTEM + "\n\n")  # merged into the caller's system prompt
    assert MEMORY_OPEN in sent[0]["content"]
    assert MEMORY in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": QUESTION}
    assert messages == [{"role": "system", "content": CALLER_SYSTEM}, *user()]  # caller's list untouched
    record = last_debug()
    assert record.injected
    assert record.bank_id == seeded
    assert record.error is None
    assert record.memories_used >= 1

    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")
    assert CALLER_SYSTEM not in text
    assert record.storage_status == "stored"


def test_openai_prepend_user_mode(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(
        oai, hindsight_api_url=hindsight_server, bank_id=seeded, injection_mode="prepend_user"
    )
    wrapped.chat.completions.create(model="gpt-4o-mini", messages=user())

    sent = fake_openai.last_json["messages"]
    assert [m["role"] for m in sent] == ["user"]  # no system message added
    content = sent[0]["content"]
    assert content.startswith(MEMORY_OPEN)
    assert MEMORY in content
    assert content.endswith(QUESTION)
    record = last_debug()
    assert record.injected
    assert record.injection_mode == "prepend_user"
    # The user's own message is stored, without the memory put in front of it (0.5.4 dropped it).
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_openai_per_call_hindsight_options_are_used_and_never_sent(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id="some-other-bank")
    before = submitted()
    wrapped.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("Tell me a joke."),
        temperature=0.2,
        hindsight_bank_id=seeded,
        hindsight_query="What colour does the user like?",
        hindsight_budget="low",
        hindsight_session_id="session-42",
        hindsight_max_memories=1,
        hindsight_tags=["wrapper-test"],
        hindsight_fact_types=["world"],
        hindsight_verbose=True,
    )

    body = fake_openai.last_json
    assert_no_hindsight_keys(body)
    assert body["temperature"] == 0.2  # the provider's own options pass
    record = last_debug()
    assert record.bank_id == seeded
    assert record.query == "What colour does the user like?"
    assert record.document_id == "session-42"
    assert record.memories_used == 1
    assert MEMORY in body["messages"][0]["content"]
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, "session-42")
    assert_stored_once(text, "user: Tell me a joke.", f"assistant: {REPLY}")


def test_openai_streaming_passes_chunks_and_stores_the_reply(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=user(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None  # the usage chunk (no choices) passed through too
    body = fake_openai.last_json
    assert body["stream"] is True
    assert MEMORY in body["messages"][0]["content"]
    assert_no_hindsight_keys(body)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_openai_stream_closed_early_stores_what_arrived(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = wrapped.chat.completions.create(model="gpt-4o-mini", messages=user(), stream=True)
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if received:
            break
    stream.close()
    stream.close()  # closing twice stores nothing more

    assert received
    assert received != REPLY
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {received.strip()}")
    assert REPLY not in text


def test_openai_stream_abandoned_midway_still_stores_what_arrived(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = wrapped.chat.completions.create(model="gpt-4o-mini", messages=user(), stream=True)
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if received:
            break
    document = last_debug().document_id
    del stream, chunk  # neither closed nor exhausted: dropped
    gc.collect()
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, document)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {received.strip()}")


def test_openai_stream_as_context_manager(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    with wrapped.chat.completions.create(model="gpt-4o-mini", messages=user(), stream=True) as stream:
        text_out = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text_out == REPLY
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_openai_agent_turn_recalls_once_and_is_stored_once_with_its_answer(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    """One rule for agent turns: the tool-call step stores nothing and reuses nothing yet; the answer
    reuses the step's lookup and stores the turn once, as the user's words and the answer."""
    fake_openai.reply = {
        "content": None,
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    }
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, Any]] = user("What's the weather in Paris?")
    response = wrapped.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    step = last_debug()
    assert (step.storage_status, step.lookup_reused) == ("skipped", False)
    assert step.storage_reason is not None
    assert "agent step" in step.storage_reason
    messages.append(response.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    fake_openai.reply = "It is 18C and sunny in Paris."
    wrapped.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    answer = last_debug()
    assert answer.lookup_reused
    assert answer.document_id == step.document_id
    text = stored_text(hindsight_server, seeded, answer.document_id)
    assert_stored_once(text, "user: What's the weather in Paris?", "assistant: It is 18C and sunny in Paris.")
    assert "get_weather" not in text
    assert "18C and sunny\n" not in text  # the tool result itself is not stored


def test_openai_streamed_tool_call_is_an_agent_step(
    oai: openai.OpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    fake_openai.reply = {
        "content": None,
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}],
    }
    wrapped = hl.wrap_openai(oai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    for _ in wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=user("Weather in Paris, please"), stream=True
    ):
        pass
    record = last_debug()
    assert record.storage_status == "skipped"
    assert submitted() == before


async def test_async_openai(
    aoai: openai.AsyncOpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(aoai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    response = await wrapped.chat.completions.create(model="gpt-4o-mini", messages=user())

    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert response.choices[0].message.content == REPLY
    assert MEMORY in fake_openai.last_json["messages"][0]["content"]
    assert_no_hindsight_keys(fake_openai.last_json)
    record = last_debug()
    assert record.injected
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


async def test_async_openai_streaming(
    aoai: openai.AsyncOpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(aoai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = await wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=user(), stream=True, hindsight_budget="low"
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]

    assert "".join(pieces) == REPLY
    assert MEMORY in fake_openai.last_json["messages"][0]["content"]
    assert_no_hindsight_keys(fake_openai.last_json)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


async def test_async_openai_stream_closed_early_in_async_with(
    aoai: openai.AsyncOpenAI, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_openai(aoai, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    received = ""
    async with await wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=user(), stream=True
    ) as stream:
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
            if received:
                break
    assert received
    assert received != REPLY
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {received.strip()}")


def test_openai_everything_else_passes_through(oai: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    wrapped = hl.wrap_openai(oai, hindsight_api_url=closed_port_url(), bank_id="unused")
    assert wrapped.models is oai.models
    assert wrapped.embeddings is oai.embeddings
    assert wrapped.base_url == oai.base_url
    assert wrapped.api_key == "sk-test"
    assert wrapped.max_retries == 0
    assert wrapped.chat.completions.with_raw_response is not None
    assert callable(wrapped.chat.completions.with_raw_response.create)
    assert callable(wrapped.chat.completions.with_streaming_response.create)
    other = wrapped.with_options(timeout=7.0)
    assert isinstance(other, openai.OpenAI)
    assert other.timeout == 7.0
    assert wrapped.chat.completions.create.__doc__  # the wrapper's own, documented
    assert fake_openai.requests == []  # nothing above talked to the provider
    assert "unused" in repr(wrapped)
    assert "sk-test" not in repr(wrapped)


def test_openai_call_goes_on_when_the_hindsight_server_is_down(
    oai: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    wrapped = hl.wrap_openai(
        oai, hindsight_api_url=closed_port_url(), bank_id="down", max_retries=0, store_conversations=False
    )
    response = wrapped.chat.completions.create(model="gpt-4o-mini", messages=user())

    assert response.choices[0].message.content == REPLY
    assert fake_openai.last_json["messages"] == user()  # sent as the caller made it
    record = last_debug()
    assert not record.injected
    assert record.error
    assert "Connection" in record.error


# ---------------------------------------------------------------------------------------------- Anthropic


def _block_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    return "\n".join(block["text"] for block in system)


def test_anthropic_memories_reach_the_system_parameter_and_are_stored_once(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    message = wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=user())

    assert isinstance(message, anthropic.types.Message)
    assert first_text(message) == REPLY
    body = fake_anthropic.last_json
    assert_no_hindsight_keys(body)
    assert body["messages"] == user()  # no system message in the messages: Anthropic rejects those
    assert isinstance(body["system"], str)
    assert body["system"].startswith(MEMORY_OPEN)
    assert MEMORY in body["system"]
    record = last_debug()
    assert record.injected
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_anthropic_merges_memories_into_a_string_system_prompt(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    wrapped.messages.create(model=CLAUDE, max_tokens=256, system=CALLER_SYSTEM, messages=user())
    system = fake_anthropic.last_json["system"]
    assert isinstance(system, str)
    assert system.startswith(CALLER_SYSTEM + "\n\n" + MEMORY_OPEN)
    assert MEMORY in system


def test_anthropic_appends_memories_to_a_list_of_system_blocks(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    blocks: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": CALLER_SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    wrapped.messages.create(model=CLAUDE, max_tokens=256, system=blocks, messages=user())
    system = fake_anthropic.last_json["system"]
    assert system[0] == {"type": "text", "text": CALLER_SYSTEM, "cache_control": {"type": "ephemeral"}}
    assert len(system) == 2
    assert system[1]["type"] == "text"
    assert system[1]["text"].startswith(MEMORY_OPEN)
    assert MEMORY in system[1]["text"]
    assert len(blocks) == 1  # the caller's list is untouched


def test_anthropic_prepend_user_mode(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(
        ant, hindsight_api_url=hindsight_server, bank_id=seeded, injection_mode="prepend_user"
    )
    wrapped.messages.create(model=CLAUDE, max_tokens=256, system=CALLER_SYSTEM, messages=user())
    body = fake_anthropic.last_json
    assert body["system"] == CALLER_SYSTEM
    content = body["messages"][-1]["content"]
    assert content.startswith(MEMORY_OPEN)
    assert MEMORY in content
    assert content.endswith(QUESTION)
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_anthropic_per_call_options_are_not_sent(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server)
    wrapped.messages.create(
        model=CLAUDE,
        max_tokens=256,
        messages=user("Hello there"),
        hindsight_bank_id=seeded,
        hindsight_query="favourite colour",
        hindsight_document_id="doc-anthropic",
        hindsight_budget="high",
    )
    body = fake_anthropic.last_json
    assert_no_hindsight_keys(body)
    assert MEMORY in _block_text(body["system"])
    record = last_debug()
    assert record.bank_id == seeded
    assert record.document_id == "doc-anthropic"
    text = stored_text(hindsight_server, seeded, "doc-anthropic")
    assert_stored_once(text, "user: Hello there", f"assistant: {REPLY}")


def test_anthropic_streaming_create(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=user(), stream=True)
    events = list(stream)
    text_out = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text_out == REPLY
    assert events[-1].type == "message_stop"
    assert MEMORY in _block_text(fake_anthropic.last_json["system"])
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_anthropic_stream_broken_off_and_closed(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    received = ""
    with wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=user(), stream=True) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received += event.delta.text
                break
    assert received
    assert received != REPLY
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {received.strip()}")


def test_anthropic_stream_helper(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    with wrapped.messages.stream(
        model=CLAUDE, max_tokens=256, system=CALLER_SYSTEM, messages=user(), hindsight_budget="low"
    ) as stream:
        text_out = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text_out == REPLY
    assert first_text(final) == REPLY
    body = fake_anthropic.last_json
    assert body["stream"] is True
    assert_no_hindsight_keys(body)
    assert body["system"].startswith(CALLER_SYSTEM + "\n\n")
    assert MEMORY in body["system"]
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_anthropic_stream_helper_left_before_reading(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    """Leaving the block without reading the stream must not raise (nothing of the reply to store)."""
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    with wrapped.messages.stream(model=CLAUDE, max_tokens=256, messages=user()):
        pass
    assert len(fake_anthropic.requests) == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}")


def test_anthropic_stream_helper_keeps_the_callers_exception(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    with (
        pytest.raises(KeyError, match="mine"),
        wrapped.messages.stream(model=CLAUDE, max_tokens=256, messages=user()),
    ):
        raise KeyError("mine")


def test_anthropic_agent_turn_recalls_once_and_is_stored_once_with_its_answer(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    fake_anthropic.reply = {"text": None, "tool_use": [{"name": "get_weather", "input": {"city": "Paris"}}]}
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    messages: list[dict[str, Any]] = user("What's the weather in Paris?")
    message = wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=messages, tools=tools)
    assert message.stop_reason == "tool_use"
    assert last_debug().storage_status == "skipped"
    tool_use = next(block for block in message.content if block.type == "tool_use")
    messages.append({"role": "assistant", "content": [block.model_dump() for block in message.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C"}]}
    )
    fake_anthropic.reply = "It is 18C in Paris."
    wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=messages, tools=tools)
    answer = last_debug()
    assert answer.lookup_reused  # the tool-result message is not a new user message
    assert answer.query == "What's the weather in Paris?"
    text = stored_text(hindsight_server, seeded, answer.document_id)
    assert_stored_once(text, "user: What's the weather in Paris?", "assistant: It is 18C in Paris.")
    assert "get_weather" not in text


def test_anthropic_streamed_tool_use_is_an_agent_step(
    ant: anthropic.Anthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    fake_anthropic.reply = {
        "text": "Let me check.",
        "tool_use": [{"name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}],
    }
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    for _ in wrapped.messages.create(
        model=CLAUDE, max_tokens=256, messages=user("Weather in Paris, please"), stream=True
    ):
        pass
    assert last_debug().storage_status == "skipped"
    assert submitted() == before


async def test_async_anthropic(
    aant: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(aant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    message = await wrapped.messages.create(
        model=CLAUDE, max_tokens=256, system=[{"type": "text", "text": CALLER_SYSTEM}], messages=user()
    )
    assert isinstance(message, anthropic.types.Message)
    assert first_text(message) == REPLY
    system = fake_anthropic.last_json["system"]
    assert system[0]["text"] == CALLER_SYSTEM
    assert MEMORY in system[1]["text"]
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


async def test_async_anthropic_streaming_create(
    aant: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(aant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    stream = await wrapped.messages.create(model=CLAUDE, max_tokens=256, messages=user(), stream=True)
    text_out = ""
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text_out += event.delta.text
    assert text_out == REPLY
    assert MEMORY in _block_text(fake_anthropic.last_json["system"])
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


async def test_async_anthropic_stream_helper(
    aant: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, hindsight_server: str, seeded: str
) -> None:
    wrapped = hl.wrap_anthropic(aant, hindsight_api_url=hindsight_server, bank_id=seeded)
    before = submitted()
    async with wrapped.messages.stream(
        model=CLAUDE, max_tokens=256, messages=user(), hindsight_budget="low"
    ) as stream:
        text_out = "".join([piece async for piece in stream.text_stream])
    assert text_out == REPLY
    body = fake_anthropic.last_json
    assert_no_hindsight_keys(body)
    assert MEMORY in _block_text(body["system"])
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, last_debug().document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


def test_anthropic_everything_else_passes_through(ant: anthropic.Anthropic) -> None:
    wrapped = hl.wrap_anthropic(ant, hindsight_api_url=closed_port_url(), bank_id="unused")
    assert wrapped.models is ant.models
    assert wrapped.base_url == ant.base_url
    assert wrapped.messages.batches is ant.messages.batches
    assert callable(wrapped.messages.count_tokens)
    assert callable(wrapped.messages.with_raw_response.create)
    assert isinstance(wrapped.with_options(timeout=7.0), anthropic.Anthropic)


async def test_async_anthropic_call_goes_on_when_the_hindsight_server_is_down(
    aant: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    wrapped = hl.wrap_anthropic(
        aant, hindsight_api_url=closed_port_url(), bank_id="down", max_retries=0, store_conversations=False
    )
    message = await wrapped.messages.create(model=CLAUDE, max_tokens=64, messages=user())
    assert first_text(message) == REPLY
    assert "system" not in fake_anthropic.last_json
    record = last_debug()
    assert not record.injected
    assert record.error
    assert "Connection" in record.error
