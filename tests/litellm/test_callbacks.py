"""``HindsightCallback`` / ``get_callback()`` / ``cleanup_callback()`` (kept from hindsight-litellm 0.5.4).

Registered in ``litellm.callbacks``, the callback stores the conversations of LiteLLM calls made while
memory is not active (a ``litellm.Router``, plain ``litellm.completion``), never those the memory wrappers
already store, and never injects anything.

LiteLLM runs success callbacks in the background, one after the other in registration order. Each test
registers a probe after the Hindsight callback and waits until the probe has seen the call: by then the
Hindsight callback has run, so what it handed to storage can be counted without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import quote

import httpx
import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.router import Router

import hindsight_litellm as hl
from hindsight_core.memory import conversation_document_id
from hindsight_core.pipeline.render import MEMORY_OPEN
from hindsight_core.storage import default_worker
from hindsight_litellm.callbacks import HindsightCallback, memory_call_id
from hindsight_litellm.config import LAYERS
from tests.helpers import document_text, flush_storage, wait_for
from tests.litellm.conftest import openai_call
from tests.providers import FakeOpenAI, assert_no_hindsight_keys

pytestmark = pytest.mark.server

REPLY = "Noted, I will keep that in mind for the palette."
MEMORY = "favourite colour is teal"


class Probe(CustomLogger):
    """Counts the success events LiteLLM dispatches (registered after the Hindsight callback)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.events = 0

    def _seen(self) -> None:
        with self._lock:
            self.events += 1

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._seen()

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._seen()


def _unregister(callback: CustomLogger) -> None:
    for registry in (
        litellm.callbacks,
        litellm.success_callback,
        litellm._async_success_callback,
        litellm.failure_callback,
        litellm._async_failure_callback,
        litellm.input_callback,
    ):
        while callback in registry:
            registry.remove(callback)


def registries_holding(callback: CustomLogger) -> list[str]:
    names = ["callbacks", "success_callback", "_async_success_callback", "failure_callback"]
    names += ["_async_failure_callback", "input_callback"]
    return [name for name in names if callback in getattr(litellm, name)]


@pytest.fixture
def probe() -> Iterator[Probe]:
    """The Hindsight callback, then a probe, registered in ``litellm.callbacks``; both removed after."""
    hl.cleanup_callback()
    litellm.callbacks.append(hl.get_callback())
    probe = Probe()
    litellm.callbacks.append(probe)
    yield probe
    hl.cleanup_callback()
    _unregister(probe)


@pytest.fixture
def configured(hindsight_server: str, seeded: str) -> str:
    hl.configure(hindsight_api_url=hindsight_server, bank_id=seeded)
    return seeded


def submitted() -> int:
    return default_worker().stats().submitted


def handled(probe: Probe, count: int = 1) -> None:
    """Wait until LiteLLM has dispatched ``count`` success events (so the Hindsight callback has run)."""
    wait_for(lambda: probe.events >= count, timeout=30.0, what="LiteLLM's success callbacks")


async def ahandled(probe: Probe, count: int = 1) -> None:
    """:func:`handled` for async tests: LiteLLM dispatches async events on this event loop, so the
    polling must not block it."""
    await asyncio.to_thread(handled, probe, count)


def _retains_settled(url: str, bank: str) -> bool:
    response = httpx.get(f"{url}/v1/default/banks/{quote(bank, safe='')}/operations", params={"limit": 100})
    response.raise_for_status()
    return all(
        op["status"] in ("completed", "failed")
        for op in response.json()["operations"]
        if "retain" in str(op.get("operation_type"))
    )


def stored_text(url: str, bank: str, messages: list[dict[str, Any]]) -> str:
    """The stored text of the conversation that starts with ``messages``."""
    document = conversation_document_id(LAYERS.resolve({"bank_id": bank}), messages)
    flush_storage()
    wait_for(lambda: _retains_settled(url, bank), what=f"retain operations of bank {bank}")
    text: str = wait_for(lambda: document_text(url, bank, document), what=f"document {document}")
    return text


def assert_stored_once(text: str, *lines: str) -> None:
    for line in lines:
        assert text.count(line) == 1, f"{line!r} should be stored exactly once in:\n{text}"
    assert MEMORY_OPEN not in text
    assert MEMORY not in text


