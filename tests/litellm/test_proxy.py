"""``HindsightProxyHook``: memory on the LiteLLM proxy.

First the hook's methods called as the proxy calls them (with LiteLLM's own ``UserAPIKeyAuth`` and real
LiteLLM responses and stream chunks), then the real proxy in a subprocess, configured with a
``config.yaml`` naming the ready-made hook, serving the openai SDK and forwarding to a fake provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import litellm
import openai
import pytest
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache
from litellm.proxy.types_utils.utils import get_instance_fn
from litellm.proxy.utils import ProxyLogging

import hindsight_litellm as hl
from hindsight_core.debug import InjectionDebugInfo
from hindsight_core.pipeline.render import MEMORY_OPEN
from hindsight_core.storage import default_worker
from hindsight_litellm.proxy import HindsightProxyHook, hindsight_proxy_hook
from tests.helpers import PROXY_CONFIG, document_text, flush_storage, free_port, seed_bank, wait_for
from tests.litellm.conftest import FACTS, openai_call
from tests.providers import FakeOpenAI, assert_no_hindsight_keys, find_hindsight_keys

pytestmark = pytest.mark.server

QUESTION = "What is my favourite colour?"
REPLY = "Noted, I will keep that in mind for the palette."
MEMORY = "favourite colour is teal"
MODEL = "gpt-4o-mini"
CALLBACKS = "hindsight_litellm.proxy.hindsight_proxy_hook"


# ------------------------------------------------------------------------------------------------ helpers


def submitted() -> int:
    """Turns handed to this process's storage worker so far."""
    return default_worker().stats().submitted


def _retains_settled(url: str, bank: str) -> bool:
    response = httpx.get(f"{url}/v1/default/banks/{quote(bank, safe='')}/operations", params={"limit": 100})
    if response.status_code == 404:
        return True
    response.raise_for_status()
    return all(
        op["status"] in ("completed", "failed")
        for op in response.json()["operations"]
        if "retain" in str(op.get("operation_type"))
    )


def stored_text(url: str, bank: str, document_id: str | None, *, flush: bool = True) -> str:
    """The document's text once queued turns reached the server (``flush``: this process's queue) and the
    server processed every retain of the bank."""
    assert document_id, "no document id"
    if flush:
        flush_storage()
    wait_for(lambda: document_text(url, bank, document_id), what=f"document {document_id}")
    wait_for(lambda: _retains_settled(url, bank), what=f"retain operations of bank {bank}")
    text = document_text(url, bank, document_id)
    assert text is not None
    return text


def assert_stored_once(text: str, *lines: str) -> None:
    for line in lines:
        assert text.count(line) == 1, f"{line!r} should be stored exactly once in:\n{text}"
    assert MEMORY_OPEN not in text, f"recalled memory was stored:\n{text}"
    assert MEMORY not in text, f"recalled memory was stored:\n{text}"


def last_debug() -> InjectionDebugInfo:
    record = hl.get_last_injection_debug()
    assert record is not None
    return record


def request(**fields: Any) -> dict[str, Any]:
    """A chat request as the proxy hands it to the pre-call hook."""
    data: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTION}],
        "litellm_call_id": str(uuid.uuid4()),
        "metadata": {"user_api_key_alias": None, "requester_ip_address": "127.0.0.1", "headers": {}},
    }
    data.update(fields)
    return data


def auth(**fields: Any) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key="sk-virtual-key", **fields)


async def reply_for(data: dict[str, Any]) -> Any:
    """What the proxy would get from LiteLLM for the (injected) request."""
    return await litellm.acompletion(model=MODEL, messages=data["messages"], mock_response=REPLY)


async def chunks_from(fake: FakeOpenAI, data: dict[str, Any]) -> list[Any]:
    """A real LiteLLM stream's chunks, for the (injected) request, from the fake provider."""
    stream = await litellm.acompletion(**openai_call(fake, messages=data["messages"], stream=True))
    return [chunk async for chunk in stream]


