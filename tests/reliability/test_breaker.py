"""The circuit breaker against the real server, through every integration: a server that hangs or refuses
costs one call, the calls after it skip memory at once (no lookup is sent), and memory is back in the prompt
as soon as the server answers again, found by the background probe, not by a user call.

Also: a reflect that fails or is too slow falls back to recall; a slow server that answers keeps the breaker
closed. How long calls are held and how soon memory comes back is measured in ``bench/breaker.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

import hindsight_litellm as hl
from hindsight_core.breaker import BreakerState, breaker_for
from hindsight_core.pipeline import MEMORY_OPEN
from hindsight_core.storage import StorageWorker
from tests.faults import CuttableProxy
from tests.helpers import seed_bank
from tests.litellm.conftest import openai_call
from tests.providers import FakeOpenAI
from tests.reliability.adapters import ADAPTERS, Target
from tests.reliability.conftest import soon
from tests.reliability.hindsight_faults import Fault, HindsightFaults

pytestmark = pytest.mark.server

FACT = "The user's favourite colour is teal."
QUESTION = "What is my favourite colour?"


@pytest.fixture
def proxy(hindsight_server: str) -> Iterator[CuttableProxy]:
    forwarder = CuttableProxy(hindsight_server)
    try:
        yield forwarder
    finally:
        forwarder.close()


@pytest.fixture
def colour_bank(hindsight_server: str) -> str:
    bank = f"test-breaker-{uuid.uuid4().hex}"
    seed_bank(hindsight_server, bank, [FACT])
    return bank


@pytest.mark.parametrize("outage", ["hang", "cut"])
@pytest.mark.parametrize("adapter_name", list(ADAPTERS))
async def test_an_outage_costs_one_call_and_memory_comes_back_when_the_server_does(
    outage: str,
    adapter_name: str,
    proxy: CuttableProxy,
    colour_bank: str,
    worker: StorageWorker,
    fake_openai: FakeOpenAI,
) -> None:
    target = Target(
        proxy.url,
        colour_bank,
        f"breaker-{uuid.uuid4().hex[:8]}",
        fake_openai,
        worker,
        {"recall_timeout": 1.0, "retain_timeout": 1.0, "max_retries": 0, "store_conversations": False},
    )
    adapter = ADAPTERS[adapter_name](target)
    assert (await adapter.ask(QUESTION)).record.injected  # memory works through the forwarder

    getattr(proxy, outage)()
    first = await adapter.ask(f"{QUESTION} (during the outage)")
    assert not first.record.injected
    assert first.record.error is not None
    assert "recall" in first.record.timings_ms  # the first call did try, within its budget
    assert breaker_for(proxy.url).state is BreakerState.OPEN

    # (each call asks something new: a call that continues the same user message would reuse its lookup)
    later = [await adapter.ask(f"{QUESTION} (asked {index})") for index in range(5)]
    for answer in later:
        assert answer.text == adapter.reply
        assert not answer.record.injected
        assert "recall" not in answer.record.timings_ms  # skipped at once: no lookup was sent
        assert answer.record.error is not None
        assert "could not be reached" in answer.record.error
        assert "checked in the background" in answer.record.error

    proxy.restore()  # the server answers again: the probe finds it, the next call gets memory

    asked = iter(range(1000))

    async def back() -> bool:
        return (await adapter.ask(f"{QUESTION} (again {next(asked)})")).record.injected

    deadline = asyncio.get_running_loop().time() + 30
    while not await back():
        assert asyncio.get_running_loop().time() < deadline, "memory never came back"
        await asyncio.sleep(0.1)
    assert breaker_for(proxy.url).state is BreakerState.CLOSED


async def test_fifty_concurrent_async_calls_during_an_outage_all_skip_after_the_first_failure(
    proxy: CuttableProxy, colour_bank: str, fake_openai: FakeOpenAI, worker: StorageWorker
) -> None:
    hl.configure(
        hindsight_api_url=proxy.url,
        bank_id=colour_bank,
        recall_timeout=1.0,
        max_retries=0,
        store_conversations=False,
    )
    call = openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}])
    proxy.hang()
    await hl.acompletion(**call)  # this one waits its budget and opens the breaker

    async def one() -> bool:
        await hl.acompletion(**call)
        record = hl.get_last_injection_debug()
        assert record is not None
        return "recall" in record.timings_ms

    tried = await asyncio.gather(*(one() for _ in range(50)))
    assert not any(tried)  # none of the 50 sent a lookup
    proxy.restore()
    soon(lambda: breaker_for(proxy.url).state is not BreakerState.OPEN, what="the probe to find the server")
    await hl.acompletion(**call)
    record = hl.get_last_injection_debug()
    assert record is not None
    assert record.injected


def test_reflect_failing_falls_back_to_recalled_memories(
    faults: HindsightFaults, colour_bank: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(
        hindsight_api_url=faults.url,
        bank_id=colour_bank,
        use_reflect=True,
        store_conversations=False,
        max_retries=0,
    )
    faults.fail("reflect", Fault(503, b'{"detail": "the LLM is down"}', {"content-type": "application/json"}))
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    record = hl.get_last_injection_debug()
    assert record is not None
    assert record.injected
    assert record.fallback is not None
    assert "reflect failed (HTTP 503" in record.fallback
    assert record.mode == "recall"
    assert "teal" in record.memory_context
    assert MEMORY_OPEN in str(fake_openai.last_json["messages"])
    assert faults.hits["reflect"] == 1
    assert breaker_for(faults.url).state is BreakerState.CLOSED  # the server answered: it is there


def test_reflect_too_slow_falls_back_within_the_reflect_budget(
    faults: HindsightFaults, colour_bank: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(
        hindsight_api_url=faults.url,
        bank_id=colour_bank,
        use_reflect=True,
        reflect_timeout=2.0,
        recall_timeout=1.0,
        max_retries=0,
        store_conversations=False,
    )
    faults.fail("reflect", Fault(hang=True))
    hl.completion(**openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}]))
    record = hl.get_last_injection_debug()
    assert record is not None
    assert record.injected
    assert record.fallback is not None
    assert "APITimeoutError" in record.fallback
    assert record.timings_ms["reflect"] < 2000  # reflect got its share, the recall the rest
    assert breaker_for(faults.url).state is BreakerState.CLOSED  # a slow reflect is not an outage


def test_a_slow_server_that_answers_keeps_the_breaker_closed(
    faults: HindsightFaults, colour_bank: str, fake_openai: FakeOpenAI
) -> None:
    hl.configure(
        hindsight_api_url=faults.url, bank_id=colour_bank, recall_timeout=5.0, store_conversations=False
    )
    faults.fail("recall", Fault(delay=1.5, proxy=True))
    call = openai_call(fake_openai, messages=[{"role": "user", "content": QUESTION}])
    for _ in range(2):
        hl.completion(**call, hindsight_session_id=uuid.uuid4().hex)  # a lookup of its own each time
        record = hl.get_last_injection_debug()
        assert record is not None
        assert record.injected
        assert record.timings_ms["recall"] >= 1500  # reported in the record
    assert faults.hits["recall"] == 2
    assert breaker_for(faults.url).state is BreakerState.CLOSED
