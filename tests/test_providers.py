"""The provider fakes in tests/providers.py, driven by the real openai / anthropic SDKs and litellm."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.providers import (
    FakeAnthropic,
    FakeOpenAI,
    assert_no_hindsight_keys,
    fake_anthropic,
    fake_openai,
    find_hindsight_keys,
)

__all__ = ["fake_anthropic", "fake_openai"]  # the fixtures, imported for this module's tests

SYSTEM = "Relevant memories: the user's name is Ada; she prefers tea."
CLAUDE = "claude-3-5-sonnet-20241022"
TOOL_ARGS = {"city": "Paris", "unit": "celsius"}


@pytest.fixture
def oai(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(fake_anthropic: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_anthropic.base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        yield client


def chat(text: str = "Hi") -> list[Any]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


ECHO_2 = f"I received 2 messages. System: {SYSTEM}"
ECHO_1 = f"I received 1 messages. System: {SYSTEM}"


# -- lifecycle and recording ------------------------------------------------------------------------------


def test_lifecycle_urls_and_port_released() -> None:
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with fake as started:
        assert started is fake
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        port = fake.port
    fake.stop()  # idempotent
    with pytest.raises(RuntimeError):
        fake.start()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with FakeAnthropic() as fa:
        assert fa.base_url == fa.url == f"http://127.0.0.1:{fa.port}"


def test_stop_drops_idle_keep_alive_connections() -> None:
    fake = FakeOpenAI().start()
    client = httpx.Client()
    try:
        response = client.post(f"{fake.url}/nowhere", json={})
        assert response.status_code == 404
        fake.stop()  # must not hang on the client's pooled connection
        with pytest.raises(httpx.TransportError):
            client.post(f"{fake.url}/nowhere", json={})
    finally:
        client.close()
        fake.stop()


def test_records_method_path_query_headers_and_bodies(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.requests == []
    with httpx.Client() as client:
        raw = json.dumps({"model": "m", "messages": [], "x": 1}).encode()
        response = client.post(
            f"{fake_openai.base_url}/chat/completions?api-version=1",
            content=raw,
            headers={"Authorization": "Bearer sk-x", "X-Custom": "yes", "Content-Type": "application/json"},
        )
        assert response.status_code == 200
        assert client.get(f"{fake_openai.url}/v1/models").status_code == 404
        assert client.post(f"{fake_openai.url}/chat/completions", content=b"not json").status_code == 401
    first, second, third = fake_openai.requests
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "api-version=1")
    assert first.headers["authorization"] == "Bearer sk-x"
    assert first.header("X-CUSTOM") == "yes"
    assert first.body == raw
    assert first.json == {"model": "m", "messages": [], "x": 1}
    assert (second.method, second.path, second.json) == ("GET", "/v1/models", None)
    assert (third.path, third.json, third.body) == ("/chat/completions", None, b"not json")
    assert fake_openai.last_json is None
    assert fake_openai.bodies_for("/v1/chat/completions") == [first.json]
    assert fake_openai.wait_for(3) == fake_openai.requests
    fake_openai.clear()
    assert fake_openai.requests == []
    with pytest.raises(AssertionError):
        _ = fake_openai.last_json


def test_chunked_request_body_and_stream_delay(fake_openai: FakeOpenAI) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()

    def pieces() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    fake_openai.stream_delay = 0.001
    with httpx.Client() as client:
        response = client.post(
            f"{fake_openai.base_url}/chat/completions",
            content=pieces(),
            headers={"authorization": "Bearer k"},
        )
    assert fake_openai.last_request.header("transfer-encoding") == "chunked"
    assert fake_openai.last_request.body == body
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


def test_validation_like_the_real_apis(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    with httpx.Client() as client:
        url = f"{fake_openai.base_url}/chat/completions"
        assert client.post(url, json={"model": "m", "messages": []}).status_code == 401
        bad = client.post(url, json={"messages": []}, headers={"authorization": "Bearer k"})
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        url = f"{fake_anthropic.url}/v1/messages"
        body = {"model": CLAUDE, "messages": [], "max_tokens": 5}
        assert client.post(url, json=body, headers={"anthropic-version": "2023-06-01"}).status_code == 401
        assert client.post(url, json=body, headers={"x-api-key": "k"}).status_code == 400
        missing = {"model": CLAUDE, "messages": []}
        no_max = client.post(url, json=missing, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert no_max.status_code == 400
        assert no_max.json()["error"]["type"] == "invalid_request_error"
        assert client.post(f"{fake_anthropic.url}/v1/v1/messages", json=body).status_code == 404


# -- the openai SDK ---------------------------------------------------------------------------------------


def test_openai_sync(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=chat())
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant",
        ECHO_2,
        "stop",
    )
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    request = fake_openai.last_request
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["messages"][0] == {"role": "system", "content": SYSTEM}


def test_openai_sync_stream_with_usage(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=chat(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3
    assert "".join(deltas) == ECHO_2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert fake_openai.last_json["stream"] is True


def test_openai_stream_without_usage_and_programmed_reply(
    fake_openai: FakeOpenAI, oai: openai.OpenAI
) -> None:
    fake_openai.reply = "one two three"
    chunks = list(oai.chat.completions.create(model="m", messages=chat(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert all(c.usage is None for c in chunks)
    fake_openai.reply = lambda body: f"saw {body['messages'][-1]['content']}"
    completion = oai.chat.completions.create(model="m", messages=chat("ping"))
    assert completion.choices[0].message.content == "saw ping"


def tool_calls_reply(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool_calls": [
            {"id": "call_1", "name": "get_weather", "arguments": json.dumps(TOOL_ARGS)},
            {"name": "get_time", "arguments": {"tz": "UTC"}},
        ]
    }


def test_openai_tool_calls(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.reply = tool_calls_reply
    completion = oai.chat.completions.create(model="m", messages=chat())
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert calls[0].id == "call_1"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls if c.type == "function"] == [
        ("get_weather", TOOL_ARGS),
        ("get_time", {"tz": "UTC"}),
    ]
    assert calls[1].id.startswith("call_")


def test_openai_tool_calls_streaming(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.reply = tool_calls_reply
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    arguments: dict[int, str] = {}
    fragments = 0
    finish = None
    for chunk in oai.chat.completions.create(model="m", messages=chat(), stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            if call.id:
                ids[call.index] = call.id
            if call.function and call.function.name:
                names[call.index] = call.function.name
            if call.function and call.function.arguments:
                arguments[call.index] = arguments.get(call.index, "") + call.function.arguments
                fragments += 1
    assert finish == "tool_calls"
    assert names == {0: "get_weather", 1: "get_time"}
    assert ids[0] == "call_1"
    assert json.loads(arguments[0]) == TOOL_ARGS
    assert json.loads(arguments[1]) == {"tz": "UTC"}
    assert fragments > 2


def test_openai_content_and_tool_calls_streaming(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.reply = {"content": "Let me check.", "tool_calls": [{"name": "f", "arguments": "{}"}]}
    chunks = list(oai.chat.completions.create(model="m", messages=chat(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me check."
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in calls if t.function and t.function.name] == ["f"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_openai_async(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=chat())
        assert completion.choices[0].message.content == ECHO_2
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=chat(), stream=True, stream_options={"include_usage": True}
        )
        text = ""
        usage = None
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        assert text == ECHO_2
        assert usage is not None
        fake_openai.reply = tool_calls_reply
        tools = await client.chat.completions.create(model="m", messages=chat())
        assert tools.choices[0].finish_reason == "tool_calls"
    assert len(fake_openai.requests) == 3


def test_openai_failures_and_retries(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(500, times=2, retry_after=0.001)
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=2) as client:
        completion = client.chat.completions.create(model="m", messages=chat())
    assert completion.choices[0].message.content == ECHO_2
    assert len(fake_openai.requests) == 3
    assert fake_openai.requests[0].json == fake_openai.requests[2].json

    fake_openai.fail_next(429, retry_after=7)
    fake_openai.fail_next(400, {"error": {"message": "custom", "type": "invalid_request_error"}})
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="m", messages=chat())
        assert limited.value.response.headers["retry-after"] == "7"
        assert limited.value.response.headers["retry-after-ms"] == "7000"
        with pytest.raises(openai.BadRequestError, match="custom"):
            client.chat.completions.create(model="m", messages=chat())
        assert client.chat.completions.create(model="m", messages=chat()).choices[0].message.content == ECHO_2


def test_delay_and_client_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.delay = 30.0  # stop() interrupts the wait, so the test does not last that long
    with (
        openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0, timeout=0.2) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(model="m", messages=chat())
    fake_openai.delay = 0.01
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0) as client:
        assert client.chat.completions.create(model="m", messages=chat()).choices[0].message.content == ECHO_2


def test_a_failing_reply_callable_is_a_500_and_recorded() -> None:
    def broken(body: dict[str, Any]) -> str:
        raise KeyError("nope")

    with (
        FakeOpenAI(reply=broken) as fake,
        openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c,
    ):
        with pytest.raises(openai.InternalServerError, match="nope"):
            c.chat.completions.create(model="m", messages=chat())
        assert [type(e) for e in fake.errors] == [KeyError]
        fake.reply = {"bogus": 1}
        with pytest.raises(openai.InternalServerError, match="unknown reply keys"):
            c.chat.completions.create(model="m", messages=chat())


def test_default_echo_without_system_and_truncated(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "I received 1 messages. System: none"
    long_system: list[Any] = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "a" * 150}, {"type": "text", "text": "b" * 150}],
        },
        {"role": "user", "content": "x"},
    ]
    completion = oai.chat.completions.create(model="m", messages=long_system)
    assert (
        completion.choices[0].message.content
        == "I received 2 messages. System: " + "a" * 150 + "\n" + "b" * 49
    )


# -- the anthropic SDK ------------------------------------------------------------------------------------


def test_anthropic_sync(fake_anthropic: FakeAnthropic, ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": "Hi"}]
    )
    assert (message.type, message.role, message.model, message.stop_reason) == (
        "message",
        "assistant",
        CLAUDE,
        "end_turn",
    )
    assert [b.text for b in message.content if b.type == "text"] == [ECHO_1]
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    request = fake_anthropic.last_request
    assert request.path == "/v1/messages"
    # anthropic 2.x sends the key as a bearer token (older versions: x-api-key); the fake takes either
    bearer = (request.header("authorization") or "").removeprefix("Bearer ")
    assert "sk-ant-test" in (request.header("x-api-key"), bearer)
    assert request.headers["anthropic-version"]
    assert request.json["system"] == SYSTEM


def test_anthropic_system_blocks(fake_anthropic: FakeAnthropic, ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system=[{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
    )
    assert [b.text for b in message.content if b.type == "text"] == [
        "I received 2 messages. System: Part one.\nPart two."
    ]


def test_anthropic_sync_stream_raw_events(fake_anthropic: FakeAnthropic, ant: anthropic.Anthropic) -> None:
    events = list(
        ant.messages.create(
            model=CLAUDE,
            max_tokens=64,
            system=SYSTEM,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_delta") > 3
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == ECHO_1
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0
    assert fake_anthropic.last_json["stream"] is True


def test_anthropic_stream_wire_format(fake_anthropic: FakeAnthropic) -> None:
    body = {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with httpx.Client() as client:
        response = client.post(f"{fake_anthropic.url}/v1/messages", json=body, headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_stream_helper(fake_anthropic: FakeAnthropic, ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3
    assert "".join(pieces) == ECHO_1
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def tool_use_reply(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": "Checking.",
        "tool_use": [{"id": "toolu_1", "name": "get_weather", "input": TOOL_ARGS}, {"name": "noop"}],
    }


def test_anthropic_tool_use(fake_anthropic: FakeAnthropic, ant: anthropic.Anthropic) -> None:
    fake_anthropic.reply = tool_use_reply
    message = ant.messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    uses = [b for b in message.content if b.type == "tool_use"]
    assert (uses[0].id, uses[0].name, uses[0].input) == ("toolu_1", "get_weather", TOOL_ARGS)
    assert uses[1].id.startswith("toolu_")
    assert uses[1].input == {}

    with ant.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as s:
        partials = [e for e in s if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = s.get_final_message()
    assert len(partials) > 2
    assert final.stop_reason == "tool_use"
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in streamed] == [("get_weather", TOOL_ARGS), ("noop", {})]
    assert streamed[0].id == "toolu_1"


async def test_anthropic_async(fake_anthropic: FakeAnthropic) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=fake_anthropic.base_url, api_key="sk-ant-test", max_retries=0
    ) as client:
        message = await client.messages.create(
            model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": "Hi"}]
        )
        assert [b.text for b in message.content if b.type == "text"] == [ECHO_1]
        raw = await client.messages.create(
            model=CLAUDE,
            max_tokens=64,
            system=SYSTEM,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
        text = ""
        async for event in raw:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
        assert text == ECHO_1
        async with client.messages.stream(
            model=CLAUDE, max_tokens=64, system=SYSTEM, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            pieces = [piece async for piece in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(pieces) == ECHO_1
        assert final.stop_reason == "end_turn"
        fake_anthropic.reply = tool_use_reply
        tools = await client.messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )
        assert tools.stop_reason == "tool_use"
    assert len(fake_anthropic.requests) == 4


def test_anthropic_failures(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail_next(529, retry_after=0.001)
    with anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=1) as client:
        message = client.messages.create(
            model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert message.stop_reason == "end_turn"
    assert len(fake_anthropic.requests) == 2
    fake_anthropic.fail_next(429)
    with (
        anthropic.Anthropic(base_url=fake_anthropic.base_url, api_key="k", max_retries=0) as client,
        pytest.raises(anthropic.RateLimitError) as limited,
    ):
        client.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "fake anthropic failure 429"},
    }


# -- litellm ----------------------------------------------------------------------------------------------


def test_litellm_openai(fake_openai: FakeOpenAI) -> None:
    import litellm

    kwargs: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "api_base": fake_openai.base_url,
        "api_key": "sk-test",
    }
    response = litellm.completion(messages=chat(), **kwargs)
    assert response.choices[0].message.content == ECHO_2
    assert response.usage.total_tokens > 0
    stream = litellm.completion(messages=chat(), stream=True, **kwargs)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == ECHO_2
    first, second = fake_openai.bodies_for("/v1/chat/completions")
    assert first["model"] == "gpt-4o-mini"
    assert first["messages"][0] == {"role": "system", "content": SYSTEM}
    assert second["stream"] is True
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-test"
    for body in (first, second):
        assert_no_hindsight_keys(body)


def test_litellm_openai_tool_calls(fake_openai: FakeOpenAI) -> None:
    import litellm

    fake_openai.reply = tool_calls_reply
    response = litellm.completion(
        model="openai/gpt-4o-mini", api_base=fake_openai.base_url, api_key="sk-test", messages=chat()
    )
    calls = response.choices[0].message.tool_calls
    assert response.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", TOOL_ARGS),
        ("get_time", {"tz": "UTC"}),
    ]


async def test_litellm_openai_async(fake_openai: FakeOpenAI) -> None:
    import litellm

    kwargs: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "api_base": fake_openai.base_url,
        "api_key": "sk-test",
    }
    response = await litellm.acompletion(messages=chat(), **kwargs)
    assert response.choices[0].message.content == ECHO_2
    stream = await litellm.acompletion(messages=chat(), stream=True, **kwargs)
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or ""
    assert text == ECHO_2
    assert len(fake_openai.requests) == 2


def test_litellm_anthropic(fake_anthropic: FakeAnthropic) -> None:
    import litellm

    kwargs: dict[str, Any] = {
        "model": f"anthropic/{CLAUDE}",
        "api_base": fake_anthropic.base_url,
        "api_key": "sk-ant-test",
    }
    response = litellm.completion(messages=chat(), **kwargs)
    assert response.choices[0].message.content == ECHO_1
    assert response.usage.prompt_tokens > 0
    stream = litellm.completion(messages=chat(), stream=True, **kwargs)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == ECHO_1
    first, second = fake_anthropic.bodies_for("/v1/messages")
    assert first["model"] == CLAUDE
    assert first["system"] == [{"type": "text", "text": SYSTEM}]
    assert first["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert second["stream"] is True
    assert fake_anthropic.requests[0].headers["x-api-key"] == "sk-ant-test", fake_anthropic.requests[
        0
    ].headers


async def test_litellm_anthropic_async(fake_anthropic: FakeAnthropic) -> None:
    import litellm

    kwargs: dict[str, Any] = {
        "model": f"anthropic/{CLAUDE}",
        "api_base": fake_anthropic.base_url,
        "api_key": "sk-ant-test",
    }
    response = await litellm.acompletion(messages=chat(), **kwargs)
    assert response.choices[0].message.content == ECHO_1
    stream = await litellm.acompletion(messages=chat(), stream=True, **kwargs)
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or ""
    assert text == ECHO_1
    fake_anthropic.reply = tool_use_reply
    tools = await litellm.acompletion(messages=chat(), **kwargs)
    assert tools.choices[0].finish_reason == "tool_calls"
    first_call = tools.choices[0].message.tool_calls[0]
    assert (first_call.id, first_call.function.name) == ("toolu_1", "get_weather")
    assert json.loads(first_call.function.arguments) == TOOL_ARGS


def test_litellm_streamed_tool_calls(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    import litellm

    fake_openai.reply = tool_calls_reply
    fake_anthropic.reply = tool_use_reply
    for model, base, first_id in (
        ("openai/gpt-4o-mini", fake_openai.base_url, "call_1"),
        (f"anthropic/{CLAUDE}", fake_anthropic.base_url, "toolu_1"),
    ):
        chunks = list(
            litellm.completion(model=model, api_base=base, api_key="k", messages=chat(), stream=True)
        )
        rebuilt: Any = litellm.stream_chunk_builder(chunks)
        assert rebuilt is not None
        calls = rebuilt.choices[0].message.tool_calls
        assert (calls[0].id, calls[0].function.name) == (first_id, "get_weather")
        assert json.loads(calls[0].function.arguments) == TOOL_ARGS
        assert rebuilt.choices[0].finish_reason == "tool_calls"


# -- leak checks ------------------------------------------------------------------------------------------


def test_assert_no_hindsight_keys() -> None:
    assert_no_hindsight_keys({"model": "m", "messages": [{"role": "user", "content": "hindsight_bank"}]})
    assert_no_hindsight_keys([1, "x", None])
    body = {
        "metadata": {"Hindsight_Bank_ID": "b"},
        "messages": [{"role": "user", "extra": {"hindsight_recall": True}}],
        "hindsight-other": 1,
        "weird key": {"HINDSIGHT_X": 1},
    }
    assert find_hindsight_keys(body) == [
        "$.metadata.Hindsight_Bank_ID",
        "$.messages[0].extra.hindsight_recall",
        "$['weird key'].HINDSIGHT_X",
    ]
    with pytest.raises(AssertionError, match=r"\$\.metadata\.Hindsight_Bank_ID"):
        assert_no_hindsight_keys(body)


def test_assert_no_hindsight_keys_on_a_real_request(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(
        model="m", messages=chat(), extra_body={"metadata": {"hindsight_bank_id": "b"}}
    )
    with pytest.raises(AssertionError, match=r"\$\.metadata\.hindsight_bank_id"):
        assert_no_hindsight_keys(fake_openai.last_request)
    oai.chat.completions.create(model="m", messages=chat())
    assert_no_hindsight_keys(fake_openai.last_request)