async def replay(chunks: list[Any]) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
def hook(hindsight_server: str, seeded: str) -> HindsightProxyHook:
    return HindsightProxyHook(hindsight_api_url=hindsight_server, bank_id=seeded)


# --------------------------------------------------------------------------------------- the hook, unit


async def test_pre_call_injects_then_success_stores_once(
    hook: HindsightProxyHook, hindsight_server: str, seeded: str
) -> None:
    data = request(hindsight_budget="low", hindsight_document_id="proxy-doc")
    data["metadata"]["hindsight_max_memories"] = 2

    result = await hook.async_pre_call_hook(auth(), None, data, "acompletion")

    assert isinstance(result, dict)
    assert find_hindsight_keys(result) == []  # top level and metadata
    messages = result["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith(MEMORY_OPEN)
    assert MEMORY in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": QUESTION}
    record = last_debug()
    assert record.bank_id == seeded
    assert record.document_id == "proxy-doc"
    assert 1 <= record.memories_used <= 2

    response = await reply_for(result)
    before = submitted()
    returned = await hook.async_post_call_success_hook(result, auth(), response)
    assert returned is response  # the response goes back to the client as it was
    await hook.async_post_call_success_hook(result, auth(), response)  # a second call stores nothing
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, "proxy-doc")
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


@pytest.mark.parametrize(
    ("fields", "metadata", "key", "expected"),
    [
        pytest.param(
            {"hindsight_bank_id": "from-body", "user": "alice"},
            {"hindsight_bank_id": "from-metadata"},
            {"user_id": "u-1"},
            "from-body",
            id="body-first",
        ),
        pytest.param(
            {"user": "alice"},
            {"hindsight_bank_id": "from-metadata"},
            {"user_id": "u-1"},
            "from-metadata",
            id="metadata",
        ),
        pytest.param(
            {"user": "alice"},
            {},
            {"user_id": "u-1", "team_id": "t-1", "key_alias": "k-1"},
            "mem-alice",
            id="user-field",
        ),
        pytest.param(
            {}, {}, {"user_id": "u-1", "team_id": "t-1", "key_alias": "k-1"}, "mem-u-1", id="key-user"
        ),
        pytest.param({"user": "   "}, {}, {"team_id": "t-1", "key_alias": "k-1"}, "mem-t-1", id="key-team"),
        pytest.param({}, {}, {"key_alias": "k-1"}, "mem-k-1", id="key-alias"),
        pytest.param({}, {}, {}, "fallback-bank", id="default"),
        pytest.param({}, {}, {"user_id": "default_user_id"}, "fallback-bank", id="master-key-is-nobody"),
    ],
)
async def test_bank_selection_order(
    hindsight_server: str,
    fields: dict[str, Any],
    metadata: dict[str, Any],
    key: dict[str, Any],
    expected: str,
) -> None:
    hook = HindsightProxyHook(hindsight_api_url=hindsight_server, bank_id="fallback-bank", bank_prefix="mem-")
    data = request(**fields)
    data["metadata"].update(metadata)
    result = await hook.async_pre_call_hook(auth(**key), None, data, "acompletion")
    assert isinstance(result, dict)
    assert find_hindsight_keys(result) == []
    assert last_debug().bank_id == expected
    await hook.async_post_call_failure_hook(result, RuntimeError("not sent"), auth(**key))