def chat(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def router(fake: FakeOpenAI) -> Router:
    params = {"model": "openai/gpt-4o-mini", "api_base": fake.base_url, "api_key": "sk-test"}
    return Router(model_list=[{"model_name": "assistant", "litellm_params": params}])


# ------------------------------------------------------------------------------------------------- tests


def test_router_calls_are_stored_and_never_injected(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    messages = chat("Router question: what is my favourite colour?")
    before = submitted()
    response = router(fake_openai).completion(model="assistant", messages=messages)
    assert isinstance(response, litellm.ModelResponse)
    assert response.choices[0].message.content == REPLY
    body = fake_openai.last_json
    assert body["messages"] == messages  # a logging callback cannot inject, and does not try
    assert_no_hindsight_keys(body)
    handled(probe)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, f"user: {messages[0]['content']}", f"assistant: {REPLY}")


async def test_async_router_calls_are_stored(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    messages = chat("Async router question")
    before = submitted()
    await router(fake_openai).acompletion(model="assistant", messages=cast(Any, messages))
    await ahandled(probe)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, "user: Async router question", f"assistant: {REPLY}")


def test_plain_litellm_stream_is_stored_once_when_it_ends(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    messages = chat("Streamed plain question")
    before = submitted()
    stream = litellm.completion(**openai_call(fake_openai, messages=messages, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == REPLY
    handled(probe)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, "user: Streamed plain question", f"assistant: {REPLY}")


async def test_async_plain_litellm_call_is_stored(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    messages = chat("Async plain question")
    before = submitted()
    await litellm.acompletion(**openai_call(fake_openai, messages=messages))
    assert fake_openai.last_json["messages"] == messages
    await ahandled(probe)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, "user: Async plain question", f"assistant: {REPLY}")


def test_enabled_memory_is_not_stored_twice(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    hl.enable()
    messages = chat("What is my favourite colour?")
    before = submitted()
    litellm.completion(**openai_call(fake_openai, messages=messages))
    sent = fake_openai.last_json["messages"]
    assert sum(MEMORY_OPEN in str(m.get("content")) for m in sent) == 1  # injected once, by enable()
    handled(probe)
    assert submitted() - before == 1  # by the memory wrapper; the callback stood aside
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, "user: What is my favourite colour?", f"assistant: {REPLY}")


async def test_memory_scope_is_not_stored_twice(
    probe: Probe, configured: str, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    fake_openai.reply = REPLY
    messages = chat("What is my favourite colour, in a scope?")
    before = submitted()
    with hl.hindsight_memory(bank_id=configured):
        await litellm.acompletion(**openai_call(fake_openai, messages=messages))
    await ahandled(probe)
    assert submitted() - before == 1
    text = stored_text(hindsight_server, configured, messages)
    assert_stored_once(text, f"user: {messages[0]['content']}", f"assistant: {REPLY}")


def test_memory_scope_sync_stream_is_not_stored_twice(
    probe: Probe, configured: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = REPLY
    before = submitted()
    with hl.hindsight_memory(bank_id=configured):
        for _ in litellm.completion(**openai_call(fake_openai, messages=chat("Scoped stream"), stream=True)):
            pass
    handled(probe)
    assert submitted() - before == 1


def test_hindsight_completion_without_enable_is_not_stored_twice(
    probe: Probe, configured: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = REPLY
    before = submitted()
    hl.completion(**openai_call(fake_openai, messages=chat("Stored by the wrapper only")))
    handled(probe)
    assert submitted() - before == 1


def test_calls_marked_by_the_memory_wrappers_are_left_alone(
    probe: Probe, configured: str, fake_openai: FakeOpenAI
) -> None:
    """The contract the memory wrappers use: a call sent with ``litellm_call_id=memory_call_id(kwargs)``
    is theirs to store, whichever thread or task LiteLLM logs it from."""
    before = submitted()
    call_id = memory_call_id({})
    assert memory_call_id({"litellm_call_id": call_id}) == call_id  # the caller's own id is kept
    for _ in litellm.completion(
        **openai_call(fake_openai, messages=chat("Marked"), stream=True, litellm_call_id=call_id)
    ):
        pass
    handled(probe)
    assert submitted() == before
    assert "litellm_call_id" not in fake_openai.last_json


def test_without_a_bank_nothing_is_stored(
    probe: Probe, fake_openai: FakeOpenAI, hindsight_server: str
) -> None:
    hl.configure(hindsight_api_url=hindsight_server)  # no bank anywhere
    before = submitted()
    litellm.completion(**openai_call(fake_openai, messages=chat("No bank")))
    handled(probe)
    assert submitted() == before


def test_store_conversations_off_stores_nothing(
    probe: Probe, configured: str, fake_openai: FakeOpenAI
) -> None:
    hl.set_defaults(store_conversations=False)
    before = submitted()
    litellm.completion(**openai_call(fake_openai, messages=chat("Do not store")))
    handled(probe)
    assert submitted() == before


def test_get_callback_is_shared_and_cleanup_callback_unregisters_it(
    probe: Probe, configured: str, fake_openai: FakeOpenAI
) -> None:
    callback = hl.get_callback()
    assert isinstance(callback, HindsightCallback)
    assert isinstance(callback, CustomLogger)
    assert hl.get_callback() is callback
    litellm.completion(**openai_call(fake_openai, messages=chat("Before cleanup")))
    handled(probe, 1)
    assert registries_holding(callback)  # LiteLLM copies callbacks into its other lists

    hl.cleanup_callback()
    assert registries_holding(callback) == []
    before = submitted()
    litellm.completion(**openai_call(fake_openai, messages=chat("After cleanup")))
    handled(probe, 2)
    assert submitted() == before
    assert hl.get_callback() is not callback  # a fresh instance, not registered
    assert registries_holding(hl.get_callback()) == []
    hl.cleanup_callback()  # twice is fine
    hl.cleanup_callback()
