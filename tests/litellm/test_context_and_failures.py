"""hindsight_memory() scoping, and what happens when Hindsight is down, slow, or misconfigured."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import litellm
import pytest

import hindsight_litellm as hl
from hindsight_core import ConfigurationError
from hindsight_core.pipeline import MEMORY_OPEN
from tests.helpers import closed_port_url, seed_bank
from tests.litellm.conftest import openai_call
from tests.providers import FakeOpenAI, assert_no_hindsight_keys


def system_text(fake: FakeOpenAI) -> str:
    return "".join(str(m["content"]) for m in fake.last_json["messages"] if m["role"] == "system")


# ------------------------------------------------------------------------------------------- scoping


@pytest.mark.server
def test_context_manager_gives_plain_litellm_memory_only_inside(
    hindsight_server: str, seeded: str, fake_openai: FakeOpenAI
) -> None:
    question = [{"role": "user", "content": "What is my favourite colour?"}]
    with hl.hindsight_memory(hindsight_api_url=hindsight_server, bank_id=seeded):
        assert hl.is_enabled()
        litellm.completion(**openai_call(fake_openai, messages=question), hindsight_query="favourite colour")
        assert "teal" in system_text(fake_openai)
    assert not hl.is_enabled()
    litellm.completion(**openai_call(fake_openai, messages=question))
    assert MEMORY_OPEN not in system_text(fake_openai)
    for request in fake_openai.requests:
        assert_no_hindsight_keys(request)


@pytest.mark.server
def test_nested_scopes_restore_the_outer_one_even_after_an_exception(
    hindsight_server: str, fake_openai: FakeOpenAI, bank_id: str
) -> None:
    outer, inner = f"{bank_id}-outer", f"{bank_id}-inner"
    seed_bank(hindsight_server, outer, ["The outer bank says the user likes tea."])
    seed_bank(hindsight_server, inner, ["The inner bank says the user likes coffee."])
    ask = [{"role": "user", "content": "What does the user like to drink?"}]

    def inner_block() -> None:
        with hl.hindsight_memory(bank_id=inner):
            litellm.completion(**openai_call(fake_openai, messages=ask))
            assert "coffee" in system_text(fake_openai)
            raise RuntimeError("escape")

    with hl.hindsight_memory(hindsight_api_url=hindsight_server, bank_id=outer):
        with pytest.raises(RuntimeError):
            inner_block()
        litellm.completion(**openai_call(fake_openai, messages=ask))
        assert "tea" in system_text(fake_openai)
        assert "coffee" not in system_text(fake_openai)
    assert not hl.is_enabled()


@pytest.mark.server
async def test_context_manager_is_isolated_between_concurrent_tasks(
    hindsight_server: str, fake_openai: FakeOpenAI, bank_id: str
) -> None:
    users = [f"{bank_id}-{i}" for i in range(6)]
    for index, bank in enumerate(users):
        seed_bank(hindsight_server, bank, [f"The user's secret word is word{index}x."])

    async def session(index: int, bank: str) -> list[str]:
        seen = []
        with hl.hindsight_memory(hindsight_api_url=hindsight_server, bank_id=bank):
            for _ in range(3):
                await asyncio.sleep(0)
                await litellm.acompletion(
                    **openai_call(
                        fake_openai, messages=[{"role": "user", "content": "What is my secret word?"}]
                    )
                )
                debug = hl.get_last_injection_debug()
                assert debug is not None
                assert debug.bank_id == bank
                seen.append(debug.memory_context)
        return seen

    outside_task = asyncio.create_task(asyncio.sleep(0))
    results = await asyncio.gather(*(session(i, bank) for i, bank in enumerate(users)))
    await outside_task
    for index, contexts in enumerate(results):
        for context in contexts:
            assert f"word{index}x" in context
            assert all(f"word{other}x" not in context for other in range(len(users)) if other != index)
    assert not hl.is_enabled()


@pytest.mark.server
def test_context_manager_is_isolated_between_threads(
    hindsight_server: str, fake_openai: FakeOpenAI, bank_id: str
) -> None:
    seed_bank(hindsight_server, bank_id, ["The user's favourite fruit is mango."])
    inside = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def worker() -> None:
        with hl.hindsight_memory(hindsight_api_url=hindsight_server, bank_id=bank_id):
            inside.set()
            done.wait(10)
            outcome["thread_enabled"] = hl.is_enabled()

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(10)
    outcome["main_enabled"] = hl.is_enabled()
    litellm.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Favourite fruit?"}]))
    done.set()
    thread.join()
    assert outcome == {"thread_enabled": True, "main_enabled": False}
    assert MEMORY_OPEN not in system_text(fake_openai)


# ------------------------------------------------------------------------------------------- failures

private_storage = pytest.mark.usefixtures("private_storage")


@private_storage
def test_hindsight_down_the_call_still_returns_with_the_error_recorded(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    hl.configure(hindsight_api_url=closed_port_url(), bank_id="anyone", max_retries=0)
    response = hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hello?"}]))
    assert response.choices[0].message.content
    assert fake_openai.last_json["messages"] == [{"role": "user", "content": "Hello?"}]
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert not debug.injected
    assert debug.error is not None
    assert "APIConnectionError" in debug.error
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "memory skipped" in r.getMessage()
    ]
    assert len(warnings) == 1
    # the next failures within the interval are not logged one by one, and the next calls do not even try
    # the unreachable server (its circuit breaker is open until the background probe finds it)
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hello again?"}]))
    assert len([r for r in caplog.records if "memory skipped" in r.getMessage()]) == 1
    again = hl.get_last_injection_debug()
    assert again is not None
    assert again.error is not None
    assert "could not be reached" in again.error
    assert "recall" not in again.timings_ms


@private_storage
async def test_hindsight_down_async_call_still_returns(fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=closed_port_url(), bank_id="anyone", max_retries=0)
    hl.enable()
    response = await litellm.acompletion(
        **openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}])
    )
    assert response.choices[0].message.content
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.error is not None


@pytest.fixture
def hung_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@private_storage
def test_slow_hindsight_costs_at_most_the_recall_timeout(hung_server: str, fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=hung_server, bank_id="anyone", recall_timeout=0.5)
    started = time.monotonic()
    response = hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]))
    elapsed = time.monotonic() - started
    assert response.choices[0].message.content
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.error is not None
    assert "timed out" in debug.error
    assert elapsed < 0.5 + 5.0  # the recall budget, plus generous slack for the provider call on a busy CI


@private_storage
def test_strict_mode_raises_a_typed_error(fake_openai: FakeOpenAI) -> None:
    from hindsight_core import APIConnectionError

    hl.configure(hindsight_api_url=closed_port_url(), bank_id="anyone", strict=True, max_retries=0)
    with pytest.raises(APIConnectionError):
        hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]))
    assert fake_openai.requests == []


@private_storage
def test_no_bank_configured_warns_and_still_answers(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HINDSIGHT_BANK_ID", raising=False)
    caplog.set_level(logging.WARNING)
    response = hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]))
    assert response.choices[0].message.content
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.error is not None
    assert "no bank_id" in debug.error
    assert any("no bank_id" in r.getMessage() for r in caplog.records)


def test_unknown_per_call_option_is_a_clear_error(fake_openai: FakeOpenAI) -> None:
    hl.configure(bank_id="anyone")
    with pytest.raises(ConfigurationError) as info:
        hl.completion(
            **openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]), hindsight_budgett="low"
        )
    assert "'budgett'" in str(info.value)
    assert "did you mean 'budget'" in str(info.value)
    assert fake_openai.requests == []


def test_bad_per_call_value_names_the_option(fake_openai: FakeOpenAI) -> None:
    hl.configure(bank_id="anyone")
    with pytest.raises(ConfigurationError) as info:
        hl.completion(
            **openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]), hindsight_budget="max"
        )
    assert "'budget'" in str(info.value)
    assert "'low', 'mid' or 'high'" in str(info.value)


@private_storage
def test_provider_errors_propagate_and_nothing_is_stored(fake_openai: FakeOpenAI) -> None:
    hl.configure(hindsight_api_url=closed_port_url(), bank_id="anyone", max_retries=0)
    fake_openai.fail_next(400, times=5)
    from litellm.exceptions import BadRequestError

    with pytest.raises(BadRequestError):
        hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Hi"}]))
    debug = hl.get_last_injection_debug()
    assert debug is not None
    assert debug.storage_status == "not stored"


@private_storage
def test_storage_failures_are_listed_as_exceptions(fake_openai: FakeOpenAI) -> None:
    from hindsight_core import HindsightError
    from tests.helpers import wait_for

    hl.configure(
        hindsight_api_url=closed_port_url(), bank_id="unstored", max_retries=0, inject_memories=False
    )
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": "Please remember this."}]))
    errors = wait_for(hl.get_pending_storage_errors, timeout=30, what="a pending storage error")
    assert all(isinstance(error, HindsightError) for error in errors)
    assert "'unstored'" in str(errors[0])
    assert errors[0].permanent is False  # still being retried
    assert hl.get_pending_retain_errors() == [] or isinstance(hl.get_pending_retain_errors()[0], Exception)