async def test_untrusted_requests_cannot_choose_the_bank_or_the_server(
    hindsight_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = HindsightProxyHook(
        hindsight_api_url=hindsight_server,
        bank_id="fallback-bank",
        bank_prefix="team-",
        trust_request_bank=False,
    )
    data = request(
        user="someone-else", hindsight_bank_id="victim-bank", hindsight_api_url="http://127.0.0.1:9"
    )
    result = await hook.async_pre_call_hook(auth(team_id="blue"), None, data, "acompletion")
    assert isinstance(result, dict)
    assert find_hindsight_keys(result) == []
    record = last_debug()
    assert record.bank_id == "team-blue"
    assert record.error is None  # the request's hindsight_api_url was ignored, not used
    assert "hindsight_hindsight_api_url" in caplog.text or "hindsight_api_url" in caplog.text
    await hook.async_post_call_failure_hook(result, RuntimeError("not sent"), auth(team_id="blue"))
    trusting = HindsightProxyHook(hindsight_api_url=hindsight_server, bank_id="fallback-bank")
    data = request(hindsight_bank_id="chosen-bank", hindsight_api_url="http://127.0.0.1:9")
    result = await trusting.async_pre_call_hook(auth(), None, data, "acompletion")
    assert last_debug().bank_id == "chosen-bank"
    assert last_debug().error is None  # the server still comes from the proxy's configuration
    await trusting.async_post_call_failure_hook(result, RuntimeError("not sent"), auth())


async def test_ready_made_hook_reads_the_environment(
    hindsight_server: str, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HINDSIGHT_API_URL", hindsight_server)
    monkeypatch.setenv("HINDSIGHT_BANK_ID", seeded)
    data = await hindsight_proxy_hook.async_pre_call_hook(auth(), None, request(), "acompletion")
    assert isinstance(data, dict)
    assert MEMORY in data["messages"][0]["content"]
    assert last_debug().bank_id == seeded
    await hindsight_proxy_hook.async_post_call_failure_hook(data, RuntimeError("not sent"), auth())


async def test_other_call_types_only_lose_their_hindsight_keys(hook: HindsightProxyHook) -> None:
    data: dict[str, Any] = {
        "model": "text-embedding-3-small",
        "input": ["hello"],
        "hindsight_bank_id": "x",
        "metadata": {"hindsight_budget": "low"},
    }
    result = await hook.async_pre_call_hook(auth(), None, data, "aembedding")
    assert result == {"model": "text-embedding-3-small", "input": ["hello"], "metadata": {}}
    assert hl.get_last_injection_debug() is None  # memory was not involved


async def test_an_invalid_request_option_skips_memory_without_failing(
    hook: HindsightProxyHook, caplog: pytest.LogCaptureFixture
) -> None:
    data = request(hindsight_budget="enormous")
    result = await hook.async_pre_call_hook(auth(), None, data, "acompletion")
    assert isinstance(result, dict)
    assert result["messages"] == [{"role": "user", "content": QUESTION}]
    assert_no_hindsight_keys(result)
    assert any("budget" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def test_streaming_hook_passes_chunks_through_and_stores_at_the_end(
    hook: HindsightProxyHook, hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = REPLY
    data = await hook.async_pre_call_hook(auth(), None, request(stream=True), "acompletion")
    assert isinstance(data, dict)
    record = last_debug()
    chunks = await chunks_from(fake_openai, data)
    assert MEMORY in fake_openai.last_json["messages"][0]["content"]
    assert len(chunks) > 2

    before = submitted()
    passed: list[Any] = []
    async for chunk in hook.async_post_call_streaming_iterator_hook(auth(), replay(chunks), data):
        passed.append(chunk)
        if len(passed) == 1:
            assert submitted() == before  # nothing is stored before the stream has ended
    assert len(passed) == len(chunks)
    assert all(out is original for out, original in zip(passed, chunks, strict=True))  # unchanged
    assert submitted() - before == 1
    await hook.async_post_call_success_hook(data, auth(), None)  # should the proxy call it too: no-op
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


async def test_streaming_hook_cut_short_stores_what_was_sent(
    hook: HindsightProxyHook, hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = REPLY
    data = await hook.async_pre_call_hook(auth(), None, request(stream=True), "acompletion")
    assert isinstance(data, dict)
    record = last_debug()
    chunks = await chunks_from(fake_openai, data)

    before = submitted()
    stream = hook.async_post_call_streaming_iterator_hook(auth(), replay(chunks), data)
    sent = ""
    async for chunk in stream:
        sent += chunk.choices[0].delta.content or ""
        if sent:
            break
    await stream.aclose()  # the client went away
    assert sent
    assert sent != REPLY
    assert submitted() - before == 1
    text = stored_text(hindsight_server, seeded, record.document_id)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {sent.strip()}")
    assert REPLY not in text


async def test_failure_hook_stores_nothing(hook: HindsightProxyHook) -> None:
    data = await hook.async_pre_call_hook(auth(), None, request(), "acompletion")
    assert isinstance(data, dict)
    before = submitted()
    await hook.async_post_call_failure_hook(
        data, openai.APIError("boom", httpx.Request("POST", "/"), body=None), auth()
    )
    await hook.async_post_call_success_hook(data, auth(), await reply_for(data))
    async for _ in hook.async_post_call_streaming_iterator_hook(auth(), replay([]), data):
        pass
    assert submitted() == before


async def test_concurrent_requests_keep_their_exchanges_apart(hindsight_server: str) -> None:
    banks = {"ann": f"proxy-{uuid.uuid4().hex}", "bob": f"proxy-{uuid.uuid4().hex}"}
    for bank in banks.values():
        seed_bank(hindsight_server, bank, FACTS)
    hook = HindsightProxyHook(hindsight_api_url=hindsight_server)

    async def one(name: str) -> dict[str, Any]:
        data = request(user=banks[name], hindsight_session_id=f"session-{name}")
        data["messages"] = [{"role": "user", "content": f"I am {name}; what is my favourite colour?"}]
        prepared = await hook.async_pre_call_hook(auth(), None, data, "acompletion")
        assert isinstance(prepared, dict)
        await asyncio.sleep(0)  # let the other request interleave
        response = await litellm.acompletion(
            model=MODEL, messages=prepared["messages"], mock_response=f"Hello {name}."
        )
        await hook.async_post_call_success_hook(prepared, auth(), response)
        return prepared

    await asyncio.gather(one("ann"), one("bob"))
    for name, bank in banks.items():
        other = "bob" if name == "ann" else "ann"
        text = stored_text(hindsight_server, bank, f"session-{name}")
        assert_stored_once(
            text, f"user: I am {name}; what is my favourite colour?", f"assistant: Hello {name}."
        )
        assert other not in text


# ------------------------------------------------------------------- the proxy's own loader and dispatcher

PROXY_DIR = Path(__file__).parent / "proxy"


def _ready_made(hindsight_server: str, bank: str) -> tuple[HindsightProxyHook, str]:
    """``hindsight_litellm.proxy.hindsight_proxy_hook``-style: an instance of the class itself."""
    return HindsightProxyHook(hindsight_api_url=hindsight_server, bank_id=bank), bank


def _from_module_next_to_config(hindsight_server: str, bank: str) -> tuple[HindsightProxyHook, str]:
    """``callbacks: custom_hooks.hook`` with ``custom_hooks.py`` next to ``config.yaml`` (a subclass)."""
    seed_bank(hindsight_server, f"team-{bank}", FACTS)
    loaded = get_instance_fn("custom_hooks.hook", config_file_path=str(PROXY_DIR / "config.yaml"))
    assert isinstance(loaded, HindsightProxyHook)
    assert type(loaded) is not HindsightProxyHook
    return loaded, f"team-{bank}"


@pytest.mark.parametrize("load", [_ready_made, _from_module_next_to_config], ids=["instance", "subclass"])
async def test_the_proxy_dispatcher_runs_every_hook(
    load: Any,
    hindsight_server: str,
    seeded: str,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through LiteLLM's ``ProxyLogging``, which only calls hooks a callback's own class defines."""
    monkeypatch.setenv("HINDSIGHT_API_URL", hindsight_server)
    hook, bank = load(hindsight_server, seeded)
    monkeypatch.setattr(litellm, "callbacks", [hook])
    proxy_logging = ProxyLogging(user_api_key_cache=UserApiKeyCache())
    fake_openai.reply = REPLY

    plain = await proxy_logging.pre_call_hook(
        user_api_key_dict=auth(),
        data=request(user=seeded, hindsight_session_id="plain"),
        call_type="acompletion",
    )
    assert plain is not None
    assert MEMORY in plain["messages"][0]["content"]
    assert last_debug().bank_id == bank
    await proxy_logging.post_call_success_hook(
        data=plain, response=await reply_for(plain), user_api_key_dict=auth()
    )

    streamed = await proxy_logging.pre_call_hook(
        user_api_key_dict=auth(),
        data=request(user=seeded, stream=True, hindsight_session_id="streamed"),
        call_type="acompletion",
    )
    assert streamed is not None
    assert MEMORY in streamed["messages"][0]["content"]
    chunks = await chunks_from(fake_openai, streamed)
    passed = [
        chunk
        async for chunk in proxy_logging.async_post_call_streaming_iterator_hook(
            response=replay(chunks), user_api_key_dict=auth(), request_data=streamed
        )
    ]
    assert len(passed) == len(chunks)

    for document in ("plain", "streamed"):
        text = stored_text(hindsight_server, bank, document)
        assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")


# ----------------------------------------------------------------------------------- the real LiteLLM proxy


@contextlib.contextmanager
def running_proxy(
    tmp_path: Path, api_base: str, env_extra: dict[str, str], *args: str, startup: float = 90.0
) -> Iterator[str]:
    """The real LiteLLM proxy (``python -m litellm.proxy.proxy_cli``, a subprocess) with the ready-made hook
    and ``config.yaml`` in ``tmp_path``, model -> ``api_base``; stopped by its PID afterwards."""
    config = tmp_path / "config.yaml"
    config.write_text(PROXY_CONFIG.format(model=MODEL, api_base=api_base, callbacks=CALLBACKS))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HINDSIGHT_API_KEY")}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "NO_DOCKER": "True",
            **env_extra,
        }
    )
    log_path = tmp_path / "proxy.log"
    command = [sys.executable, "-m", "litellm.proxy.proxy_cli"]
    command += ["--config", str(config), "--host", "127.0.0.1", "--port", str(port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the proxy exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            return httpx.get(f"{url}/health/liveliness", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        try:
            wait_for(ready, timeout=startup, what="the LiteLLM proxy to answer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()[-4000:]}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-4000:]


@pytest.fixture
def proxy_url(tmp_path: Path, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str) -> Iterator[str]:
    """A LiteLLM proxy (subprocess) with the ready-made hook, default bank ``seeded``, model -> the fake."""
    env = {"HINDSIGHT_API_URL": hindsight_server, "HINDSIGHT_BANK_ID": seeded}
    with running_proxy(tmp_path, fake_openai.base_url, env) as url:
        yield url


def test_real_proxy_gives_memory_to_unchanged_clients(
    proxy_url: str, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    fake_openai.reply = REPLY
    alice = f"proxy-user-{uuid.uuid4().hex}"
    seed_bank(hindsight_server, alice, ["The user's favourite colour is teal."])
    client = openai.OpenAI(base_url=proxy_url, api_key="sk-master", max_retries=0)

    # 1. Non-streaming, `user=` selects the bank; per-request options in the body and in metadata.
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        user=alice,
        extra_body={"hindsight_session_id": "proxy-plain", "metadata": {"hindsight_budget": "low"}},
    )
    assert response.choices[0].message.content == REPLY
    sent = fake_openai.bodies_for("/v1/chat/completions")[-1]
    assert_no_hindsight_keys(sent)
    assert sent["messages"][0]["role"] == "system"
    assert MEMORY in sent["messages"][0]["content"]
    assert sent["messages"][1:] == [{"role": "user", "content": QUESTION}]

    # 2. Streaming.
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Which colour should the logo be?"}],
        user=alice,
        stream=True,
        extra_body={"hindsight_session_id": "proxy-stream"},
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed == REPLY
    sent = fake_openai.bodies_for("/v1/chat/completions")[-1]
    assert sent["stream"] is True
    assert_no_hindsight_keys(sent)
    assert MEMORY in sent["messages"][0]["content"]

    # 3. No `user`, master key: the hook's default bank (HINDSIGHT_BANK_ID), not LiteLLM's admin id.
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What am I building?"}],
        extra_body={"hindsight_session_id": "proxy-default"},
    )
    sent = fake_openai.bodies_for("/v1/chat/completions")[-1]
    assert "FastAPI" in sent["messages"][0]["content"]

    # Storage happens in the proxy process: poll the server.
    text = stored_text(hindsight_server, alice, "proxy-plain", flush=False)
    assert_stored_once(text, f"user: {QUESTION}", f"assistant: {REPLY}")
    text = stored_text(hindsight_server, alice, "proxy-stream", flush=False)
    assert_stored_once(text, "user: Which colour should the logo be?", f"assistant: {REPLY}")
    text = stored_text(hindsight_server, seeded, "proxy-default", flush=False)
    assert text.count("user: What am I building?") == 1


def test_real_proxy_on_two_workers_injects_and_stores_each_exchange_once(
    tmp_path: Path, fake_openai: FakeOpenAI, hindsight_server: str, seeded: str
) -> None:
    """``litellm --num_workers 2`` with one outbox directory for both worker processes: memory in every
    request, each exchange (plain and streamed) stored once, by whichever worker served it; both workers
    stored through the shared outbox, each with its own claim on it."""
    fake_openai.reply = REPLY
    outbox = tmp_path / "outbox"
    env = {
        "HINDSIGHT_API_URL": hindsight_server,
        "HINDSIGHT_BANK_ID": seeded,
        "HINDSIGHT_OUTBOX_DIR": str(outbox),
        # A worker importing LiteLLM on a busy 2-core machine answers uvicorn's health check late.
        "TIMEOUT_WORKER_HEALTHCHECK": "180",
    }
    sessions: list[tuple[str, str]] = []
    with running_proxy(tmp_path, fake_openai.base_url, env, "--num_workers", "2", startup=240.0) as url:
        errors: list[BaseException] = []

        def one(number: int) -> None:
            try:
                ask(number)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        def ask(number: int) -> None:
            session = f"workers-{uuid.uuid4().hex[:8]}"
            question = f"Question {number}: {QUESTION}"
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": question}],
                "stream": number % 2 == 1,
                "hindsight_session_id": session,
            }
            # A new connection per request, so that the kernel hands requests to both workers.
            with httpx.Client(timeout=60, headers={"Authorization": "Bearer sk-master"}) as http:
                response = http.post(f"{url}/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            if body["stream"]:
                chunks = [
                    json.loads(line[6:]) for line in response.text.splitlines() if line[6:12] == '{"id":'
                ]
                text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            else:
                text = response.json()["choices"][0]["message"]["content"]
            assert text == REPLY
            sessions.append((session, question))

        owners: set[str] = set()
        for round_ in range(8):  # until both workers have stored something (usually the first round)
            threads = [threading.Thread(target=one, args=(round_ * 6 + n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, errors
            owners = {p.name for p in outbox.glob(".owner-*.lock")}
            if len(owners) >= 2:
                break
        assert len(owners) == 2, f"storage claims in the shared outbox: {owners}"
        for sent in fake_openai.bodies_for("/v1/chat/completions"):
            assert_no_hindsight_keys(sent)
            assert MEMORY_OPEN in sent["messages"][0]["content"]
        for session, question in sessions:
            text = stored_text(hindsight_server, seeded, session, flush=False)
            assert_stored_once(text, f"user: {question}", f"assistant: {REPLY}")
    assert not list(outbox.glob("*.json")), "turns left in the outbox after the proxy stopped"
